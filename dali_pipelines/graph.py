"""The DALI graph: one definition for every mode and for both devices.

Per sample it receives, through ``fn.external_source`` (fed by :mod:`dali_pipelines.loader`), the
encoded bytes, the sorted source frames to decode, and for every clip view its rearrange order,
crop window and colour/erase parameters (all decided by :mod:`tbfast.data.plans`). It decodes the
frames once (``frames=`` sorted ascending, so the decoder never re-seeks backwards), cuts every
clip with ``fn.sequence_rearrange`` and augments each clip view with per-sample arguments, which
keeps the parameters constant across the frames of a clip.

Output: one (F, S, S, 3) float32 tensor per sample and clip field (augmented fields still need a
clamp to [0, 1] and their random-erase boxes and dropped channels, done in place by the loader), the clips of a field
concatenated along F (so (B, K*T, S, S, 3) reshapes to (B*K, T, S, S, 3) without a copy).
"""
from __future__ import annotations

from dataclasses import dataclass

import nvidia.dali.fn as fn
import nvidia.dali.types as types
from nvidia.dali import pipeline_def

from tbfast.data.plans import ClipSpec

_ROI = ("roi_start", "roi_end")  # per clip
_COLOUR = ("brightness", "contrast", "hue", "saturation")  # per clip view (scalars)


@dataclass(frozen=True)
class GraphLayout:
    """Names of the graph's inputs and outputs for one spec (the loader feeds these)."""

    spec: ClipSpec
    augment: bool

    @property
    def groups(self) -> list[str]:
        return ["long", "short"] if self.spec.mode == "ssl" else ["clip"]

    def clips_in(self, group: str) -> int:
        return 1 if group == "long" else self.spec.num_clips

    @property
    def per_clip(self) -> bool:
        """Augmented modes get one chain per clip (own parameters); others crop all clips at once."""
        return self.augment and self.spec.aug is not None

    @property
    def outputs(self) -> list[tuple[str, str, int]]:
        """(field name, group, view) of each pipeline output, in order."""
        if self.spec.mode == "ssl":
            return [(f"{g}{v}", g, v) for g in self.groups for v in range(self.spec.views)]
        if self.spec.views > 1:  # eval with several crops: one output per crop
            return [(f"clip{v}", "clip", v) for v in range(self.spec.views)]
        return [("clip", "clip", 0)]

    def order_name(self, group: str, k: int) -> str:
        return f"order_{group}_{k}"

    def param_name(self, group: str, view: int, k: int, param: str) -> str:
        return f"{param}_{group}_{view}_{k}"


def _src(name: str, dtype, ndim: int):
    return fn.external_source(name=name, dtype=dtype, ndim=ndim, no_copy=False)


def _resize(clip, layout: GraphLayout, group: str, view: int, k: int, size: int):
    """Crop + resize + horizontal flip in one resampling (a reversed ROI flips). No antialiasing:
    crops are upscaled or shrunk by at most short_side/size, and it halves the CPU cost."""
    start = _src(layout.param_name(group, view, k, "roi_start"), types.FLOAT, 1)
    end = _src(layout.param_name(group, view, k, "roi_end"), types.FLOAT, 1)
    return fn.resize(clip, size=[size, size], roi_start=start, roi_end=end, antialias=False)


def _colour(x, layout: GraphLayout, group: str, view: int, k: int):
    """uint8 clip -> float32 with its colour jitter (scalar per clip: constant over its frames).
    ``fn.color_twist`` (hue/saturation need its 3x3 channel matrix) costs ~5x more CPU than
    ``fn.brightness_contrast``, which computes exactly the same for hue 0 and saturation 1; so
    the twist runs only on the clips that drew hue, saturation or grayscale (~60% at METHOD's p)."""
    p = {n: _src(layout.param_name(group, view, k, n), types.FLOAT, 0) for n in _COLOUR}
    twist = _src(layout.param_name(group, view, k, "twist"), types.BOOL, 0)
    if twist:  # a per-sample branch (DALI conditionals): each clip takes one of the two
        y = fn.color_twist(x, brightness=p["brightness"], contrast=p["contrast"], hue=p["hue"],
                           saturation=p["saturation"], dtype=types.FLOAT)
    else:
        y = fn.brightness_contrast(x, brightness=p["brightness"], contrast=p["contrast"], dtype=types.FLOAT)
    return y


def _augment_view(clips: list, layout: GraphLayout, group: str, view: int, size: int):
    """uint8 clips (T, H, W, 3) of one view -> float32 (K*T, S, S, 3), each clip with its own plan
    (crop/flip/resize and colour); erase boxes and dropped channels follow at the hand-over."""
    # brightness carries the 1/255 scaling; saturation 0 is the grayscale. Float output: the
    # colour ops are several times cheaper on the CPU with float output than with uint8 output.
    x = [_colour(_resize(c, layout, group, view, k, size), layout, group, view, k) for k, c in enumerate(clips)]
    # no clamp nor erase here: brightness/contrast/saturation > 1 can leave [0, 1], and fn.erase
    # copies the whole float tensor (~5 ms CPU per ssl video) to zero a few boxes; the loader
    # clamps and zeroes the planned erase boxes and dropped channels in place at the hand-over
    return x[0] if len(x) == 1 else fn.cat(*x, axis=0)


def build_pipeline(layout: GraphLayout, *, size: int, batch_size: int, device: str = "cpu",
                   device_id: int | None = None, num_threads: int = 2, seed: int = 0):
    """Build the (unbuilt) DALI pipeline; ``device`` "cpu" (CPU backend) or "gpu" (mixed decoder)."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', not {device!r}")

    @pipeline_def(batch_size=batch_size, num_threads=num_threads,
                  device_id=device_id if device == "gpu" else None, seed=seed,
                  prefetch_queue_depth=1, exec_dynamic=True,
                  enable_conditionals=layout.per_clip)
    def clip_pipeline():
        encoded = _src("encoded", types.UINT8, 1)
        frames = _src("decode", types.INT32, 1)
        video = fn.decoders.video(encoded, frames=frames, device="mixed" if device == "gpu" else "cpu",
                                  pad_mode="edge", name="decoder")  # a manifest overcounting frames repeats the last
        cut = {}  # (group, k) -> rearranged clip, shared by the views
        for group in layout.groups:
            for k in range(layout.clips_in(group) if layout.per_clip else 1):
                order = _src(layout.order_name(group, k), types.INT32, 1)
                cut[group, k] = fn.sequence_rearrange(video, new_order=order)
        outs = []
        for _, group, view in layout.outputs:
            if layout.per_clip:
                clips = [cut[group, k] for k in range(layout.clips_in(group))]
                outs.append(_augment_view(clips, layout, group, view, size))
            else:  # one crop (per view) for all clips of the sample
                x = _resize(cut[group, 0], layout, group, view, 0, size)
                outs.append(fn.crop_mirror_normalize(x, dtype=types.FLOAT, mean=0.0, std=255.0,
                                                     output_layout="FHWC"))
        return tuple(outs)

    return clip_pipeline()
