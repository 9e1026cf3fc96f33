"""`tbfast data show`: a contact sheet of the clips one pipeline makes from one video.

Rows are clips (and views), columns frames; every frame is labelled with its source frame index.
This is how to check augmentations by eye; ``--dump`` saves the raw tensors and frame indices.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tbfast.argtypes import nonneg_int, output_file, positive_int


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("prepared", metavar="PREPARED", help="prepared dataset folder (tbfast data prep)")
    parser.add_argument("--mode", choices=["ssl", "train", "eval", "similarity"], default="ssl", help="which pipeline")
    parser.add_argument("--index", type=nonneg_int, default=0, help="manifest index of the video")
    parser.add_argument("--no-augment", action="store_true", help="centre crop, no random augmentation")
    parser.add_argument("--out", default="sheet.png", type=output_file, help="contact sheet (PNG)")
    parser.add_argument("--dump", default=None, help="also save the tensors and frame indices (.npz)")
    parser.add_argument("--size", type=positive_int, default=112, help="output side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the plans")
    parser.add_argument("--epoch", type=nonneg_int, default=0, help="epoch of the plans")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda", "gpu"],
        default="cpu",
        help="DALI backend: cpu, or cuda (= gpu: NVDEC and GPU operators), as in `tbfast train`",
    )


def rows_of(batch: dict, mode: str) -> list[tuple[str, "object", "object"]]:
    """(label, clip (3,T,S,S) tensor, source frame indices (T,)) for every row of the sheet."""
    rows = []
    if mode == "ssl":
        for v in range(2):
            rows.append((f"long view {v}", batch[f"long{v}"][0], batch["frames_long"][0]))
        for v in range(2):
            for j in range(batch["frames_short"].shape[1]):
                rows.append((f"short {j} view {v}", batch[f"short{v}"][j], batch["frames_short"][0, j]))
    elif mode == "train":
        rows.append(("clip", batch["clip"][0], batch["frames"][0]))
    else:
        for k in range(batch["frames"].shape[1]):
            rows.append((f"clip {k}", batch["clip"][k], batch["frames"][0, k]))
    return rows


def draw_sheet(rows, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n_rows = len(rows)
    n_cols = max(int(c.shape[1]) for _, c, _ in rows)
    size = int(rows[0][1].shape[-1])
    pad = max(2, size // 16)
    sheet = np.ones((n_rows * (size + pad) + pad, n_cols * (size + pad) + pad, 3), np.float32)
    for r, (_, clip, _) in enumerate(rows):
        frames = clip.permute(1, 2, 3, 0).float().cpu().numpy()  # (T, S, S, 3)
        for t, img in enumerate(frames):
            y, x = pad + r * (size + pad), pad + t * (size + pad)
            sheet[y : y + size, x : x + size] = img
    inch = 0.55 if size < 64 else size / 100
    fig = plt.figure(figsize=(n_cols * inch + 1.6, n_rows * inch + 0.6), dpi=100)
    ax = fig.add_axes(
        [1.4 / (n_cols * inch + 1.6), 0.0, 1 - 1.4 / (n_cols * inch + 1.6), 1 - 0.5 / (n_rows * inch + 0.6)]
    )
    ax.imshow(np.clip(sheet, 0, 1), interpolation="nearest")
    ax.set_axis_off()
    for r, (label, _, idx) in enumerate(rows):
        y = pad + r * (size + pad)
        ax.text(-pad, y + size / 2, label, ha="right", va="center", fontsize=8)
        for t, f in enumerate(idx.tolist()):
            ax.text(
                pad + t * (size + pad) + 1,
                y + 1,
                str(f),
                ha="left",
                va="top",
                fontsize=6,
                color="yellow",
                bbox=dict(facecolor="black", alpha=0.6, pad=0.5, linewidth=0),
            )
    fig.suptitle(title, fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    import numpy as np

    from dali_pipelines import build_loader
    from tbfast.data.manifest import read_manifest
    from tbfast.errors import UserError

    records = read_manifest(args.prepared)
    if not 0 <= args.index < len(records):
        raise UserError(
            f"--index {args.index} out of range; the manifest has {len(records)} videos (0..{len(records) - 1})"
        )
    loader = build_loader(
        args.prepared,
        args.mode,
        indices=[args.index],
        batch_size=1,
        size=args.size,
        device="gpu" if args.device == "cuda" else args.device,
        seed=args.seed,
        augment=not args.no_augment,
        records=records,
        drop_last=False,
    )
    loader.set_epoch(args.epoch)
    batch = next(iter(loader))
    rec = records[args.index]
    title = (
        f"{rec.path}  ({rec.class_name}, {rec.frames} frames)  mode={args.mode}  "
        f"{'no augmentation' if args.no_augment else f'seed={args.seed} epoch={args.epoch}'}"
    )
    out = Path(args.out)
    draw_sheet(rows_of(batch, args.mode), out, title)
    print(f"wrote {out}")
    if args.dump:
        arrays = {k: v.cpu().contiguous().numpy() for k, v in batch.items()}
        np.savez_compressed(args.dump, **arrays)
        print(f"wrote {args.dump} ({', '.join(f'{k} {tuple(v.shape)}' for k, v in arrays.items())})")
    return 0
