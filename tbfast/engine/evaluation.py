"""Evaluation (clip- and video-level top-1/top-5) and the per-video temporal-similarity scores."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import torch
from torch import nn

from tbfast.engine.metrics import ProgressView


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return torch.autocast("cpu", enabled=False)


def _topk(probs: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, probs.shape[1])
    return (probs.topk(k, dim=1).indices == labels[:, None]).any(1)


def crop_keys(batch: dict) -> list[str]:
    """The clip fields of an eval batch: ``clip``, or ``clip0``, ``clip1``, ... (one per crop)."""
    if "clip" in batch:
        return ["clip"]
    keys = sorted((k for k in batch if k.startswith("clip") and k[4:].isdigit()), key=lambda k: int(k[4:]))
    if not keys:
        raise KeyError("an eval batch needs a 'clip' or 'clip0', 'clip1', ... field")
    return keys


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    *,
    clips: int = 10,
    chunk: int = 40,
    progress: bool = False,
    title: str = "eval",
    keep_probs: bool = False,
) -> dict:
    """Top-1/top-5 of ``model`` (logits) over an ``eval`` loader: per clip and per video (softmax
    averaged over the ``clips`` clips of a video). With several spatial crops (batch keys ``clip0``,
    ``clip1``, ...) a clip's softmax is the mean over its crops. Views go through the model
    ``chunk`` at a time. ``keep_probs``: also return every video's averaged softmax (``probs``,
    in the order of ``predictions``)."""
    was_training = model.training
    model.eval()
    n_vid = clip1 = clip5 = vid1 = vid5 = n_clip = num_classes = n_crops = 0
    per_video = []
    video_probs: list[list[float]] = []
    t0 = time.perf_counter()
    view = ProgressView(progress, title)
    view.start_epoch(0, 1, len(loader), 0)
    loader.set_epoch(0)
    for bi, batch in enumerate(loader):
        crops = [batch[name] for name in crop_keys(batch)]
        n_crops = len(crops)
        labels = batch["label"].to(device)
        b = labels.shape[0]
        k = crops[0].shape[0] // b
        p = 0
        for crop in crops:
            x = crop.to(device, non_blocking=True)
            probs = []
            with _autocast(device):
                for i in range(0, x.shape[0], chunk):
                    probs.append(torch.softmax(model(x[i : i + chunk]).float(), dim=1))
            p = p + torch.cat(probs) / len(crops)  # (b*k, C), row v*k + j
        num_classes = p.shape[1]
        clip_labels = labels.repeat_interleave(k)
        clip1 += int(_topk(p, clip_labels, 1).sum())
        clip5 += int(_topk(p, clip_labels, 5).sum())
        pv = p.view(b, k, -1).mean(1)
        vid1 += int(_topk(pv, labels, 1).sum())
        vid5 += int(_topk(pv, labels, 5).sum())
        per_video.extend(zip(batch["index"].tolist(), labels.tolist(), pv.argmax(1).tolist()))
        if keep_probs:
            video_probs.extend(pv.double().tolist())
        n_vid += b
        n_clip += b * k
        view.update(bi + 1, f"{n_vid} videos, top-1 {100 * vid1 / max(n_vid, 1):.1f}%")
    view.close()
    model.train(was_training)
    dt = time.perf_counter() - t0
    from tbfast.stats import wilson_interval

    return {
        "videos": n_vid,
        "clips": n_clip,
        "clip_top1": clip1 / max(n_clip, 1),
        "clip_top5": clip5 / max(n_clip, 1),
        "video_top1": vid1 / max(n_vid, 1),
        "video_top1_ci95": list(wilson_interval(vid1, n_vid)),  # over test videos (Wilson)
        "video_top5": vid5 / max(n_vid, 1),
        "crops": n_crops,
        **per_class(per_video, num_classes),
        "seconds": dt,
        "clips_per_s": n_clip / dt if dt else None,
        "predictions": per_video,
        **({"probs": video_probs} if keep_probs else {}),
    }


def per_class(predictions: list[tuple[int, int, int]], num_classes: int) -> dict:
    """Video-level confusion matrix (rows: true class, columns: predicted), top-1 per class (None
    for a class without videos) and their mean, from ``(index, label, predicted)`` triples."""
    conf = [[0] * num_classes for _ in range(num_classes)]
    for _, label, pred in predictions:
        conf[label][pred] += 1
    acc = [row[c] / sum(row) if sum(row) else None for c, row in enumerate(conf)]
    seen = [a for a in acc if a is not None]
    return {"confusion": conf, "class_top1": acc, "mean_class_top1": sum(seen) / len(seen) if seen else 0.0}


@torch.no_grad()
def similarity_scores(
    net_inv: nn.Module, net_dis: nn.Module, loader, device: torch.device, *, progress: bool = False
) -> tuple[list[int], torch.Tensor, dict]:
    """Raw TimeBalance score per video (METHOD.md §5) from a ``similarity`` loader.

    Returns manifest indices, raw scores (float64, CPU) and timing."""
    from tbfast.timebalance import temporal_similarity

    net_inv.eval()
    net_dis.eval()
    idx, raw = [], []
    n_clip = 0
    t0 = time.perf_counter()
    view = ProgressView(progress, "similarity")
    view.start_epoch(0, 1, len(loader), 0)
    loader.set_epoch(0)
    for bi, batch in enumerate(loader):
        x = batch["clip"].to(device, non_blocking=True)
        b = batch["index"].shape[0]
        with _autocast(device):
            z_inv = net_inv.embed(x).float().view(b, x.shape[0] // b, -1)
            z_dis = net_dis.embed(x).float().view(b, x.shape[0] // b, -1)
        raw.append(temporal_similarity(z_inv, z_dis).double().cpu())
        idx.extend(batch["index"].tolist())
        n_clip += x.shape[0]
        view.update(bi + 1, f"{len(idx)} videos")
    view.close()
    dt = time.perf_counter() - t0
    return (
        idx,
        torch.cat(raw) if raw else torch.zeros(0, dtype=torch.float64),
        {"seconds": dt, "clips": n_clip, "clips_per_s": n_clip / dt if dt else None},
    )


def write_scores(path: Path, indices: list[int], paths: list[str], raw: torch.Tensor, scores: torch.Tensor) -> None:
    from tbfast.engine.checkpoint import atomic_write_bytes
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "path", "raw", "score"])
    for i, p, r, s in sorted(zip(indices, paths, raw.tolist(), scores.tolist())):
        w.writerow([i, p, f"{r:.8f}", f"{s:.8f}"])
    atomic_write_bytes(Path(path), buf.getvalue().encode())


def read_scores(path: Path, records) -> torch.Tensor:
    """s per manifest index (NaN where the file has none); rows are matched by ``path``."""
    from tbfast.errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"similarity file {path} does not exist; make it with `tbfast similarity`")
    by_path = {r.path: i for i, r in enumerate(records)}
    out = torch.full((len(records),), float("nan"), dtype=torch.float32)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"index", "path", "score"} <= set(reader.fieldnames):
            raise UserError(f"{path}: not a similarity file (header index,path,raw,score expected)")
        for n, row in enumerate(reader, start=2):
            i = by_path.get(row["path"])
            if i is None:
                raise UserError(
                    f"{path} line {n}: video {row['path']!r} is not in this dataset's manifest; "
                    "was the file computed on other prepared data?"
                )
            try:
                s = float(row["score"])
            except ValueError:
                raise UserError(f"{path} line {n}: score {row['score']!r} is not a number") from None
            if not 0.0 <= s <= 1.0:
                raise UserError(f"{path} line {n}: score {s} outside [0, 1]")
            out[i] = s
    return out
