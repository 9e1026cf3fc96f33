"""Tiny frame-coded VP9 datasets for tests and smoke benchmarks (PyAV only, no DALI import).

Every frame carries its own index so that a test can tell, strictly, which source frame a
pipeline returned, even after rounding and lossy coding: the frame is split into a top and a
bottom half, each a flat grey whose level is one base-16 digit of the index
(``level = 8 + 16 * digit``). Any centred crop of at least half the short side keeps both halves.
``static=True`` writes a colourful still picture instead (all frames equal), which makes
"augmentation constant within a clip" directly visible.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np


def code_frame(index: int, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 frame whose two halves encode ``index`` (0 <= index < 256)."""
    hi, lo = divmod(int(index), 16)
    frame = np.empty((height, width, 3), np.uint8)
    frame[: height // 2] = 8 + 16 * hi
    frame[height // 2 :] = 8 + 16 * lo
    return frame


def decode_index(frame: np.ndarray) -> int:
    """Inverse of :func:`code_frame` on a (H, W, C) frame (uint8 0..255 or float 0..1)."""
    f = np.asarray(frame, np.float64)
    if f.max() <= 1.0 + 1e-6:
        f = f * 255.0
    h, w = f.shape[:2]
    top = f[h // 4, w // 2].mean()
    bottom = f[(3 * h) // 4, w // 2].mean()
    hi = int(np.clip(np.rint((top - 8) / 16), 0, 15))
    lo = int(np.clip(np.rint((bottom - 8) / 16), 0, 15))
    return 16 * hi + lo


def static_frame(height: int, width: int) -> np.ndarray:
    """A still, colourful, left-right asymmetric picture (flips and crops show)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.stack([255 * x / max(width - 1, 1), 255 * y / max(height - 1, 1), np.full_like(x, 96.0)], axis=-1)
    frame[: height // 3, : width // 3] = (250, 30, 30)
    return frame.astype(np.uint8)


def write_video(
    path: Path, frames: int, *, width: int = 48, height: int = 32, fps: int = 25, static: bool = False
) -> None:
    """Write a VP9 yuv420p ``.webm`` with GOP 16 (the prepared-data format)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = 16
        stream.options = {
            "crf": "10",
            "b:v": "0",
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "row-mt": "0",
        }
        still = static_frame(height, width)
        for i in range(frames):
            img = still if static else code_frame(i, height, width)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_dataset(
    root: Path | str,
    lengths: Sequence[int],
    *,
    width: int = 48,
    height: int = 32,
    num_classes: int = 2,
    static: Sequence[bool] | None = None,
    corrupt: Sequence[int] = (),
) -> Path:
    """Write ``root/videos``, ``manifest.jsonl`` and ``classes.txt`` in the prepared-data format.

    ``lengths[i]`` frames for manifest index ``i`` (label ``i % num_classes``); indices listed in
    ``corrupt`` get a truncated, garbled file (the manifest still claims it is fine).
    """
    root = Path(root)
    classes = [f"class{c}" for c in range(num_classes)]
    lines = []
    for i, n in enumerate(lengths):
        label = i % num_classes
        rel = f"videos/{classes[label]}/v{i:04d}.webm"
        write_video(root / rel, n, width=width, height=height, static=bool(static and static[i]))
        if i in corrupt:
            data = bytearray((root / rel).read_bytes())
            cut = data[: max(len(data) // 3, 64)]
            for k in range(48, len(cut), 7):
                cut[k] ^= 0xA5
            (root / rel).write_bytes(bytes(cut))
        lines.append(
            {
                "path": rel,
                "label": label,
                "class_name": classes[label],
                "split": "train",
                "frames": int(n),
                "fps": 25.0,
                "width": width,
                "height": height,
                "source": rel,
                "flags": ["short"] if n < 64 else [],
            }
        )
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (root / "classes.txt").write_text("".join(c + "\n" for c in classes))
    return root
