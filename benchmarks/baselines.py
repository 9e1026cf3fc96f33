"""The two loaders the DALI pipeline is measured against (torch DataLoader + PyAV).

Both follow the same plans as DALI (:func:`tbfast.data.plans.plan_sample`: same frames, same crop
windows, flips, colour jitter, grayscale, channel drop and erase boxes), so the three loaders do the
same augmentation work and differ only in how they decode and where they augment.

* ``ReferenceStyle``: like the TimeBalance/TCLR code, each sample decodes *every frame of the whole
  video* (PyAV instead of OpenCV) and augments frame by frame on PIL images.
* ``PerClip``: a good Python loader: seek to the key frame before the span, decode only up to the
  last needed frame, then augment each clip as one (T, 3, H, W) tensor.

Both convert frames to RGB through one swscale context per process, as OpenCV's reader does (since
session 11: PyAV's ``frame.to_ndarray(format="rgb24")`` sets up a new context for every frame, which
cost more than decoding it and made both baselines slower than the code they stand for).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import time

import av
import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF  # PIL functional ops (reference style)
import torchvision.transforms.v2.functional as TF2  # tensor ops (per clip)
from PIL import Image

from dali_pipelines.host_decode import pyav_rgb24
from tbfast.data.manifest import VideoRecord
from tbfast.data.plans import ClipSpec, ClipView, plan_sample


def _fields(mode: str) -> list[tuple[str, str, int]]:
    if mode == "ssl":
        return [("long0", "long", 0), ("long1", "long", 1), ("short0", "short", 0), ("short1", "short", 1)]
    return [("clip", "clip", 0)]


class _PlannedDataset(torch.utils.data.Dataset):
    def __init__(
        self,
        prepared,
        records: Sequence[VideoRecord],
        indices: Sequence[int],
        spec: ClipSpec,
        size: int,
        seed: int = 0,
        epoch: int = 0,
        augment: bool = True,
    ):
        self.prepared, self.records, self.indices = Path(prepared), list(records), list(indices)
        self.spec, self.size, self.seed, self.epoch, self.augment = spec, size, seed, epoch, augment

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        c0 = time.process_time()
        out = self._item(i)
        out["cpu_s"] = time.process_time() - c0  # this worker's CPU time for the sample
        return out

    def _decoded(self, i: int):
        """(manifest index, record, plan, the plan's decoded frames) of sample ``i``."""
        idx = self.indices[i]
        r = self.records[idx]
        plan = plan_sample(
            idx,
            r.frames,
            r.height,
            r.width,
            spec=self.spec,
            size=self.size,
            seed=self.seed,
            epoch=self.epoch,
            augment=self.augment,
        )
        return idx, r, plan, self.decode(self.prepared / r.path, plan.decode, r)

    def _item(self, i: int) -> dict:
        idx, r, plan, frames = self._decoded(i)  # frames: (len(decode), ...) uint8, numpy or torch
        out = {"index": idx, "label": r.label}
        for name, group, view in _fields(self.spec.mode):
            clips = [
                self.augment_clip(frames[plan.orders[group][k]], plan.views[group][view][k])
                for k in range(plan.orders[group].shape[0])
            ]
            out[name] = clips[0] if len(clips) == 1 else torch.stack(clips)
        return out


def _open(path: Path):
    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.thread_type = "SLICE"
    stream.codec_context.thread_count = 1  # one core per worker, like DALI's one thread per core
    return container, stream


class ReferenceStyle(_PlannedDataset):
    """Decode the whole video, then augment every frame of every clip on its own (PIL)."""

    def decode(self, path: Path, wanted: np.ndarray, record: VideoRecord) -> np.ndarray:
        container, stream = _open(path)
        with container:
            allf = [pyav_rgb24(f) for f in container.decode(stream)]
        allf = np.stack(allf)
        return allf[np.minimum(wanted, len(allf) - 1)]

    def augment_clip(self, frames: np.ndarray, v: ClipView) -> torch.Tensor:
        y0, x0, y1, x1 = v.roi
        box = (min(x0, x1), y0, max(x0, x1), y1)
        out = []
        for f in frames:
            img = Image.fromarray(f).resize((self.size, self.size), Image.BILINEAR, box=box)
            if v.flip:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            img = tv_colour(img, v, TF)  # PIL ops, as the reference code
            t = TF.to_tensor(img)
            if v.drop_channel >= 0:
                t[v.drop_channel] = 0
            for y, x, h, w in v.erase:
                t[:, y : y + h, x : x + w] = 0
            out.append(t)
        return torch.stack(out, dim=1)  # (3, T, S, S)


class PerClip(_PlannedDataset):
    """Seek to the key frame before the first needed frame, decode to the last; tensor augmentation."""

    def decode(self, path: Path, wanted: np.ndarray, record: VideoRecord) -> np.ndarray:
        first, last = int(wanted.min()), int(wanted.max())
        container, stream = _open(path)
        got: dict[int, np.ndarray] = {}
        with container:
            tb, fps = stream.time_base, float(stream.average_rate or record.fps)
            if first > 0:
                container.seek(int(first / fps / tb), stream=stream, backward=True, any_frame=False)
            need = set(wanted.tolist())
            for f in container.decode(stream):
                i = int(round(float(f.pts * tb) * fps)) if f.pts is not None else len(got)
                if i in need:
                    got[i] = pyav_rgb24(f)
                if i >= last:
                    break
        lastf = got[max(got)]
        return np.stack([got.get(int(i), lastf) for i in wanted])

    def augment_clip(self, frames: np.ndarray, v: ClipView) -> torch.Tensor:
        y0, x0, y1, x1 = v.roi
        xa, xb = sorted((x0, x1))
        t = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, 3, H, W) uint8
        t = t[:, :, int(round(y0)) : int(round(y1)), int(round(xa)) : int(round(xb))].float()
        t = (
            F.interpolate(t, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
            .div_(255)
            .clamp_(0, 1)
        )
        if v.flip:
            t = t.flip(-1)
        return drop_and_erase(tv_colour(t, v), v).permute(1, 0, 2, 3)  # (3, T, S, S)


def tv_colour(t, v: ClipView, ops=TF2):
    """The view's colour jitter with torchvision's ops, one after the other: ``ops`` = the v2
    functionals on float (T, 3, S, S) tensors (default), or the v1 functionals on a PIL image."""
    if v.brightness != 1.0:
        t = ops.adjust_brightness(t, v.brightness)
    if v.contrast != 1.0:
        t = ops.adjust_contrast(t, v.contrast)
    if v.hue != 0.0:
        t = ops.adjust_hue(t, v.hue / 360.0)
    if v.gray:
        t = ops.rgb_to_grayscale(t, num_output_channels=3)
        t = t.contiguous() if isinstance(t, torch.Tensor) else t
    elif v.saturation != 1.0:
        t = ops.adjust_saturation(t, v.saturation)
    return t


def drop_and_erase(t: torch.Tensor, v: ClipView) -> torch.Tensor:
    """The view's dropped channel and erase boxes, in place on (T, 3, S, S)."""
    if v.drop_channel >= 0:
        t[:, v.drop_channel] = 0
    for y, x, h, w in v.erase:
        t[:, :, y : y + h, x : x + w] = 0
    return t


def _worker_init(_):
    torch.set_num_threads(1)


def _collate(items: list[dict]) -> dict:
    """Default collation, with the workers' CPU time (samples + this collation) summed in ``cpu_s``."""
    c0 = time.process_time()
    cpu = sum(it.pop("cpu_s") for it in items)
    batch = torch.utils.data.default_collate(items)
    batch["cpu_s"] = cpu + time.process_time() - c0
    return batch


def make_loader(
    kind: str,
    prepared,
    records,
    indices,
    spec: ClipSpec,
    *,
    size: int,
    batch_size: int,
    workers: int,
    seed: int = 0,
    augment: bool = True,
) -> torch.utils.data.DataLoader:
    cls = {"reference": ReferenceStyle, "perclip": PerClip}[kind]
    ds = cls(prepared, records, indices, spec, size, seed=seed, augment=augment)
    return torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        num_workers=workers,
        worker_init_fn=_worker_init,
        drop_last=False,
        collate_fn=_collate,
        persistent_workers=False,
        prefetch_factor=2 if workers else None,
    )
