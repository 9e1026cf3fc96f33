"""The DALI graph: one definition for every mode and for both devices.

Per sample it receives, through ``fn.external_source`` (fed by :mod:`dali_pipelines.loader`), the
encoded bytes, the sorted source frames to decode, and for every clip view its rearrange order,
crop window and colour/erase parameters (all decided by :mod:`tbfast.data.plans`). It decodes the
frames once (``frames=`` sorted ascending, so the decoder never re-seeks backwards), cuts every
clip with ``fn.sequence_rearrange`` and augments each clip view with per-sample arguments, which
keeps the parameters constant across the frames of a clip.

Output: one (F, S, S, 3) float32 [0, 1] tensor per sample and clip field, the clips of a field
concatenated along F (so (B, K*T, S, S, 3) reshapes to (B*K, T, S, S, 3) without a copy).
"""
from __future__ import annotations

from dataclasses import dataclass

import nvidia.dali.fn as fn
import nvidia.dali.types as types
from nvidia.dali import pipeline_def

from tbfast.data.plans import ClipSpec

_PARAMS = ("roi_start", "roi_end", "brightness", "contrast", "hue", "saturation", "erase_anchor",
           "erase_shape")


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
        return [("clip", "clip", 0)]

    def order_name(self, group: str, k: int) -> str:
        return f"order_{group}_{k}"

    def param_name(self, group: str, view: int, k: int, param: str) -> str:
        return f"{param}_{group}_{view}_{k}"

    def input_names(self) -> list[str]:
        names = ["encoded", "decode"]
        for g in self.groups:
            names += [self.order_name(g, k) for k in range(self.clips_in(g) if self.per_clip else 1)]
            for _, gg, v in self.outputs:
                if gg != g:
                    continue
                for k in range(self.clips_in(g) if self.per_clip else 1):
                    names += [self.param_name(g, v, k, p) for p in _PARAMS
                              if self.per_clip or p in ("roi_start", "roi_end")]
        return names


def _src(name: str, dtype, ndim: int):
    return fn.external_source(name=name, dtype=dtype, ndim=ndim, no_copy=False)


def _augment_chain(clip, layout: GraphLayout, group: str, view: int, k: int, size: int, full: bool):
    p = {name: _src(layout.param_name(group, view, k, name), types.FLOAT, 1)
         for name in (_PARAMS if full else ("roi_start", "roi_end"))}
    # crop + resize + horizontal flip in one resampling: a reversed ROI flips
    out = fn.resize(clip, size=[size, size], roi_start=p["roi_start"], roi_end=p["roi_end"],
                    antialias=True)
    if full:
        scalar = {n: fn.reshape(p[n], shape=[]) for n in ("brightness", "contrast", "hue", "saturation")}
        # saturation 0 is the grayscale; hue in degrees
        out = fn.color_twist(out, brightness=scalar["brightness"], contrast=scalar["contrast"],
                             hue=scalar["hue"], saturation=scalar["saturation"])
        # spatial erase boxes (all channels) and the dropped channel, both as erase regions
        out = fn.erase(out, anchor=p["erase_anchor"], shape=p["erase_shape"], axis_names="HWC",
                       fill_value=0)
    return out


def build_pipeline(layout: GraphLayout, *, size: int, batch_size: int, device: str = "cpu",
                   device_id: int | None = None, num_threads: int = 2, seed: int = 0):
    """Build the (unbuilt) DALI pipeline; ``device`` "cpu" (CPU backend) or "gpu" (mixed decoder)."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', not {device!r}")

    @pipeline_def(batch_size=batch_size, num_threads=num_threads,
                  device_id=device_id if device == "gpu" else None, seed=seed,
                  prefetch_queue_depth=1, exec_dynamic=True)
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
                clips = [_augment_chain(cut[group, k], layout, group, view, k, size, True)
                         for k in range(layout.clips_in(group))]
                out = clips[0] if len(clips) == 1 else fn.cat(*clips, axis=0)
            else:
                out = _augment_chain(cut[group, 0], layout, group, view, 0, size, False)
            outs.append(fn.crop_mirror_normalize(out, dtype=types.FLOAT, mean=0.0, std=255.0,
                                                 output_layout="FHWC"))
        return tuple(outs)

    return clip_pipeline()
