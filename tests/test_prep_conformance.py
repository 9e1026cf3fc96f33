"""Conformance of ``tbfast data prep`` on real-world video properties (issue 17).

Every case is a small video written here with PyAV whose frames carry their own index
(tests/_media.py), stored the way the property asks: variable frame rate in Matroska with a
declared 1000 fps, phone rotation, mirrors, full-range MJPEG, a BT.709 matrix, 4:4:4, non-square
pixels, a one-frame thumbnail track before the real one, timestamps starting at 5 s, an MP4 edit
list, a camcorder ``.MTS`` (MPEG-TS), B-frames, a recording gap. Each case is prepared at the
source rate and at ``--fps 30``, as VP9 and as H.264, and checked for content, not counts only:

* output frame k shows the source frame current at k/fps (read from its marker);
* the picture is upright, unmirrored and at the display aspect (marker + patch positions, size);
* the colours of two known patches survive (range and matrix);
* the manifest's rate, size and flags say what was done, and DALI's decoder sees its frame count.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from _media import DARK, RED, read_frame, write_video
from tbfast.data.manifest import read_manifest
from tbfast.data.prep import prepare
from tbfast.data.transcode import out_size

SHORT = 48  # prepared short side: the display pictures are 64x48 (or 48x64 upright portrait)
W, H = 64, 48
_rng = np.random.default_rng(17)
VFR_TIMES = np.round(np.cumsum(np.r_[0, _rng.uniform(1 / 45, 1 / 20, 59)]), 3).tolist()  # ~30 fps, 1 ms ticks
GAP_TIMES = [i / 25 for i in range(20)] + [1.5 + 19 / 25 + i / 25 for i in range(20)]  # a 1.5 s pause

# name -> (file name, write_video keyword arguments, expectations)
#   shown: the source frame indices the player shows, in order; times: their display times (s)
#   rate: the prepared rate at the source rate; flags: manifest flags that must be present
CASES = {
    "cfr_bframes": ("c.mp4", dict(n=40), dict(rate=25, flags=[])),
    "vfr_mkv_1000": (
        "v.mkv",
        dict(n=60, fmt="matroska", rate=1000, times=VFR_TIMES, time_base=Fraction(1, 1000)),
        dict(
            rate=Fraction(30000, 1001) if abs(59 / VFR_TIMES[-1] - 29.97) < 0.15 else None,
            times=VFR_TIMES,
            flags=["vfr", "rate_from_timestamps"],
        ),
    ),
    "portrait_rot90": ("p.mp4", dict(n=30, w=48, h=64, rotation=90), dict(rate=25, flags=["orient:cclock"])),
    "rot270": ("r.mp4", dict(n=30, rotation=270), dict(rate=25, flags=["orient:clock"])),
    "rot180_hflip": ("f.mp4", dict(n=30, rotation=180, hflip=True), dict(rate=25, flags=["orient:vflip"])),
    "transposed": (
        "t.mp4",
        dict(n=30, w=48, h=64, rotation=270, hflip=True),
        dict(rate=25, flags=["orient:transpose"]),
    ),
    "full_range_mjpeg": (
        "j.avi",
        dict(n=30, codec="mjpeg", pix_fmt="yuvj420p", full_range=True),
        dict(rate=25, flags=["full_range"]),
    ),
    "full_range_h264": ("fr.mp4", dict(n=30, full_range=True), dict(rate=25, flags=["full_range"])),  # phones
    # VP9/AV1 decoders keep yuv420p and only tag the range: the conversion must read the tag
    "full_range_vp9": (
        "fr.webm",
        dict(n=30, fmt="webm", codec="libvpx-vp9", full_range=True, time_base=Fraction(1, 1000)),
        dict(rate=25, flags=["full_range"]),
    ),
    "bt709_matrix": ("m.mp4", dict(n=30, colorspace="bt709"), dict(rate=25, flags=["matrix:bt709"])),
    "yuv444": ("y.mp4", dict(n=30, pix_fmt="yuv444p"), dict(rate=25, flags=[])),
    "ten_bit": ("x.mp4", dict(n=30, pix_fmt="yuv420p10le"), dict(rate=25, flags=[])),
    "yuv422_10bit_bt709": (
        "x2.mov",
        dict(n=30, pix_fmt="yuv422p10le", colorspace="bt709"),
        dict(rate=25, flags=["matrix:bt709"]),
    ),
    "xvid_avi_bframes": (
        "v_X_g01_c01.avi",
        dict(n=40, fmt="avi", codec="mpeg4", time_base=Fraction(1, 25), options={"bf": "2"}),
        dict(rate=25, flags=[]),
    ),
    "sar_4_3": ("s.mp4", dict(n=30, sar=Fraction(4, 3)), dict(rate=25, flags=["sar:4/3"])),
    "thumbnail_first": (
        "th.mkv",
        dict(n=40, fmt="matroska", thumbnail_first=True),
        dict(rate=25, flags=["video_stream:1"]),
    ),
    "start_5s_mkv": (
        "o.mkv",
        dict(n=40, fmt="matroska", start=5.0, time_base=Fraction(1, 1000)),
        dict(rate=25, flags=[]),
    ),
    "start_5s_mp4": ("o4.mp4", dict(n=40, start=5.0), dict(rate=25, flags=[])),
    "camcorder_mts": (
        "CAM.MTS",
        dict(n=40, fmt="mpegts", rate=Fraction(30000, 1001), options={"bf": "0"}),
        dict(rate=Fraction(30000, 1001), flags=[]),
    ),
    "gap": (
        "g.mkv",
        dict(n=40, fmt="matroska", times=GAP_TIMES, time_base=Fraction(1, 1000)),
        dict(rate=25, times=GAP_TIMES, flags=["vfr"]),
    ),  # the pause is not part of the rate
}


def _write_edit_list(path):
    """An MP4 whose edit list starts 10 frames into its media (as ``ffmpeg -ss .. -c copy`` makes)."""
    import av

    tmp = write_video(path.with_name("_el_src.mp4"), n=48)
    with av.open(str(tmp)) as i, av.open(str(path), "w") as o:
        ist = i.streams.video[0]
        ost = o.add_stream_from_template(ist)
        shift = int(Fraction(10, 25) / ist.time_base)
        for p in i.demux(ist):
            if p.dts is None:
                continue
            p.pts -= shift
            p.dts -= shift
            p.stream = ost
            o.mux(p)
    tmp.unlink()
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    src = tmp_path_factory.mktemp("conformance_src")
    for name, (fname, kw, _) in CASES.items():
        write_video(src / name / fname, **kw)
    _write_edit_list(src / "edit_list" / "e.mp4")
    return src


EXPECT = {name: exp for name, (_, _, exp) in CASES.items()}
EXPECT["edit_list"] = dict(rate=25, flags=[], shown=list(range(10, 48)))


def _display_size(name):
    kw = CASES[name][1] if name in CASES else {}
    w, h = kw.get("w", W), kw.get("h", H)
    return w, h  # write_video's w/h are the display picture's


def _expected_indices(exp, n_src, rate):
    shown = exp.get("shown", list(range(n_src)))
    times = exp.get("times") or [i / 25 for i in range(len(shown))]
    if "camcorder" in exp.get("_name", ""):
        times = [i * 1001 / 30000 for i in range(len(shown))]
    times = [t - times[0] for t in times]
    avg = times[-1] / (len(times) - 1)
    n_out = math.ceil((times[-1] + avg) * rate - 1e-3)
    allowed = []
    for k in range(n_out):
        t = k / rate
        cur = {
            shown[max(i for i, s in enumerate(times) if s <= t + 1.5e-3)],
            shown[max(i for i, s in enumerate(times) if s <= t - 1.5e-3)] if t >= 1.5e-3 else shown[0],
        }
        allowed.append(cur)
    return allowed


def _frames(path):
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(
    scope="module",
    params=[("vp9", None), ("h264", None), ("vp9", 30.0), ("h264", 30.0)],
    ids=["vp9-source-rate", "h264-source-rate", "vp9-fps30", "h264-fps30"],
)
def prepared(request, source, tmp_path_factory):
    codec, fps = request.param
    out = tmp_path_factory.mktemp(f"conf_{codec}_{fps}")
    report = prepare(source, out, "folder", codec=codec, fps=fps, short_side=SHORT, workers=2, show_progress=False)
    return out, report, fps


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_prepared_video_shows_what_a_player_shows(prepared, name):
    out, report, fps = prepared
    assert report["counts"]["failed"] == 0, report["failures"]
    (rec,) = [r for r in read_manifest(out) if r.class_name == name]
    exp = {**EXPECT[name], "_name": name}
    rate = fps or exp["rate"]
    if rate is None:  # a rate measured from irregular timestamps: frames over their span
        times = exp["times"]
        rate = rec.fps
        assert abs(rec.fps - (len(times) - 1) / (times[-1] - times[0])) / rec.fps < 0.006
    assert rec.fps == pytest.approx(float(rate), abs=1e-4)
    for f in exp["flags"]:
        if f != "rate_from_timestamps" or fps is None:  # --fps: the rate is the user's
            assert f in rec.flags, (f, rec.flags)
    dw, dh = _display_size(name)
    assert (rec.width, rec.height) == out_size(dw, dh, SHORT)

    frames = _frames(out / rec.path)
    assert len(frames) == rec.frames
    n_src = CASES[name][1]["n"] if name in CASES else 48
    allowed = _expected_indices(exp, n_src, float(rate))
    assert abs(len(frames) - len(allowed)) <= 1, (len(frames), len(allowed))
    got = []
    for k, a in enumerate(frames):
        j, red, dark = read_frame(a)
        got.append(j)
        assert np.abs(red - RED).max() < 20, (k, red)  # orientation, range and matrix
        assert np.abs(dark - DARK).max() < 10, (k, dark)
    for k, (j, ok) in enumerate(zip(got, allowed)):
        assert j in ok, f"output frame {k} shows source frame {j}, expected {sorted(ok)} (all: {got})"


def test_dali_sees_the_manifest_frame_counts(prepared):
    from nvidia.dali import fn, pipeline_def, types

    import torch

    out, _, _ = prepared
    records = read_manifest(out)
    gpu = records[0].path.endswith(".mp4")  # DALI's CPU decoder has no H.264 (docs/DESIGN.md): NVDEC only
    if gpu and not torch.cuda.is_available():
        pytest.skip("H.264 outputs decode on DALI's GPU (NVDEC) only; no CUDA here")
    data = [np.fromfile(out / r.path, dtype=np.uint8) for r in records]

    @pipeline_def(
        batch_size=len(records),
        num_threads=1,
        device_id=0 if gpu else None,
        prefetch_queue_depth=1,
        exec_async=False,
        exec_pipelined=False,
    )
    def pipe():
        enc = fn.external_source(name="enc", dtype=types.UINT8, ndim=1)
        return fn.decoders.video(enc, device="mixed" if gpu else "cpu")

    p = pipe()
    p.build()
    p.feed_input("enc", data)
    (dec,) = p.run()
    for i, r in enumerate(records):
        v = np.array(dec.as_cpu()[i]) if gpu else np.array(dec[i])
        assert v.shape == (r.frames, r.height, r.width, 3), r.path
        j, red, dark = read_frame(v[len(v) // 2])
        assert j is not None and np.abs(red - RED).max() < 20 and np.abs(dark - DARK).max() < 10, (r.path, red, dark)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize("hflip", [False, True])
def test_all_eight_orientations_turn_upright(tmp_path, rotation, hflip):
    """Each of the 8 display matrices (4 rotations x mirror) gives back the display picture; the
    table follows FFmpeg's autorotate (checked against the ffmpeg 5.1 command line while writing it)."""
    import av

    from tbfast.data.transcode import _orient_plane, display_matrix, orientation

    p = write_video(tmp_path / "o.mp4", n=2, first=37, rotation=rotation, hflip=hflip)
    with av.open(str(p)) as c:
        f = next(c.decode(video=0))
        ops = orientation(display_matrix(f))
        a = f.to_ndarray(format="rgb24")
    shown = np.stack([_orient_plane(a[..., i], ops) for i in range(3)], -1)
    assert shown.shape == (H, W, 3)
    j, red, dark = read_frame(shown)
    assert j == 37 and np.abs(red - RED).max() < 20 and np.abs(dark - DARK).max() < 10


def test_implausible_rate_fails_with_the_reason_and_fps_fixes_it(tmp_path):
    src = tmp_path / "src"
    # 40 frames 1 ms apart: a real 1000 fps, which no action clip sampler can use as is
    write_video(
        src / "a" / "fast.mkv",
        n=40,
        fmt="matroska",
        rate=1000,
        time_base=Fraction(1, 1000),
        times=[i / 1000 for i in range(40)],
    )
    write_video(src / "a" / "ok.mp4", n=30)
    rep = prepare(src, tmp_path / "out", "folder", short_side=SHORT, workers=1, show_progress=False)
    (fail,) = rep["failures"]
    assert fail["source"] == "a/fast.mkv" and "implausible frame rate 1000 fps" in fail["reason"]
    assert "--fps" in fail["reason"] and rep["counts"]["prepared"] == 1
    rep = prepare(src, tmp_path / "out30", "folder", fps=30, short_side=SHORT, workers=1, show_progress=False)
    assert rep["counts"]["failed"] == 0
    rec = next(r for r in read_manifest(tmp_path / "out30") if r.source == "a/fast.mkv")
    assert rec.fps == 30.0 and rec.frames == 2  # 40 ms of video at 30 fps


def test_truncation_is_still_found_with_a_start_offset_and_an_edit_list(tmp_path):
    src = tmp_path / "src"
    full = write_video(tmp_path / "o.mkv", n=80, fmt="matroska", start=5.0, time_base=Fraction(1, 1000)).read_bytes()
    (src / "a").mkdir(parents=True)
    (src / "a" / "cut.mkv").write_bytes(full[: len(full) // 2])
    mp4 = _write_edit_list(tmp_path / "e.mp4").read_bytes()
    (src / "a" / "cut.mp4").write_bytes(mp4[: len(mp4) * 2 // 3])
    write_video(src / "a" / "good.mkv", n=40, fmt="matroska", start=5.0, time_base=Fraction(1, 1000))
    rep = prepare(src, tmp_path / "out", "folder", short_side=SHORT, workers=1, show_progress=False)
    reasons = {f["source"]: f["reason"] for f in rep["failures"]}
    assert set(reasons) == {"a/cut.mkv", "a/cut.mp4"}, reasons
    assert all(r.startswith(("truncated", "not a video", "no frames")) for r in reasons.values()), reasons
    assert rep["counts"]["prepared"] == 1


def test_camera_extensions_listed_in_any_case_and_other_files_reported(tmp_path, capsys):
    from tbfast.cli import main

    src = tmp_path / "src"
    for name in ("A.MTS", "b.m2ts", "c.ts", "d.Mp4"):
        write_video(src / "cam" / name, n=20, fmt="mpegts" if "ts" in name.lower() else "mp4", options={"bf": "0"})
    (src / "cam" / "notes.txt").write_text("shot list")
    (src / "cam" / "clip.xyz").write_bytes(b"\0" * 10)
    (src / "cam" / "sub").mkdir()
    (src / "cam" / ".DS_Store").write_bytes(b"\0")
    assert (
        main(
            [
                "data",
                "prep",
                str(src),
                str(tmp_path / "out"),
                "--format",
                "folder",
                "--short-side",
                "48",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert sorted(r.source for r in read_manifest(tmp_path / "out")) == [
        "cam/A.MTS",
        "cam/b.m2ts",
        "cam/c.ts",
        "cam/d.Mp4",
    ]
    err = " ".join(capsys.readouterr().err.split())
    assert "3 file(s) or folder(s) in class folders are not videos" in err
    assert "cam/clip.xyz" in err and "cam/notes.txt" in err and "cam/sub/" in err and "DS_Store" not in err
    import json

    rep = json.loads((tmp_path / "out" / "prep_report.json").read_text())
    assert rep["counts"]["unlisted"] == 3
    (w,) = [w for w in rep["warnings"] if "unlisted" in w]
    assert w["unlisted"] == ["cam/clip.xyz", "cam/notes.txt", "cam/sub/"]


def test_outputs_of_an_earlier_prep_version_are_transcoded_again(tmp_path, capsys):
    import json

    from tbfast.data.prep import JOURNAL
    from tbfast.data.transcode import PREP_VERSION

    src, out = tmp_path / "src", tmp_path / "out"
    write_video(src / "a" / "phone.mp4", n=20, w=48, h=64, rotation=90)
    prepare(src, out, "folder", short_side=SHORT, workers=1, show_progress=False)
    j = out / JOURNAL
    lines = [json.loads(x) for x in j.read_text().splitlines()]
    assert all(e["key"].startswith(f"v{PREP_VERSION}|") for e in lines)
    # a journal written before prep knew display matrices: same settings, no version
    j.write_text("".join(json.dumps({**e, "key": e["key"].split("|", 1)[1]}) + "\n" for e in lines))
    capsys.readouterr()
    rep = prepare(src, out, "folder", short_side=SHORT, workers=1, show_progress=False)
    assert rep["counts"]["transcoded"] == 1 and rep["counts"]["skipped"] == 0
    assert "earlier version of prep: transcoded again" in " ".join(capsys.readouterr().err.split())
    rep = prepare(src, out, "folder", short_side=SHORT, workers=1, show_progress=False)
    assert rep["counts"]["skipped"] == 1


@pytest.mark.parametrize("kind", ["scaled", "full_range_709", "rotated"])
def test_one_swscale_context_per_video_prepares_the_same_bytes(tmp_path, monkeypatch, kind):
    """transcode converts every frame through one reformatter per video (PyAV's frame.reformat set up
    a new swscale context per frame, as costly as encoding the frame): the prepared file is
    byte-identical to converting each frame with a fresh context (and PyAV's default swscale threads),
    for a downscale, a full-range 10-bit 4:2:2 BT.709 source and a rotated one."""
    import av.video.reformatter as rf

    from tbfast.data import transcode as tc

    kw = {
        "scaled": dict(w=320, h=240),
        "full_range_709": dict(w=200, h=150, full_range=True, colorspace="bt709", pix_fmt="yuv422p10le"),
        "rotated": dict(w=160, h=120, rotation=90),
    }[kind]
    src = write_video(tmp_path / "src.mp4", n=20, **kw)
    settings = tc.Settings(short_side=64)
    tc.transcode(src, tmp_path / "reused.webm", settings)

    original = rf.VideoReformatter

    class FreshPerFrame:  # the earlier behaviour: a new context for every frame, PyAV's default threads
        def reformat(self, frame, *a, **k):
            k.pop("threads", None)
            return original().reformat(frame, *a, **k)

    calls = []
    monkeypatch.setattr(rf, "VideoReformatter", lambda: calls.append(1) or FreshPerFrame())
    tc.transcode(src, tmp_path / "fresh.webm", settings)
    assert calls, "transcode did not take its reformatter from av.video.reformatter"
    a, b = ((tmp_path / n).read_bytes() for n in ("reused.webm", "fresh.webm"))
    assert len(a) > 1000 and a == b
