"""Per-sample frame plans and augmentation plans (pure Python + numpy; METHOD.md §2-3).

Everything a loader does at random is decided here, as a pure function of
``(seed, epoch, manifest index, view)``: the epoch order of the samples, each sample's start frame,
and every clip view's crop window, flip, colour jitter, grayscale, dropped channel and erase boxes.
The DALI graph (``dali_pipelines``) only *executes* these plans, so tests can compare a plan with
the pipeline's output, a resumed epoch reproduces the interrupted one exactly, and shards are
slices of one per-epoch permutation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

MODES = ("ssl", "train", "eval", "similarity")
_MODE_CODE = {m: i for i, m in enumerate(MODES)}


@dataclass(frozen=True)
class AugSpec:
    """Probabilities and ranges of the clip augmentation (parameters constant within a clip)."""

    crop_scale: tuple[float, float] = (0.5, 1.0)  # crop side / short side, aspect kept (square)
    flip_p: float = 0.5
    contrast_p: float = 0.25
    contrast: tuple[float, float] = (0.75, 1.25)
    hue_p: float = 0.3
    hue: tuple[float, float] = (-0.1, 0.1)  # fraction of the hue circle
    saturation_p: float = 0.3
    saturation: tuple[float, float] = (0.75, 1.25)
    brightness_p: float = 0.3
    brightness: tuple[float, float] = (0.75, 1.25)
    gray_p: float = 0.175
    channel_drop_p: float = 0.125
    erase_p: float = 0.7
    num_erase: int = 1
    erase_size: tuple[float, float] = (1 / 6, 1 / 3)  # of the output height / width, [lo, hi)


SSL_AUG = AugSpec()
TRAIN_AUG = AugSpec(
    crop_scale=(0.4, 1.0),
    contrast_p=0.125,
    contrast=(0.9, 1.1),
    hue_p=0.15,
    hue=(-0.05, 0.05),
    saturation_p=0.15,
    saturation=(0.9, 1.1),
    brightness_p=0.15,
    brightness=(0.9, 1.1),
    gray_p=0.1,
    channel_drop_p=0.0,
    erase_p=0.4,
    num_erase=2,
)


@dataclass(frozen=True)
class ClipSpec:
    """What a mode cuts from each video.

    ``num_clips`` clips of ``clip_len`` frames ``stride`` apart. ssl: the short clips tile the span
    ``num_clips * clip_len`` and the long clip takes ``clip_len`` frames ``long_stride`` apart over
    the same span. ``views`` independent augmentations of every clip (ssl: 2); in eval mode the
    views are spatial crops (1: centre; 3: both ends and the centre of the long side).
    ``center_crop``: side factor of the centred square crop used without augmentation.
    """

    mode: str
    clip_len: int
    stride: int = 1
    num_clips: int = 1
    long_stride: int = 0
    views: int = 1
    center_crop: float = 0.8
    aug: AugSpec | None = None

    @property
    def clip_span(self) -> int:
        """Source frames covered by one (short) clip."""
        return (self.clip_len - 1) * self.stride + 1

    @property
    def span(self) -> int:
        """Consecutive source frames one sample needs (ssl, train, similarity)."""
        if self.mode == "ssl":
            return max(self.num_clips * self.clip_len, (self.clip_len - 1) * self.long_stride + 1)
        if self.mode == "similarity":
            return self.num_clips * self.clip_len
        return self.clip_span


def default_spec(mode: str, **overrides) -> ClipSpec:
    """METHOD.md's clips for ``mode``; keyword overrides replace fields (e.g. ``clip_len=8``)."""
    if mode == "ssl":
        spec = ClipSpec("ssl", clip_len=16, stride=1, num_clips=4, long_stride=4, views=2, aug=SSL_AUG)
    elif mode == "train":
        spec = ClipSpec("train", clip_len=8, stride=2, num_clips=1, aug=TRAIN_AUG)
    elif mode == "eval":
        spec = ClipSpec("eval", clip_len=8, stride=2, num_clips=10)
    elif mode == "similarity":
        spec = ClipSpec("similarity", clip_len=16, stride=1, num_clips=4)
    else:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    return replace(spec, **overrides) if overrides else spec


# ----------------------------------------------------------------------------- order, sharding


def epoch_batches(
    indices: Sequence[int],
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool,
    drop_last: bool,
    shard_id: int = 0,
    num_shards: int = 1,
) -> list[list[int]]:
    """This shard's batches (lists of manifest indices) for one epoch.

    One permutation per (seed, epoch), shared by all ranks; rank r takes every ``num_shards``-th
    sample from r. With ``drop_last`` the permutation is first cut to a multiple of
    ``num_shards * batch_size`` so every rank has the same number of full batches and no sample
    is seen twice; otherwise every sample is seen by exactly one rank and the last batch may be
    smaller (ranks may then differ by one sample).
    """
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"shard_id {shard_id} not in [0, {num_shards})")
    order = np.asarray(list(indices), dtype=np.int64)
    if shuffle:
        rng = np.random.default_rng([int(seed), int(epoch), 0x5EED])
        order = order[rng.permutation(len(order))]
    if drop_last:
        keep = (len(order) // (num_shards * batch_size)) * num_shards * batch_size
        order = order[:keep]
    mine = order[shard_id::num_shards].tolist()
    return [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]


# ----------------------------------------------------------------------------- frame plans


@dataclass
class ClipView:
    """One augmented view of one clip: where to crop and what to do to the colours.

    ``roi`` = (y0, x0, y1, x1) in source pixels; x0 > x1 means horizontally flipped (DALI's resize
    flips a reversed ROI). ``hue`` in degrees. ``saturation`` 0 = grayscale. ``erase`` rows are
    (y, x, h, w) boxes in output pixels (all channels). Contrast is about mid-grey (DALI's
    ``color_twist``), not the image mean.
    """

    roi: tuple[float, float, float, float]
    flip: bool = False
    brightness: float = 1.0
    contrast: float = 1.0
    hue: float = 0.0
    saturation: float = 1.0
    gray: bool = False
    drop_channel: int = -1
    erase: list[tuple[int, int, int, int]] = field(default_factory=list)  # (y, x, h, w)


@dataclass
class SamplePlan:
    """Everything the pipeline does to one video.

    ``decode``: sorted source frame indices to decode (clamped to n-1). ``clips[name]``: (K, T)
    source frame indices of the K clips of each clip group (``long``/``short`` for ssl, ``clip``
    otherwise); ``orders[name]``: the same as positions into ``decode`` (sequence_rearrange).
    ``views[name][v][k]``: the :class:`ClipView` of clip k, view v.
    """

    index: int
    decode: np.ndarray
    clips: dict[str, np.ndarray]
    orders: dict[str, np.ndarray]
    views: dict[str, list[list[ClipView]]]


def clip_frames(mode: str, num_frames: int, start: int, spec: ClipSpec) -> dict[str, np.ndarray]:
    """Source frame indices of every clip, clamped to the last frame (short videos are padded)."""
    n = max(int(num_frames), 1)
    if mode == "ssl":
        short = start + np.arange(spec.num_clips)[:, None] * spec.clip_len + np.arange(spec.clip_len)
        long = start + np.arange(spec.clip_len)[None] * spec.long_stride
        out = {"long": long, "short": short}
    elif mode == "train":
        out = {"clip": start + np.arange(spec.clip_len)[None] * spec.stride}
    elif mode == "eval":
        starts = eval_starts(n, spec)
        out = {"clip": starts[:, None] + np.arange(spec.clip_len)[None] * spec.stride}
    elif mode == "similarity":
        s = max((n - spec.span) // 2, 0)
        out = {"clip": s + np.arange(spec.num_clips)[:, None] * spec.clip_len + np.arange(spec.clip_len)}
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return {k: np.minimum(v, n - 1).astype(np.int64) for k, v in out.items()}


def eval_starts(num_frames: int, spec: ClipSpec) -> np.ndarray:
    """Starts of ``spec.num_clips`` clips evenly spaced over the video (first at 0, last at the end)."""
    last = max(num_frames - spec.clip_span, 0)
    return np.rint(np.linspace(0, last, spec.num_clips)).astype(np.int64)


class Draws:
    """The draws of a numpy ``Generator`` on a PCG64 bit generator, replayed from its raw 64-bit
    outputs in pure Python: ``random``, ``uniform`` and ``integers`` return exactly what the
    Generator's methods of the same name would return in the same order (numpy's formulas: a double
    is the top 53 bits of one output; bounded integers use Lemire's method on 32-bit halves, the
    high half of an output kept for the next one), at a fraction of the cost of a numpy call per
    draw (the plans draw about 200 numbers per SSL video; tests/test_plans.py compares every plan
    with the Generator's). The raw outputs are fetched in blocks, so the bit generator itself
    runs ahead: use it only through this object."""

    __slots__ = ("_bits", "_raw", "_dbl", "_i", "_half")
    _BLOCK = 256

    def __init__(self, bits: np.random.BitGenerator):
        self._bits, self._half = bits, None
        self._refill()

    def _refill(self) -> None:
        raw = self._bits.random_raw(self._BLOCK)
        self._raw, self._i = raw.tolist(), 0
        self._dbl = ((raw >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)).tolist()

    def random(self) -> float:
        i = self._i
        if i == self._BLOCK:
            self._refill()
            i = 0
        self._i = i + 1
        return self._dbl[i]

    def doubles(self, n: int) -> list[float]:
        """``n`` successive ``random()`` draws."""
        i = self._i
        if i + n <= self._BLOCK:
            self._i = i + n
            return self._dbl[i : i + n]
        return [self.random() for _ in range(n)]

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def _next32(self) -> int:
        half = self._half
        if half is not None:
            self._half = None
            return half
        i = self._i
        if i == self._BLOCK:
            self._refill()
            i = 0
        self._i = i + 1
        x = self._raw[i]
        self._half = x >> 32
        return x & 0xFFFFFFFF

    def integers(self, low: int, high: int) -> int:
        """An integer in [low, high) (high - low <= 2**32)."""
        r = high - low - 1
        if r <= 0:
            return low
        n = r + 1
        m = self._next32() * n
        if (m & 0xFFFFFFFF) < n:
            threshold = (0xFFFFFFFF - r) % n
            while (m & 0xFFFFFFFF) < threshold:
                m = self._next32() * n
        return low + (m >> 32)


def random_start(rng: Draws, num_frames: int, span: int) -> int:
    return rng.integers(0, max(num_frames - span, 0) + 1)


def center_view(height: int, width: int, factor: float, position: int = 1, positions: int = 1) -> ClipView:
    """Square crop of side ``factor`` x the short side, centred across the short side; along the
    long side centred when ``positions`` is 1, else crop ``position`` of ``positions`` evenly spaced
    from one end to the other (3: start, centre, end, as in three-crop testing)."""
    side = factor * min(height, width)
    y0, x0 = (height - side) / 2, (width - side) / 2
    if positions > 1:
        along = (height if height > width else width) - side
        offset = along * position / (positions - 1)
        if height > width:
            y0 = offset
        else:
            x0 = offset
    return ClipView(roi=(y0, x0, y0 + side, x0 + side))


def random_view(rng: Draws, height: int, width: int, size: int, aug: AugSpec) -> ClipView:
    """Draw one clip view per METHOD.md §3 (a fixed number of draws, whatever is applied).

    The draws, in order: crop side, y0, x0, flip, six Bernoulli draws (contrast, hue, saturation,
    brightness, gray, channel drop), the four magnitudes (drawn only when applied), the dropped
    channel, then per erase box: apply?, h, w, y, x (tests/test_plans.py compares it with the
    readable form, one numpy Generator call per quantity)."""
    random, integers = rng.random, rng.integers
    lo, hi = aug.crop_scale
    short = height if height < width else width
    u_side, u_y, u_x, u_flip, d0, d1, d2, d3, d4, d5 = rng.doubles(10)
    side = (lo + (hi - lo) * u_side) * short  # uniform(lo, hi) * short
    y0 = (height - side) * u_y  # uniform(0, height - side)
    x0 = (width - side) * u_x
    flip = u_flip < aug.flip_p
    roi = (y0, x0 + side, y0 + side, x0) if flip else (y0, x0, y0 + side, x0 + side)
    contrast = rng.uniform(*aug.contrast) if d0 < aug.contrast_p else 1.0
    hue = rng.uniform(*aug.hue) * 360.0 if d1 < aug.hue_p else 0.0
    saturation = rng.uniform(*aug.saturation) if d2 < aug.saturation_p else 1.0
    brightness = rng.uniform(*aug.brightness) if d3 < aug.brightness_p else 1.0
    gray = d4 < aug.gray_p
    channel = integers(0, 3)
    erase = []
    if aug.num_erase:
        e_lo = math.ceil(size * aug.erase_size[0])
        e_hi = max(math.ceil(size * aug.erase_size[1]), e_lo + 1)
        for _ in range(aug.num_erase):
            p = random()
            h = integers(e_lo, e_hi)
            w = integers(e_lo, e_hi)
            y = integers(0, size - h + 1)
            x = integers(0, size - w + 1)
            if p < aug.erase_p:
                erase.append((y, x, h, w))
    return ClipView(
        roi=roi,
        flip=flip,
        brightness=brightness,
        contrast=contrast,
        hue=hue,
        saturation=0.0 if gray else saturation,
        gray=gray,
        drop_channel=channel if d5 < aug.channel_drop_p else -1,
        erase=erase,
    )


def _entropy(seed: int, epoch: int, index: int, mode: str) -> list[int]:
    return [int(seed), int(epoch), int(index), _MODE_CODE[mode]]


_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.321], [0.211, -0.523, 0.311]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)
# YIQ2RGB @ diag(1, s R) @ RGB2YIQ with R = cos(a) I + sin(a) [[0, 1], [-1, 0]] (the chroma rotation)
# = LUMA + s cos(a) CHROMA + s sin(a) TURN: three constant matrices, no product per clip view
_LUMA = np.outer(_YIQ2RGB[:, 0], _RGB2YIQ[0])
_CHROMA = _YIQ2RGB[:, 1:] @ _RGB2YIQ[1:]
_TURN = _YIQ2RGB[:, 1:] @ np.array([[0.0, 1.0], [-1.0, 0.0]]) @ _RGB2YIQ[1:]


def colour_affine(v: ClipView) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with out = A @ rgb + b for input rgb in [0, 1]: the clip view's colour jitter as DALI's
    ``color_twist`` / ``brightness_contrast`` compute it (brightness a gain; contrast about mid-grey
    128/255; hue a rotation of the chroma plane of YIQ; saturation a scaling of it, 0 = grey), to
    about 1e-5 (tests/test_bench_peers.py compares them). Used where the colour is applied outside
    the graph (the host-decoder path's hand-over, the benchmark peers)."""
    gain = v.brightness * v.contrast
    if v.hue != 0.0 or v.gray or v.saturation != 1.0:
        sat, a = 0.0 if v.gray else v.saturation, math.radians(v.hue)
        m = gain * _LUMA + (gain * sat * math.cos(a)) * _CHROMA + (gain * sat * math.sin(a)) * _TURN
    else:
        m = np.diag([gain, gain, gain])
    b_ = np.full(3, v.brightness * (1.0 - v.contrast) * 128.0 / 255.0, dtype=np.float32)
    return m.astype(np.float32), b_


def sample_rng(seed: int, epoch: int, index: int, mode: str) -> np.random.Generator:
    """The numpy generator of one sample in one epoch: independent of batch, shard and order.
    The plans draw from it through :class:`Draws` (:func:`sample_draws`), which gives the same numbers."""
    return np.random.default_rng(_entropy(seed, epoch, index, mode))


def sample_draws(seed: int, epoch: int, index: int, mode: str) -> Draws:
    """:func:`sample_rng`'s draws, replayed fast (:class:`Draws`)."""
    return Draws(np.random.PCG64(_entropy(seed, epoch, index, mode)))


def plan_sample(
    index: int,
    num_frames: int,
    height: int,
    width: int,
    *,
    spec: ClipSpec,
    size: int,
    seed: int = 0,
    epoch: int = 0,
    augment: bool = True,
) -> SamplePlan:
    """The complete plan of manifest record ``index`` (``num_frames`` x ``height`` x ``width``)."""
    mode = spec.mode
    rng = sample_draws(seed, epoch, index, mode)
    start = random_start(rng, num_frames, spec.span) if mode in ("ssl", "train") else 0
    clips = clip_frames(mode, num_frames, start, spec)
    decode = np.unique(np.concatenate([c.ravel() for c in clips.values()]))
    orders = {k: np.searchsorted(decode, v) for k, v in clips.items()}
    aug = spec.aug if augment else None
    views: dict[str, list[list[ClipView]]] = {}
    for name, c in clips.items():
        # eval: view v is crop position v of spec.views (three-crop testing); others: the centre
        crops = spec.views if mode == "eval" else 1
        views[name] = [
            [
                random_view(rng, height, width, size, aug)
                if aug is not None
                else center_view(height, width, spec.center_crop, min(v, crops - 1), crops)
                for _ in range(c.shape[0])
            ]
            for v in range(spec.views)
        ]
    return SamplePlan(index=int(index), decode=decode.astype(np.int64), clips=clips, orders=orders, views=views)
