"""Synthetic dataset: official UCF101 layout, determinism, time-reversal pairs."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tbfast.data.synthetic import class_names, make_synthetic_dataset, render_video, SynthOptions
from tbfast.errors import UserError


def test_layout_and_split_files(synth_src):
    lists = synth_src / "ucfTrainTestlist"
    ci = (lists / "classInd.txt").read_bytes()
    assert ci == b"1 Square\r\n2 Ring\r\n3 MoveUp\r\n4 MoveDown\r\n"
    train = (lists / "trainlist01.txt").read_bytes().decode().split("\r\n")[:-1]
    test = (lists / "testlist01.txt").read_bytes().decode().split("\r\n")[:-1]
    assert len(train) == 8 and len(test) == 8
    assert "Ring/v_Ring_g13_c01.avi 2" in train
    for ln in test:
        cls, name = ln.split("/")
        assert name.startswith(f"v_{cls}_g") and int(name.split("_g")[1][:2]) <= 7 and " " not in ln
    for ln in train:
        path, label = ln.split(" ")
        assert int(path.split("_g")[1][:2]) >= 8
        assert (synth_src / "UCF-101" / path).is_file()


def test_videos_are_mpeg4_avi_with_varied_lengths(synth_src):
    import av

    lengths = []
    for p in sorted((synth_src / "UCF-101").rglob("*.avi")):
        with av.open(str(p)) as c:
            st = c.streams.video[0]
            assert c.format.name == "avi" and st.codec_context.name == "mpeg4"
            assert (st.codec_context.width, st.codec_context.height) == (32, 24)
            lengths.append(sum(1 for _ in c.decode(st)))
    assert len(lengths) == 16 and min(lengths) >= 20 and max(lengths) <= 70
    assert min(lengths) < 64 and len(set(lengths)) > 4


def test_deterministic_and_reused(tmp_path):
    opts = dict(classes=2, videos_per_class=2, size=(16, 16), frames=(6, 8), seed=3)
    digests = []
    for sub in ("a", "b"):
        out = make_synthetic_dataset(tmp_path / sub, **opts)
        digests.append(
            {
                p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(out.rglob("*"))
                if p.is_file()
            }
        )
    assert digests[0] == digests[1] and len(digests[0]) == 4 + 3 + 1
    other = make_synthetic_dataset(tmp_path / "c", **{**opts, "seed": 4})
    v = "UCF-101/MoveUp/v_MoveUp_g01_c01.avi"
    assert (other / v).read_bytes() != (tmp_path / "a" / v).read_bytes()
    # same options: reused untouched; other options: refused without force
    mtime = (tmp_path / "a" / v).stat().st_mtime_ns
    make_synthetic_dataset(tmp_path / "a", **opts)
    assert (tmp_path / "a" / v).stat().st_mtime_ns == mtime
    with pytest.raises(UserError, match="--force"):
        make_synthetic_dataset(tmp_path / "a", **{**opts, "seed": 5})
    make_synthetic_dataset(tmp_path / "a", force=True, **{**opts, "seed": 4})
    assert (tmp_path / "a" / v).read_bytes() == (other / v).read_bytes()
    # an interrupted generation (no stamp yet) is redone without --force; foreign content is not touched
    (other / "synth_config.json").unlink()
    (other / v).write_bytes(b"half")
    make_synthetic_dataset(other, **{**opts, "seed": 4})
    assert (other / v).read_bytes() == (tmp_path / "a" / v).read_bytes()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine.txt").write_text("keep")
    with pytest.raises(UserError, match="not empty"):
        make_synthetic_dataset(tmp_path / "d", **opts)


def test_order_pairs_are_time_reversals():
    for fwd, rev in [("MoveUp", "MoveDown"), ("Grow", "Shrink"), ("FadeIn", "FadeOut"), ("SpeedUp", "SlowDown")]:
        a = render_video(fwd, 12, (32, 24), np.random.default_rng(1), np.random.default_rng(2))
        b = render_video(rev, 12, (32, 24), np.random.default_rng(1), np.random.default_rng(2))
        assert np.array_equal(a[::-1], b)
        assert not np.array_equal(a, b)


def _object_row(frames, bg_frames):
    diff = np.abs(frames.astype(float) - bg_frames.astype(float)).mean(-1)
    rows = np.arange(frames.shape[1])[None, :, None]
    return (diff * rows).sum((1, 2)) / diff.sum((1, 2))


def test_move_up_goes_up_even_in_grey_and_flipped():
    rng_args = lambda: (np.random.default_rng(7), np.random.default_rng(8))  # noqa: E731
    up = render_video("MoveUp", 40, (64, 48), *rng_args()).astype(float)
    grey = up.mean(-1, keepdims=True)
    flipped = grey[:, :, ::-1]
    # the object's luminance differs from the background's, so it moves in grey, flipped frames too
    row_centre = []
    for clip in (grey, flipped):
        med = np.median(clip, axis=0)
        d = (np.abs(clip - med).sum(-1) > 50).astype(float)  # object and distractors, not noise
        rows = np.arange(clip.shape[1])[None, :, None]
        row_centre.append((d * rows).sum((1, 2)) / np.maximum(d.sum((1, 2)), 1))
    for rc in row_centre:
        assert rc[:8].mean() - rc[-8:].mean() > 8  # moved up by more than 8 px of 48


def test_class_counts_and_validation():
    assert class_names(SynthOptions()) == [
        "Square",
        "Ring",
        "Stripes",
        "Cross",
        "MoveUp",
        "MoveDown",
        "Grow",
        "Shrink",
        "FadeIn",
        "FadeOut",
    ]
    assert len(class_names(SynthOptions(classes=16))) == 16
    for bad in (dict(classes=17), dict(size=(33, 24)), dict(frames=(10, 5)), dict(videos_per_class=1), dict(groups=5)):
        with pytest.raises(UserError):
            SynthOptions(**bad).validate()


def test_cli_synth(tmp_path, capsys):
    from tbfast.cli import main

    rc = main(
        [
            "data",
            "synth",
            str(tmp_path / "s"),
            "--classes",
            "2",
            "--videos-per-class",
            "2",
            "--size",
            "16x16",
            "--frames",
            "4",
            "5",
        ]
    )
    assert rc == 0 and "4 videos, 2 classes" in capsys.readouterr().out
    assert len(list((tmp_path / "s" / "UCF-101").rglob("*.avi"))) == 4
    assert main(["data", "synth", str(tmp_path / "s"), "--size", "17x16"]) == 2


def test_extra_test_videos_only_in_test_groups(tmp_path):
    base = dict(classes=2, videos_per_class=8, groups=8, size=(16, 16), frames=(6, 8), seed=3)
    out = make_synthetic_dataset(tmp_path / "x", extra_test_videos=9, **base)
    lists = out / "ucfTrainTestlist"
    train = (lists / "trainlist01.txt").read_text().split()
    test = (lists / "testlist01.txt").read_text().split()
    assert len(test) == 2 * (7 + 9) and len(train) == 2 * 2  # 2 x (path, label) for group 8
    groups = sorted(int(t.split("_g")[1][:2]) for t in test)
    assert max(groups) == 7 and groups.count(1) == 2 * 3 and groups.count(3) == 2 * 2
    # the regular videos are untouched by the extra ones
    plain = make_synthetic_dataset(tmp_path / "y", **base)
    v = "UCF-101/MoveUp/v_MoveUp_g08_c01.avi"
    assert (plain / v).read_bytes() == (out / v).read_bytes()
    assert len(list((out / "UCF-101").rglob("*.avi"))) == 2 * (8 + 9)


def test_short_videos_with_long_minimum_lengths(tmp_path):
    """--frames with a minimum of 128 or more still makes its short videos (under 64 frames; it
    crashed drawing from an empty range), and a minimum under 128 keeps its lengths as before."""
    import av

    def lengths(out):
        n = []
        for p in sorted((out / "UCF-101").rglob("*.avi")):
            with av.open(str(p)) as c:
                n.append(sum(1 for _ in c.decode(video=0)))
        return n

    base = dict(classes=1, videos_per_class=3, groups=8, size=(16, 16), seed=3, short_fraction=1.0)
    long = lengths(make_synthetic_dataset(tmp_path / "a", frames=(150, 180), **base))
    assert len(long) == 3 and all(32 <= n < 64 for n in long)
    usual = lengths(make_synthetic_dataset(tmp_path / "b", frames=(72, 110), **base))
    assert all(36 <= n < 64 for n in usual)  # [lo // 2, 64), unchanged


@pytest.mark.parametrize(
    "bad,message",
    [
        (["--fps", "0"], "--fps 0"),
        (["--short-fraction", "2"], "--short-fraction"),
        (["--order-pairs", "-1"], "--order-pairs"),
        (["--classes", "0"], "at least 1"),
    ],
)
def test_synth_refuses_nonsense_options(tmp_path, capsys, bad, message):
    from tbfast.cli import main

    assert main(["data", "synth", str(tmp_path / "out"), *bad]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
