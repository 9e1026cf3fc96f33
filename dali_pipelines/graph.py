"""The DALI graph: one definition for every mode and for both devices.

Per sample it receives, through ``fn.external_source`` (fed by :mod:`dali_pipelines.loader` with
one array per input for the whole batch where shapes allow), the encoded bytes, the sorted source
frames to decode, every clip's rearrange order and every clip view's crop window and colour
parameters, the last two packed in two arrays that the graph slices (``GraphLayout.order_inputs``,
``PARAMS``; all decided by :mod:`tbfast.data.plans`). It decodes the
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


@dataclass(frozen=True)
class GraphLayout:
    """Names of the graph's inputs and outputs for one spec (the loader feeds these)."""

    spec: ClipSpec
    augment: bool
    decoder: str = "dali"  # "dali": the graph decodes the bytes; else the frames come decoded (host_decode)

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

    @property
    def order_inputs(self) -> list[tuple[str, list[tuple[str, int]]]]:
        """(input name, the (group, clip) of each of its rows): the frame orders of the clips, as
        positions into the decoded frames. Augmented modes cut every clip on its own: one input
        whose rows are the clips (all of one length); the others cut each group at once: one 1-D
        input per group (all its clips' frames in a row; groups may differ in length)."""
        if self.per_clip:
            return [("orders", [(g, k) for g in self.groups for k in range(self.clips_in(g))])]
        return [(f"orders_{g}", [(g, 0)]) for g in self.groups]

    @property
    def view_keys(self) -> list[tuple[str, int, int]]:
        """(group, view, clip) of each row of a sample's ``params`` input (one per clip view)."""
        return [(g, v, k) for _, g, v in self.outputs for k in range(self.clips_in(g) if self.per_clip else 1)]


# a sample's ``params`` row of one clip view: roi (y0, x0, y1, x1), then (augmented modes) colour
PARAMS = ("y0", "x0", "y1", "x1", "brightness", "contrast", "hue", "saturation", "twist")


def _src(name: str, dtype, ndim: int):
    return fn.external_source(name=name, dtype=dtype, ndim=ndim, no_copy=False)


def _resize(clip, row, size: int):
    """Crop + resize + horizontal flip in one resampling (a reversed ROI flips). No antialiasing:
    crops are upscaled or shrunk by at most short_side/size, and it halves the CPU cost."""
    return fn.resize(clip, size=[size, size], roi_start=row[0:2], roi_end=row[2:4], antialias=False)


def _colour(x, row):
    """uint8 clip -> float32 with its colour jitter (scalar per clip: constant over its frames).
    ``fn.color_twist`` (hue/saturation need its 3x3 channel matrix) costs ~5x more CPU than
    ``fn.brightness_contrast``, which computes exactly the same for hue 0 and saturation 1; so
    the twist runs only on the clips that drew hue, saturation or grayscale (~60% at METHOD's p)."""
    brightness, contrast, hue, saturation = row[4], row[5], row[6], row[7]
    if row[8] != 0:  # a per-sample branch (DALI conditionals): each clip takes one of the two
        y = fn.color_twist(
            x, brightness=brightness, contrast=contrast, hue=hue, saturation=saturation, dtype=types.FLOAT
        )
    else:
        y = fn.brightness_contrast(x, brightness=brightness, contrast=contrast, dtype=types.FLOAT)
    return y


def _augment_view(clips: list, rows: list):
    """uint8 clips (T, S, S, 3) of one view, each already cropped, flipped and resized by its plan
    row -> float32 (K*T, S, S, 3) with each row's colour; erase boxes and dropped channels follow
    at the hand-over."""
    # brightness carries the 1/255 scaling; saturation 0 is the grayscale. Float output: the
    # colour ops are several times cheaper on the CPU with float output than with uint8 output.
    x = [_colour(c, r) for c, r in zip(clips, rows)]
    # no clamp nor erase here: brightness/contrast/saturation > 1 can leave [0, 1], and fn.erase
    # copies the whole float tensor (~5 ms CPU per ssl video) to zero a few boxes; the loader
    # clamps and zeroes the planned erase boxes and dropped channels in place at the hand-over
    return x[0] if len(x) == 1 else fn.cat(*x, axis=0)


def build_pipeline(
    layout: GraphLayout,
    *,
    size: int,
    batch_size: int,
    device: str = "cpu",
    device_id: int | None = None,
    num_threads: int = 2,
    seed: int = 0,
):
    """Build the (unbuilt) DALI pipeline; ``device`` "cpu" (CPU backend) or "gpu" (mixed decoder)."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', not {device!r}")

    # (DALI's stubs lack device_id=None and exec_dynamic)
    @pipeline_def(
        batch_size=batch_size,
        num_threads=num_threads,  # type: ignore[call-overload]
        device_id=device_id if device == "gpu" else None,
        seed=seed,
        prefetch_queue_depth=1,
        exec_dynamic=True,
        enable_conditionals=layout.per_clip,
    )
    def clip_pipeline():
        params = _src("params", types.FLOAT, 2)  # (view keys, PARAMS)
        rows = {key: params[j] for j, key in enumerate(layout.view_keys)}
        if layout.decoder == "dali":
            encoded = _src("encoded", types.UINT8, 1)
            frames = _src("decode", types.INT32, 1)
            video = fn.decoders.video(
                encoded,
                frames=frames,
                device="mixed" if device == "gpu" else "cpu",
                pad_mode="edge",
                name="decoder",
            )  # a manifest overcounting frames repeats the last
        else:  # the plan's decode frames, decoded on the host (dali_pipelines.host_decode)
            # no_copy: the loader keeps the arrays alive until this iteration's outputs are out
            video = fn.external_source(name="frames", dtype=types.UINT8, ndim=4, layout="FHWC", no_copy=True)
            if device == "gpu":
                video = video.gpu()
        cut = {}  # (group, clip) -> its frames, shared by the views
        for name, keys in layout.order_inputs:
            orders = _src(name, types.INT32, 2 if layout.per_clip else 1)
            for j, key in enumerate(keys):
                cut[key] = fn.sequence_rearrange(video, new_order=orders[j] if layout.per_clip else orders)

        def resized(group: str, view: int, k: int | None):  # k None: the group's clips, one crop
            return _resize(cut[group, k or 0], rows[group, view, k or 0], size)

        outs = []
        for _, group, view in layout.outputs:
            if layout.per_clip:
                ks = range(layout.clips_in(group))
                outs.append(_augment_view([resized(group, view, k) for k in ks], [rows[group, view, k] for k in ks]))
            else:  # one crop (per view) for all clips of the sample
                x = resized(group, view, None)
                outs.append(fn.crop_mirror_normalize(x, dtype=types.FLOAT, mean=0.0, std=255.0, output_layout="FHWC"))
        return tuple(outs)

    return clip_pipeline()
