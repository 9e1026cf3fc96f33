"""``tbfast predict``: the top-k classes of any video files with a trained classifier.

No prepared dataset is needed: each video (any container and codec PyAV reads) is decoded on the
host by PyAV (``--decoder pyav``, dali_pipelines.host_decode) and cut by the same DALI ``eval``
graph as ``tbfast eval``: ``--clips`` evenly spaced 8-frame clips (stride 2), centre crop (or
three crops), softmax averaged over the clips and crops.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    from tbfast.argtypes import positive_int

    parser.epilog = (
        "example: tbfast predict runs/student/checkpoints/last.pt clip1.mp4 clip2.avi --classes prepared/ucf101"
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="fine-tuned, supervised or student checkpoint")
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (any format PyAV reads)")
    parser.add_argument(
        "--classes",
        default=None,
        metavar="FILE|PREPARED",
        help="class names: a classes.txt or the prepared dataset the model was trained on "
        "(default: the names stored in the checkpoint, else class indices)",
    )
    parser.add_argument("--top-k", type=positive_int, default=5, help="classes shown per video")
    parser.add_argument("--clips", type=positive_int, default=10, help="evenly spaced clips per video")
    parser.add_argument("--crops", type=int, choices=(1, 3), default=1, help="spatial crops per clip")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto = cuda when torch sees a GPU"
    )
    parser.add_argument("--threads", type=positive_int, default=2, help="decoding and DALI threads")
    parser.add_argument("--json", action="store_true", help="print JSON (one object per video) instead of text")


def _class_names(arg, state: dict, n: int) -> list[str]:
    from pathlib import Path

    from tbfast.data.manifest import CLASSES
    from tbfast.errors import UserError

    if arg:
        p = Path(arg)
        f = p / CLASSES if p.is_dir() else p
        if not f.is_file():
            raise UserError(f"--classes {arg}: no such file (give a classes.txt or a prepared dataset folder)")
        names = [ln.strip() for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if len(names) != n:
            raise UserError(
                f"--classes {arg} lists {len(names)} classes, but the checkpoint predicts {n}; "
                "give the classes of the dataset it was trained on"
            )
        return names
    stored = state.get("classes")
    if isinstance(stored, list) and len(stored) == n:
        return [str(c) for c in stored]
    return [f"class {i}" for i in range(n)]


def probe(path) -> tuple[int, float, int, int]:
    """(frames, fps, width, height) of a video's first video stream; frames counted from its packets
    when the header has no count."""
    import av

    from tbfast.errors import UserError

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise UserError(f"{path}: no video stream")
            s = c.streams.video[0]
            n = int(s.frames or 0)
            if n <= 0:
                n = sum(1 for pkt in c.demux(s) if pkt.size)
            rate = float(s.average_rate or s.guessed_rate or 25)
            w, h = int(s.codec_context.width), int(s.codec_context.height)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - PyAV's errors vary by container
        raise UserError(f"{path}: cannot read it as a video ({type(exc).__name__}: {str(exc)[:160]})") from exc
    if n <= 0 or w <= 0 or h <= 0:
        raise UserError(f"{path}: no decodable frames")
    return n, rate, w, h


def main(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    import torch

    from dali_pipelines import build_loader
    from tbfast.data.manifest import VideoRecord
    from tbfast.data.plans import default_spec
    from tbfast.engine import checkpoint as ck
    from tbfast.engine.stages import CLASSIFIER_STAGES, load_classifier
    from tbfast.errors import UserError

    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    state = ck.load_checkpoint(args.checkpoint)
    ck.expect(state, args.checkpoint, stages=CLASSIFIER_STAGES, what="checkpoint")
    n_classes = int(state["num_classes"])
    names = _class_names(args.classes, state, n_classes)
    net, tcfg = load_classifier(args.checkpoint, device, n_classes, "checkpoint", with_config=True, state=state)
    net.eval()
    records: list = []
    problems: list[tuple[str, str]] = []  # (video, why it was skipped)
    for v in args.videos:
        p = Path(v).resolve()
        if not p.is_file():
            problems.append((v, "no such file"))
            continue
        try:
            frames, fps, w, h = probe(p)
        except UserError as exc:
            problems.append((v, str(exc)))
            continue
        records.append(
            VideoRecord(path=str(p), label=0, class_name="", split="test", frames=frames, fps=fps, width=w, height=h)
        )
    results = []
    if records:
        spec = default_spec("eval", num_clips=args.clips, views=args.crops)
        loader = build_loader(
            Path("."),
            "eval",
            records=records,
            indices=list(range(len(records))),
            batch_size=1,
            size=tcfg.data.size,
            device="gpu" if device.type == "cuda" else "cpu",
            num_threads=args.threads,
            augment=False,
            spec=spec,
            decoder="pyav",
        )
        with torch.no_grad():
            for batch in loader:
                keys = sorted(k for k in batch if k.startswith("clip"))
                probs = sum(torch.softmax(net(batch[k].to(device)).float(), dim=1).mean(0) for k in keys)
                probs = probs / len(keys)
                top = torch.topk(probs, min(args.top_k, n_classes))
                rec = records[int(batch["index"][0])]
                results.append(
                    {
                        "video": rec.path,
                        "frames": rec.frames,
                        "top": [
                            {"class": names[int(i)], "index": int(i), "probability": round(float(pv), 4)}
                            for pv, i in zip(top.values, top.indices)
                        ],
                    }
                )
    if args.json:
        print(json.dumps(results + [{"video": v, "error": why} for v, why in problems], indent=1))
    else:
        for r in results:
            print(f"{r['video']} ({r['frames']} frames)")
            for t in r["top"]:
                print(f"  {100 * t['probability']:5.1f} %  {t['class']}")
    for v, why in problems:
        print(f"skipped {v}: {why}", file=sys.stderr)
    return 1 if problems else 0
