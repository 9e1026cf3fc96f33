"""Frame and augmentation plans (pure Python, METHOD.md §2-3)."""

import numpy as np
import pytest

from tbfast.data.plans import (
    SSL_AUG,
    TRAIN_AUG,
    clip_frames,
    default_spec,
    epoch_batches,
    eval_starts,
    plan_sample,
    random_view,
)


def test_ssl_clips_long_is_every_4th_and_shorts_tile_the_span():
    spec = default_spec("ssl")
    c = clip_frames("ssl", 200, 37, spec)
    assert c["long"].tolist() == [[37 + 4 * k for k in range(16)]]
    assert c["short"].shape == (4, 16)
    assert c["short"].ravel().tolist() == list(range(37, 37 + 64))
    # the t-th quarter of the long clip lies inside short clip t (alignment of §2)
    for t in range(4):
        assert set(c["long"][0, 4 * t : 4 * t + 4]) <= set(c["short"][t])


def test_short_videos_are_padded_with_the_last_frame():
    spec = default_spec("ssl")
    c = clip_frames("ssl", 20, 0, spec)
    assert c["short"].ravel().tolist() == list(range(20)) + [19] * 44
    assert c["long"].max() == 19
    p = plan_sample(3, 20, 32, 48, spec=spec, size=16)
    assert p.decode.tolist() == list(range(20))
    assert p.orders["short"].max() == 19 and p.orders["long"][0, -1] == 19
    e = clip_frames("eval", 10, 0, default_spec("eval"))
    assert e["clip"].shape == (10, 8) and e["clip"].max() == 9


def test_train_eval_similarity_frames():
    c = clip_frames("train", 100, 5, default_spec("train"))["clip"]
    assert c.tolist() == [list(range(5, 20, 2))]
    spec = default_spec("eval")
    starts = eval_starts(100, spec)
    assert starts[0] == 0 and starts[-1] == 100 - 15 and len(starts) == 10
    assert np.all(np.diff(starts) >= 9)
    e = clip_frames("eval", 100, 0, spec)["clip"]
    assert (e[:, 1:] - e[:, :-1] == 2).all()
    s = clip_frames("similarity", 100, 0, default_spec("similarity"))["clip"]
    assert s.ravel().tolist() == list(range(18, 82))  # centred, consecutive, non-overlapping


def test_plan_is_a_pure_function_of_seed_epoch_index():
    spec = default_spec("ssl")
    a = plan_sample(7, 300, 128, 170, spec=spec, size=112, seed=1, epoch=2)
    b = plan_sample(7, 300, 128, 170, spec=spec, size=112, seed=1, epoch=2)
    c = plan_sample(7, 300, 128, 170, spec=spec, size=112, seed=1, epoch=3)
    assert a.clips["long"].tolist() == b.clips["long"].tolist()
    assert a.views == b.views
    assert a.views != c.views
    # the two views of a clip are drawn independently
    assert a.views["long"][0][0] != a.views["long"][1][0]


def test_view_ranges_and_probabilities():
    from tbfast.data.plans import Draws

    rng = Draws(np.random.PCG64(0))
    h, w, size = 120, 160, 112
    n = 4000
    views = [random_view(rng, h, w, size, SSL_AUG) for _ in range(n)]
    for v in views[:500]:
        y0, x0, y1, x1 = v.roi
        side = y1 - y0
        assert 0.5 * h - 1e-6 <= side <= h + 1e-6 and abs(abs(x1 - x0) - side) < 1e-6
        assert 0 <= y0 and y1 <= h + 1e-6 and 0 <= min(x0, x1) and max(x0, x1) <= w + 1e-6
        assert (x0 > x1) == v.flip
        for y, x, bh, bw in v.erase:
            assert np.ceil(size / 6) <= bh < np.ceil(size / 3) and np.ceil(size / 6) <= bw < np.ceil(size / 3)
            assert 0 <= y <= size - bh and 0 <= x <= size - bw
        assert v.contrast == 1.0 or 0.75 <= v.contrast <= 1.25
        assert v.hue == 0.0 or -36.0 <= v.hue <= 36.0
    rate = lambda f: np.mean([f(v) for v in views])  # noqa: E731
    assert abs(rate(lambda v: v.flip) - 0.5) < 0.04
    assert abs(rate(lambda v: v.gray) - 0.175) < 0.03
    assert abs(rate(lambda v: v.drop_channel >= 0) - 0.125) < 0.03
    assert abs(rate(lambda v: len(v.erase) > 0) - 0.7) < 0.04
    assert abs(rate(lambda v: v.contrast != 1.0) - 0.25) < 0.04
    assert abs(rate(lambda v: v.hue != 0.0) - 0.3) < 0.04
    assert abs(rate(lambda v: v.brightness != 1.0) - 0.3) < 0.04
    tv = [random_view(rng, h, w, size, TRAIN_AUG) for _ in range(n)]
    assert abs(np.mean([len(v.erase) for v in tv]) - 0.8) < 0.06  # two erases at p=0.4
    assert all(v.drop_channel < 0 for v in tv)
    assert min((v.roi[2] - v.roi[0]) / h for v in tv) < 0.45


@pytest.mark.parametrize("drop_last", [False, True])
def test_sharding_disjoint_and_complete(drop_last):
    idx = list(range(3, 40))
    kw = dict(batch_size=4, seed=5, epoch=1, shuffle=True, drop_last=drop_last, num_shards=2)
    r0 = epoch_batches(idx, shard_id=0, **kw)
    r1 = epoch_batches(idx, shard_id=1, **kw)
    s0 = [i for b in r0 for i in b]
    s1 = [i for b in r1 for i in b]
    assert not set(s0) & set(s1)
    if drop_last:
        assert len(r0) == len(r1) == 37 // 8 and all(len(b) == 4 for b in r0 + r1)
    else:
        assert sorted(s0 + s1) == idx


def test_order_changes_per_epoch_and_is_reproducible():
    idx = list(range(50))
    kw = dict(batch_size=5, seed=0, shuffle=True, drop_last=True)
    e0 = epoch_batches(idx, epoch=0, **kw)
    assert e0 == epoch_batches(idx, epoch=0, **kw)
    assert e0 != epoch_batches(idx, epoch=1, **kw)
    assert epoch_batches(idx, epoch=0, batch_size=5, seed=0, shuffle=False, drop_last=False)[0] == [0, 1, 2, 3, 4]


def _readable_random_view(rng, height, width, size, aug):
    """The readable form of ``random_view`` (one generator call per quantity, in METHOD.md §3's
    order); the library's fast version must draw exactly the same."""
    import math

    from tbfast.data.plans import ClipView

    side = float(rng.uniform(*aug.crop_scale)) * min(height, width)
    y0 = float(rng.uniform(0, height - side))
    x0 = float(rng.uniform(0, width - side))
    flip = bool(rng.random() < aug.flip_p)
    roi = (y0, x0 + side, y0 + side, x0) if flip else (y0, x0, y0 + side, x0 + side)
    draws = rng.random(6)
    contrast = float(rng.uniform(*aug.contrast)) if draws[0] < aug.contrast_p else 1.0
    hue = float(rng.uniform(*aug.hue)) * 360.0 if draws[1] < aug.hue_p else 0.0
    saturation = float(rng.uniform(*aug.saturation)) if draws[2] < aug.saturation_p else 1.0
    brightness = float(rng.uniform(*aug.brightness)) if draws[3] < aug.brightness_p else 1.0
    gray = bool(draws[4] < aug.gray_p)
    channel = int(rng.integers(0, 3))
    drop = channel if draws[5] < aug.channel_drop_p else -1
    erase = []
    lo, hi = aug.erase_size
    for _ in range(aug.num_erase):
        p = rng.random()
        h = int(rng.integers(math.ceil(size * lo), max(math.ceil(size * hi), math.ceil(size * lo) + 1)))
        w = int(rng.integers(math.ceil(size * lo), max(math.ceil(size * hi), math.ceil(size * lo) + 1)))
        y = int(rng.integers(0, size - h + 1))
        x = int(rng.integers(0, size - w + 1))
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
        drop_channel=drop,
        erase=erase,
    )


@pytest.mark.parametrize("aug", [SSL_AUG, TRAIN_AUG], ids=["ssl", "train"])
def test_fast_random_view_draws_exactly_what_the_readable_form_draws(aug):
    from tbfast.data.plans import random_view, sample_draws, sample_rng

    for i in range(400):
        a, b = sample_draws(3, 1, i, "ssl"), sample_rng(3, 1, i, "ssl")
        for _ in range(4):
            h, w, s = 48 + i % 7, 64 + i % 5, 16 + 8 * (i % 3)
            assert random_view(a, h, w, s, aug) == _readable_random_view(b, h, w, s, aug)
        assert a.random() == b.random()  # the streams end in the same state


def test_draws_replay_numpys_generator_exactly():
    """Draws (the plans' fast replay of raw PCG64 outputs) against numpy's Generator methods, with
    doubles and 32-bit integers interleaved (the kept high half), every range width up to 2**32
    (Lemire's rejection taken), empty ranges (no draw) and a refill of the raw block."""
    from tbfast.data.plans import Draws

    rng = np.random.default_rng(11)
    for trial in range(20):
        a, b = Draws(np.random.PCG64(trial)), np.random.Generator(np.random.PCG64(trial))
        for _ in range(300):
            kind = rng.integers(0, 4)
            if kind == 0:
                assert a.random() == b.random()
            elif kind == 1:
                lo, hi = sorted(rng.uniform(-5, 5, 2).tolist())
                assert a.uniform(lo, hi) == b.uniform(lo, hi)
            else:
                lo = int(rng.integers(-100, 100))
                width = int(rng.choice([1, 2, 3, 37, 113, 2**31 + 7, 3 * 2**30, 2**32 - 1, 2**32]))
                assert a.integers(lo, lo + width) == b.integers(lo, lo + width)


@pytest.mark.parametrize("mode", ["ssl", "train", "eval", "similarity"])
def test_plan_sample_uses_the_samples_numpy_generator(mode):
    """The plan is what one numpy Generator call per quantity gives (the readable form of the
    start and the views), for every mode, video length (short ones padded) and aspect."""
    from tbfast.data.plans import SamplePlan, sample_rng

    for i in range(60):
        frames, h, w = [20, 64, 90, 301][i % 4], [48, 128, 170][i % 3], [64, 170, 128][i % 3]
        spec = default_spec(mode)
        got: SamplePlan = plan_sample(i, frames, h, w, spec=spec, size=32, seed=5, epoch=2)
        rng = sample_rng(5, 2, i, mode)
        start = int(rng.integers(0, max(frames - spec.span, 0) + 1)) if mode in ("ssl", "train") else 0
        assert all(np.array_equal(got.clips[k], v) for k, v in clip_frames(mode, frames, start, spec).items())
        if spec.aug is not None:
            want = [
                [[_readable_random_view(rng, h, w, 32, spec.aug) for _ in range(c.shape[0])] for _ in range(spec.views)]
                for c in got.clips.values()
            ]
            assert [got.views[k] for k in got.clips] == want
