"""Built-in synthetic action videos in UCF101's official layout.

Two families of classes:

* **appearance** classes (Square, Ring, Stripes, ...): a textured shape wanders without a trend;
  any single frame tells the class by its shape (colours are random, so greyscale does not hurt).
* **temporal-order pairs**: the second class of a pair is the exact time reversal of the first
  (the frames of a generated video in reverse order), and every pair survives horizontal flip and
  greyscale: MoveUp/MoveDown (vertical motion), Grow/Shrink (size), FadeIn/FadeOut (contrast with
  the background), SpeedUp/SlowDown (horizontal motion, random direction, accelerating or
  decelerating). All order classes use the same object family (soft ellipses), so only the order
  of the frames separates the two members of a pair.

Nuisances that keep a few labels per class from saturating: per-group backgrounds with texture,
camera jitter, 1-3 distractor objects, per-frame noise, random sizes, positions, colours and
speeds, and a few videos shorter than 64 frames. Output is deterministic for a seed.

Layout: ``OUT/UCF-101/<Class>/v_<Class>_gGG_cCC.avi`` (MPEG-4 part 2 in AVI) and
``OUT/ucfTrainTestlist/{classInd.txt,trainlist01.txt,testlist01.txt}`` (CRLF, official format;
groups 1-7 are the test split; ``extra_test_videos`` adds test videos to those groups only).
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from tbfast.errors import UserError

APPEARANCE = ["Square", "Ring", "Stripes", "Cross", "Triangle", "Checker", "Diamond", "Frame"]
ORDER_PAIRS = [("MoveUp", "MoveDown"), ("Grow", "Shrink"), ("FadeIn", "FadeOut"), ("SpeedUp", "SlowDown")]
STAMP = "synth_config.json"
TEST_GROUPS = 7


@dataclass
class SynthOptions:
    classes: int = 10
    videos_per_class: int = 25
    size: tuple[int, int] = (64, 48)  # width, height
    frames: tuple[int, int] = (72, 110)
    seed: int = 0
    groups: int = 25
    fps: int = 25
    order_pairs: int | None = None  # None: round(0.3 * classes)
    short_fraction: float = 0.04  # share of videos made shorter than 64 frames (when frames[0] >= 64)
    difficulty: float = 1.0  # scales noise, distractors, camera jitter, background texture
    extra_test_videos: int = 0  # more test videos per class, spread over groups 1-7 (a tighter accuracy estimate)

    def validate(self) -> None:
        w, h = self.size
        if w < 16 or h < 16 or w % 2 or h % 2:
            raise UserError(f"--size {w}x{h}: width and height must be even and at least 16")
        lo, hi = self.frames
        if not 2 <= lo <= hi:
            raise UserError(f"--frames {lo} {hi}: need 2 <= MIN <= MAX")
        if not 0 <= self.difficulty <= 3:
            raise UserError(f"--difficulty {self.difficulty}: use a value in [0, 3]")
        if self.videos_per_class < 2:
            raise UserError("--videos-per-class must be at least 2 (one test and one train video)")
        if not 1 <= self.fps <= 240:
            raise UserError(f"--fps {self.fps}: use 1 to 240")
        if not 0 <= self.short_fraction <= 1:
            raise UserError(f"--short-fraction {self.short_fraction}: use a value in [0, 1]")
        if self.order_pairs is not None and self.order_pairs < 0:
            raise UserError(f"--order-pairs {self.order_pairs}: use 0 or more")
        if self.extra_test_videos < 0:
            raise UserError("--extra-test-videos must be 0 or more")
        if self.groups < TEST_GROUPS + 1:
            raise UserError(f"--groups must be at least {TEST_GROUPS + 1}: groups 1-{TEST_GROUPS} are the test split")
        class_names(self)  # raises on a bad class count


def class_names(opt: SynthOptions) -> list[str]:
    n = opt.classes
    if n < 1:
        raise UserError(f"--classes {n}: at least 1")
    pairs = round(0.3 * n) if opt.order_pairs is None else opt.order_pairs
    pairs = max(0, min(pairs, len(ORDER_PAIRS), n // 2))
    n_app = n - 2 * pairs
    if n < 1 or n_app > len(APPEARANCE) or pairs < 0:
        raise UserError(
            f"--classes {n}: at most {len(APPEARANCE) + 2 * len(ORDER_PAIRS)} classes "
            f"({len(APPEARANCE)} appearance + {len(ORDER_PAIRS)} order pairs)"
        )
    names = APPEARANCE[:n_app]
    for a, b in ORDER_PAIRS[:pairs]:
        names += [a, b]
    return names


def group_of(j: int, videos: int, groups: int) -> int:
    """1-based group of the j-th video of a class: spread evenly over 1..groups."""
    return j % groups + 1 if videos >= groups else j * groups // videos + 1


# --- drawing ----------------------------------------------------------------------------------


def _smooth_noise(rng, h, w, cells=(4, 6)):
    import numpy as np

    g = rng.random((cells[0] + 1, cells[1] + 1))
    ys, xs = np.linspace(0, cells[0], h), np.linspace(0, cells[1], w)
    rows = np.stack([np.interp(xs, np.arange(cells[1] + 1), r) for r in g])
    return np.stack([np.interp(ys, np.arange(cells[0] + 1), rows[:, x]) for x in range(w)], axis=1)


def _lum(c):
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _contrast_colour(rng, bg_lum):
    """A random colour whose luminance differs from the background's by >= 0.3 (survives greyscale)."""
    import numpy as np

    target = bg_lum + rng.uniform(0.3, 0.55) * (1 if bg_lum < 0.5 else -1)
    c = rng.random(3)
    c = np.clip(c - _lum(c) + target, 0, 1)
    return c


def _shape_mask(kind, yy, xx, cy, cx, r, phase=0.0):
    """Soft (anti-aliased) mask in [0,1] of a shape centred at (cy, cx) with half-size r."""
    import numpy as np

    dy, dx = yy - cy, xx - cx
    ady, adx = np.abs(dy), np.abs(dx)

    def soft(d):  # d < 0 inside
        return np.clip(0.5 - d, 0.0, 1.0)

    box = soft(np.maximum(ady, adx) - r)
    if kind == "Square":
        return box
    if kind == "Ring":
        d = np.sqrt(dy * dy + dx * dx)
        return soft(np.abs(d - 0.75 * r) - 0.25 * r - 0.5)
    if kind == "Stripes":
        stripes = (np.sin((dy / max(r, 1.0)) * 2.2 * math.pi + phase) > 0).astype(np.float32)
        return box * (0.25 + 0.75 * stripes)
    if kind == "Cross":
        return np.maximum(soft(np.maximum(ady - r, adx - 0.3 * r)), soft(np.maximum(adx - r, ady - 0.3 * r)))
    if kind == "Triangle":  # apex up: invariant to horizontal flip
        inside = np.maximum(ady - r, adx - (dy + r) * 0.5)
        return soft(inside)
    if kind == "Checker":
        chk = ((np.floor(dy / max(r / 2, 1.0)) + np.floor(dx / max(r / 2, 1.0))) % 2 == 0).astype(np.float32)
        return box * (0.2 + 0.8 * chk)
    if kind == "Diamond":
        return soft(ady + adx - 1.2 * r)
    if kind == "Frame":
        return box * (1 - soft(np.maximum(ady, adx) - 0.5 * r))
    if kind == "Blob":  # ellipse, the order family and distractors
        return soft((np.sqrt((dy / 1.0) ** 2 + (dx / 1.3) ** 2) - r))
    raise ValueError(kind)


def render_video(cls: str, n_frames: int, size: tuple[int, int], rng, bg_rng, difficulty: float = 1.0):
    """uint8 frames (T, H, W, 3) of one video of class ``cls``.

    ``difficulty`` scales the nuisances (noise, distractors, camera jitter, background texture).
    """
    import numpy as np

    w, h = size
    s = min(w, h) / 48.0
    pad = int(4 * s) + 2
    # background: shared by a (class, group) like a UCF101 group's scene
    base = bg_rng.random(3) * 0.6 + 0.2
    tex = _smooth_noise(bg_rng, h + 2 * pad, w + 2 * pad)[..., None] - 0.5
    bg = np.clip(base[None, None] + tex * bg_rng.uniform(0.15, 0.35) * bg_rng.random(3) * 2 * difficulty, 0, 1).astype(
        np.float32
    )
    bg_lum = float(_lum(base))
    # camera: mean-reverting jitter (no trend, so it cannot fake MoveUp/MoveDown)
    cam = np.zeros((n_frames, 2))
    amp = rng.uniform(0.5, 1.5) * s * difficulty
    for t in range(1, n_frames):
        cam[t] = 0.85 * cam[t - 1] + rng.normal(0, amp, 2)
    cam = np.clip(cam, -pad + 1, pad - 1)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    noise_sd = rng.uniform(0.02, 0.06) * difficulty

    # distractors: small blobs wandering
    n_dis = int(rng.integers(round(difficulty), round(3 * difficulty) + 1))
    dis = []
    for _ in range(n_dis):
        pos = np.array([rng.uniform(0, h), rng.uniform(0, w)])
        v = rng.normal(0, 0.6 * s, 2)
        dis.append((pos, v, rng.uniform(1.5, 3.0) * s, _contrast_colour(rng, bg_lum) * rng.uniform(0.6, 1.0)))

    colour = _contrast_colour(rng, bg_lum)
    r0 = rng.uniform(5, 9) * s
    T1 = max(n_frames - 1, 1)
    frames = np.empty((n_frames, h, w, 3), np.uint8)
    # appearance: a wander with no trend
    wy, wx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    fy, fx, ph = rng.uniform(0.02, 0.08, 3)
    # order classes: forward parameters
    y_lo, y_hi = h * rng.uniform(0.75, 0.9), h * rng.uniform(0.1, 0.25)
    x_c = rng.uniform(0.3, 0.7) * w
    direction = rng.choice([-1, 1])
    speed_margin = rng.uniform(0.1, 0.2) * w
    for t in range(n_frames):
        p = t / T1
        alpha: float = 1.0
        r = r0
        if cls in APPEARANCE:
            kind = cls
            cy = wy + 0.15 * h * math.sin(2 * math.pi * fy * t + ph)
            cx = wx + 0.2 * w * math.sin(2 * math.pi * fx * t + 2 * ph)
        else:
            kind = "Blob"
            cy, cx = h * 0.5, x_c
            if cls in ("MoveUp", "MoveDown"):
                cy = y_lo + (y_hi - y_lo) * p
            elif cls in ("Grow", "Shrink"):
                r = s * (1.5 + (r0 / s + 4 - 1.5) * p)
                cy = h * 0.5 + 0.1 * h * math.sin(0.1 * t)
            elif cls in ("FadeIn", "FadeOut"):
                alpha = min(1.0, 0.05 + 1.1 * p)
            elif cls in ("SpeedUp", "SlowDown"):
                x0 = speed_margin
                x1 = w - speed_margin
                q = p * p  # accelerating
                cx = x0 + (x1 - x0) * q if direction > 0 else x1 - (x1 - x0) * q
        oy, ox = cam[t]
        img = bg[
            pad + int(round(oy)) : pad + int(round(oy)) + h, pad + int(round(ox)) : pad + int(round(ox)) + w
        ].copy()
        for dp, dv, dr, dc in dis:
            dpos = dp + dv * t
            dpos = np.array([dpos[0] % (h + 8) - 4, dpos[1] % (w + 8) - 4])
            m = _shape_mask("Blob", yy, xx, dpos[0] + oy, dpos[1] + ox, dr)[..., None]
            img = img * (1 - m) + dc[None, None] * m
        m = _shape_mask(kind, yy, xx, cy + oy, cx + ox, r, phase=ph)[..., None] * alpha
        img = img * (1 - m) + colour[None, None] * m
        img = img + rng.normal(0, noise_sd, img.shape).astype(np.float32)
        frames[t] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    reverse = any(cls == b for _, b in ORDER_PAIRS)
    return frames[::-1].copy() if reverse else frames


def write_avi(path: Path, frames, fps: int) -> None:
    """MPEG-4 part 2 in AVI, like UCF101's XviD files."""
    import av

    tmp = path.with_name(f".{path.name}.partial")
    with av.open(str(tmp), "w", format="avi") as c:
        st = c.add_stream("mpeg4", rate=fps)
        st.width, st.height, st.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        st.codec_context.thread_count = 1
        st.codec_context.gop_size = 12
        st.codec_context.bit_rate = 400_000
        st.codec_context.options = {"flags": "+bitexact"}
        for i, a in enumerate(frames):
            f = av.VideoFrame.from_ndarray(a, format="rgb24")
            f.pts = i
            c.mux(st.encode(f))
        c.mux(st.encode(None))
    tmp.replace(path)


def make_synthetic_dataset(out: str | Path, *, force: bool = False, progress: bool = False, **options) -> Path:
    """Generate the dataset under ``out`` and return ``out``.

    Options are the fields of :class:`SynthOptions`. If ``out`` already holds a dataset made with
    the same options it is reused as is; a different one needs ``force=True``.
    """
    import numpy as np

    opt = SynthOptions(**options)
    opt.size, opt.frames = tuple(opt.size), tuple(opt.frames)  # type: ignore[assignment]  # lists from YAML/JSON
    opt.validate()
    out = Path(out)
    stamp = out / STAMP
    cfg = asdict(opt)
    cfg["size"], cfg["frames"] = list(opt.size), list(opt.frames)
    if stamp.is_file():
        try:
            if json.loads(stamp.read_text()) == cfg:
                return out
        except ValueError:
            pass
    ours = {"UCF-101", "ucfTrainTestlist"}
    interrupted = not stamp.exists() and out.is_dir() and {p.name for p in out.iterdir()} <= ours
    if out.exists() and any(out.iterdir()):
        if not force and not interrupted:
            raise UserError(
                f"{out} is not empty and was not made with these options; "
                "choose another folder or pass --force to replace it"
            )
        for sub in ("UCF-101", "ucfTrainTestlist"):
            shutil.rmtree(out / sub, ignore_errors=True)
        stamp.unlink(missing_ok=True)
    names = class_names(opt)
    vdir, ldir = out / "UCF-101", out / "ucfTrainTestlist"
    ldir.mkdir(parents=True, exist_ok=True)
    train: list[str] = []
    test: list[str] = []
    jobs = []
    for ci, cls in enumerate(names):
        (vdir / cls).mkdir(parents=True, exist_ok=True)
        clip_no: dict[int, int] = {}
        for j in range(opt.videos_per_class + opt.extra_test_videos):
            g = (
                group_of(j, opt.videos_per_class, opt.groups)
                if j < opt.videos_per_class
                else (j - opt.videos_per_class) % TEST_GROUPS + 1
            )
            clip_no[g] = clip_no.get(g, 0) + 1
            name = f"v_{cls}_g{g:02d}_c{clip_no[g]:02d}.avi"
            rel = f"{cls}/{name}"
            (test if g <= TEST_GROUPS else train).append(f"{rel} {ci + 1}" if g > TEST_GROUPS else rel)
            jobs.append((ci, j, g, cls, vdir / rel))

    def run(job):
        ci, j, g, cls, path = job
        rng = np.random.default_rng([opt.seed, ci, j, 1])
        bg_rng = np.random.default_rng([opt.seed, ci, g, 2])
        lo, hi = opt.frames
        if lo >= 64 and rng.random() < opt.short_fraction:
            low = max(2, lo // 2)  # (a minimum of 128 frames or more: 32 to 63)
            n = int(rng.integers(low if low < 64 else 32, 64))
        else:
            n = int(rng.integers(lo, hi + 1))
        write_avi(path, render_video(cls, n, opt.size, rng, bg_rng, opt.difficulty), opt.fps)

    if progress:
        from rich.progress import Progress

        with Progress() as bar:
            task = bar.add_task("synthetic videos", total=len(jobs))
            for job in jobs:
                run(job)
                bar.advance(task)
    else:
        for job in jobs:
            run(job)
    crlf = "\r\n"
    (ldir / "classInd.txt").write_bytes("".join(f"{i + 1} {c}{crlf}" for i, c in enumerate(names)).encode())
    (ldir / "trainlist01.txt").write_bytes("".join(ln + crlf for ln in train).encode())
    (ldir / "testlist01.txt").write_bytes("".join(ln + crlf for ln in test).encode())
    from tbfast.data.manifest import atomic_write_text

    atomic_write_text(stamp, json.dumps(cfg, indent=1) + "\n")
    return out
