"""The decoders a PyTorch user picks today, as `tbfast bench loader` peers: torchcodec and decord.

Each peer is what such a user would write: a torch ``DataLoader`` whose workers decode the planned
frames with the library (torchcodec ``VideoDecoder(seek_mode="exact", num_ffmpeg_threads=1)
.get_frames_at``, decord ``VideoReader(num_threads=1).get_batch``) and augment every clip as one
(T, 3, H, W) tensor, following tbfast's plans (:func:`tbfast.data.plans.plan_sample`: the same
frames, crop windows, flips, colour parameters, dropped channels and erase boxes). Two colour
conventions:

* ``matrix`` (DALI's): the clip's colour jitter as one 3x3 matrix + offset (:func:`colour_affine`,
  the map of DALI's ``color_twist`` / ``brightness_contrast``; tests/test_bench_peers.py checks it
  against DALI), one pass over the pixels;
* ``tv``: torchvision's colour ops one after the other (``adjust_brightness``, ``adjust_contrast``
  about the image mean, ``adjust_hue`` through HSV, ...), what most video code does.

Crops use torchvision ``resized_crop`` on uint8 with antialiasing over the plan's window rounded to
whole pixels, so a peer's pixels are close to DALI's, not identical (DALI samples the fractional
window, without antialiasing). Optional: ``pip install -e '.[peers]'``; torchcodec also needs FFmpeg's
shared libraries (``apt-get install ffmpeg`` on Debian/Ubuntu); decord bundles its own.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from tbfast.data.plans import ClipView, colour_affine
from tbfast_benchmarks.baselines import PerClip, _collate, _worker_init, drop_and_erase, tv_colour

PEERS = ("torchcodec", "decord")
KINDS = {
    "": "full plan, DALI colour maths",
    "-tv": "full plan, torchvision colour ops",
    "-crop": "crop + flip",
    "-uint8": "crop + flip, uint8 out",
    "-decode": "decode only",
}
# RGB <-> YIQ (NTSC), the colour space in which DALI's color_twist rotates the hue


def available(peer: str) -> str | None:
    """None when ``peer`` can be used here, else why not (and how to get it)."""
    import importlib

    if peer not in PEERS:
        return f"unknown peer {peer!r}"
    try:  # torchcodec.decoders loads FFmpeg's shared libraries
        importlib.import_module("torchcodec.decoders" if peer == "torchcodec" else "decord")
    except Exception as exc:  # noqa: BLE001 - a missing wheel or missing FFmpeg libraries
        hint = " and FFmpeg's shared libraries (apt-get install ffmpeg)" if peer == "torchcodec" else ""
        return f"{peer} is not usable ({type(exc).__name__}: {str(exc)[:120]}); pip install -e '.[peers]'{hint}"
    return None


class Peer(PerClip):
    """``decoder``: torchcodec | decord; ``colour``: matrix | tv | none (crop + flip only);
    ``out``: float (float32 in [0, 1], as tbfast's loader) or uint8 (mmaction2 style, no colour)."""

    def __init__(self, *args, decoder: str = "torchcodec", colour: str = "matrix", out: str = "float", **kw):
        super().__init__(*args, **kw)
        self.decoder, self.colour, self.out = decoder, colour, out

    def decode(self, path: Path, wanted: np.ndarray, record) -> torch.Tensor:
        """(len(wanted), 3, H, W) uint8 of the planned frames (clamped to the last frame)."""
        idx = np.minimum(wanted, max(int(record.frames) - 1, 0)).tolist()
        if self.decoder == "torchcodec":
            from torchcodec.decoders import VideoDecoder

            dec = VideoDecoder(str(path), seek_mode="exact", num_ffmpeg_threads=1)
            n = dec.metadata.num_frames or len(idx)
            return dec.get_frames_at(indices=[min(i, n - 1) for i in idx]).data
        import decord

        vr = decord.VideoReader(str(path), num_threads=1)
        frames = vr.get_batch([min(i, len(vr) - 1) for i in idx]).asnumpy()  # (N, H, W, 3)
        return torch.from_numpy(frames).permute(0, 3, 1, 2)

    def augment_clip(self, frames: torch.Tensor, v: ClipView) -> torch.Tensor:
        import torchvision.transforms.v2.functional as TF2

        y0, x0, y1, x1 = v.roi
        xa, xb = sorted((x0, x1))
        top, left = int(round(y0)), int(round(xa))
        t = TF2.resized_crop(
            frames,
            top,
            left,
            max(int(round(y1)) - top, 1),
            max(int(round(xb)) - left, 1),
            [self.size, self.size],
            antialias=True,
        )  # uint8 (T, 3, S, S)
        if v.flip:
            t = t.flip(-1)
        if self.out == "uint8":
            return t.permute(1, 0, 2, 3)
        t = TF2.to_dtype(t, torch.float32, scale=True)
        if self.colour == "matrix":
            a, b = colour_affine(v)
            t = torch.einsum("ij,tjhw->tihw", torch.from_numpy(a), t).add_(torch.from_numpy(b)[:, None, None])
            t = t.clamp_(0.0, 1.0)
        elif self.colour == "tv":
            t = tv_colour(t, v)
        return drop_and_erase(t, v).permute(1, 0, 2, 3)  # (3, T, S, S)


class DecodeOnly(Peer):
    """The planned frames decoded and nothing else (the decoder's floor)."""

    def _item(self, i: int) -> dict:
        idx, r, _, frames = self._decoded(i)
        return {"index": idx, "label": r.label, "frames": frames.shape[0]}


# loader name -> (decoder, colour, output); "-decode": decode only
VARIANTS = {
    f"{p}{suffix}": (p, colour, out)
    for p in PEERS
    for suffix, colour, out in (
        ("", "matrix", "float"),
        ("-tv", "tv", "float"),
        ("-crop", "none", "float"),
        ("-uint8", "none", "uint8"),
        ("-decode", None, None),
    )
}


def make_peer_loader(
    name: str,
    prepared,
    records,
    indices,
    spec,
    *,
    size: int,
    batch_size: int,
    workers: int,
    seed: int = 0,
    augment: bool = True,
) -> torch.utils.data.DataLoader:
    decoder, colour, out = VARIANTS[name]
    cls = DecodeOnly if colour is None else Peer
    ds = cls(
        prepared,
        records,
        indices,
        spec,
        size,
        seed=seed,
        augment=augment,
        decoder=decoder,
        colour=colour or "none",
        out=out or "float",
    )
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


def peer_item(name: str, prepared, records, index: int, spec, *, size: int, seed: int = 0, augment: bool = True):
    """One sample of a peer, in this process (tests compare it with tbfast's loader)."""
    decoder, colour, out = VARIANTS[name]
    ds = Peer(
        prepared,
        records,
        [index],
        spec,
        size,
        seed=seed,
        augment=augment,
        decoder=decoder,
        colour=colour or "none",
        out=out or "float",
    )
    t0 = time.process_time()
    item = ds[0]
    item["cpu_s"] = time.process_time() - t0
    return item
