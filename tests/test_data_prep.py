"""`tbfast data prep`: manifest matches the source, outputs are VP9/CFR/GOP 16, bad inputs,
resumability, interrupted runs, variable frame rate, DALI CPU decoding."""

from __future__ import annotations

import json
import os
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tbfast.cli import main
from tbfast.data.manifest import read_classes, read_manifest, split_indices
from tbfast.errors import UserError
from tbfast.data.prep import JOURNAL, prepare
from tbfast.data.transcode import keyframe_indices, verify


def _frames(path):
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def _write(path, frames, rate=25, codec="mpeg4", fmt="avi", pts=None, time_base=None):
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as c:
        st = c.add_stream(codec, rate=rate)
        st.height, st.width = frames.shape[1:3]
        st.pix_fmt = "yuv420p"
        if time_base:
            st.time_base = time_base
            st.codec_context.time_base = time_base
        for i, a in enumerate(frames):
            f = av.VideoFrame.from_ndarray(a, format="rgb24")
            f.pts = i if pts is None else pts[i]
            if time_base:
                f.time_base = time_base
            for p in st.encode(f):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)
    return path


def _grey(n, h=24, w=32, levels=None):
    levels = levels if levels is not None else [8 * (i % 30) + 8 for i in range(n)]
    return np.stack([np.full((h, w, 3), v, np.uint8) for v in levels])


def test_manifest_matches_source(prepared, synth_src):
    records = read_manifest(prepared)
    classes = read_classes(prepared)
    assert classes == ["Square", "Ring", "MoveUp", "MoveDown"]
    assert len(records) == 16 and len(split_indices(records, "train")) == 8
    assert [r.path for r in records] == sorted(r.path for r in records)
    for r in records:
        src = synth_src / r.source
        assert r.path == f"videos/{r.class_name}/{Path(r.source).stem}.webm"
        assert r.label == classes.index(r.class_name)
        group = int(r.source.split("_g")[1][:2])
        assert r.split == ("test" if group <= 7 else "train")
        assert r.frames == _frames(src) == _frames(prepared / r.path)
        assert (r.width, r.height, r.fps) == (32, 24, 25.0)
        assert r.flags == (["short"] if r.frames < 64 else [])
    assert any("short" in r.flags for r in records) and not all("short" in r.flags for r in records)
    rep = json.loads((prepared / "prep_report.json").read_text())
    assert rep["counts"]["prepared"] == 16 and rep["counts"]["failed"] == 0 and rep["failures"] == []


def test_outputs_vp9_yuv420p_gop16_no_audio(prepared):
    import av

    r = max(read_manifest(prepared), key=lambda r: r.frames)
    with av.open(str(prepared / r.path)) as c:
        assert c.format.name.startswith("matroska") and not c.streams.audio
        st = c.streams.video[0]
        assert st.codec_context.name in ("vp9", "libvpx-vp9")
        assert st.codec_context.pix_fmt == "yuv420p"
    assert keyframe_indices(prepared / r.path) == list(range(0, r.frames, 16))


def test_cfr_frame_identity_and_h264(tmp_path):
    src = tmp_path / "src" / "c" / "v.avi"
    levels = [8 * (i % 30) + 8 for i in range(40)]
    _write(src, _grey(40, 25, 33, levels))  # odd size 33x25
    rep = prepare(
        tmp_path / "src", tmp_path / "out", "folder", codec="h264", short_side=24, workers=1, show_progress=False
    )
    (r,) = read_manifest(tmp_path / "out")
    assert r.path.endswith(".mp4") and (r.width, r.height) == (32, 24) and r.flags == ["short", "odd_size"]
    assert any("odd frame size" in w["reason"] for w in rep["warnings"])
    import av

    with av.open(str(tmp_path / "out" / r.path)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        got = [f.to_ndarray(format="gray").mean() for f in c.decode(video=0)]
    assert np.abs(np.array(got) - np.array(levels)).max() < 6  # frame k is source frame k


def test_variable_frame_rate_resampled_to_cfr(tmp_path):
    # 30 frames with gaps: ms timestamps 0,40,...; then 80 ms steps; then 20 ms steps
    pts, t = [], 0
    for i in range(30):
        pts.append(t)
        t += 40 if i < 10 else 80 if i < 20 else 20
    levels = [8 * i + 8 for i in range(30)]
    _write(
        tmp_path / "src" / "c" / "vfr.mkv",
        _grey(30, levels=levels),
        codec="libvpx-vp9",
        fmt="matroska",
        pts=pts,
        time_base=Fraction(1, 1000),
    )
    prepare(tmp_path / "src", tmp_path / "out", "folder", fps=25, short_side=24, workers=1, show_progress=False)
    (r,) = read_manifest(tmp_path / "out")
    # output frame k shows the source frame current at k/25 s, until one average frame after the last
    end = pts[-1] * 30 / 29
    expect = [max(i for i, p in enumerate(pts) if p <= 40 * k) for k in range(int(np.ceil(end / 40)))]
    assert r.frames == len(expect) == 36 and r.fps == 25.0
    assert "vfr" in r.flags
    import av

    with av.open(str(tmp_path / "out" / r.path)) as c:
        got = [f.to_ndarray(format="rgb24").mean() for f in c.decode(video=0)]
    idx = [int(round((g - 8) / 8)) for g in got]
    assert idx == expect


def _bad_folder(tmp_path, synth_src):
    src = tmp_path / "src"
    good = sorted((synth_src / "UCF-101" / "Ring").glob("*.avi"))[:2]
    (src / "good").mkdir(parents=True)
    for g in good:
        shutil.copy(g, src / "good" / g.name)
    bad = src / "bad"
    bad.mkdir()
    (bad / "empty.avi").write_bytes(b"")
    data = good[0].read_bytes()
    (bad / "truncated.avi").write_bytes(data[: len(data) // 2])
    webm = _write(tmp_path / "full.webm", _grey(40), codec="libvpx-vp9", fmt="webm").read_bytes()
    (bad / "truncated.webm").write_bytes(webm[: len(webm) // 2])
    (bad / "notavideo.mp4").write_bytes(b"this is not a video\n" * 50)
    (bad / "missing.avi").symlink_to(tmp_path / "nowhere.avi")
    (bad / "unreadable.avi").mkdir()  # a folder where a video should be
    if os.geteuid() != 0:  # root reads everything
        (bad / "noperm.avi").write_bytes(data)
        (bad / "noperm.avi").chmod(0)
    _write(bad / "odd.avi", _grey(20, 25, 35))
    _write(bad / "tiny.avi", _grey(3))
    return src


def test_bad_inputs_reported_rest_proceeds_and_rerun_skips(tmp_path, synth_src, capsys):
    src = _bad_folder(tmp_path, synth_src)
    out = tmp_path / "out"
    args = [
        "data",
        "prep",
        str(src),
        str(out),
        "--format",
        "folder",
        "--short-side",
        "24",
        "--workers",
        "2",
        "--no-progress",
    ]
    assert main(args) == 1
    err = capsys.readouterr().err
    rep = json.loads((out / "prep_report.json").read_text())
    reasons = {Path(f["source"]).name: f["reason"] for f in rep["failures"]}
    if "noperm.avi" in reasons:
        assert reasons.pop("noperm.avi").startswith("unreadable")
    assert set(reasons) == {
        "empty.avi",
        "truncated.avi",
        "truncated.webm",
        "notavideo.mp4",
        "missing.avi",
        "unreadable.avi",
    }
    assert reasons["empty.avi"].startswith("empty")
    assert reasons["truncated.avi"].startswith("truncated")
    assert reasons["truncated.webm"].startswith("truncated")
    assert reasons["notavideo.mp4"].startswith("not a video")
    assert reasons["missing.avi"].startswith("missing")
    assert reasons["unreadable.avi"].startswith("unreadable")
    for name in reasons:
        assert name in err
    # notes of one kind: the first three in full, one line each however narrow the console, then a count
    shorts = [line for line in err.splitlines() if line.startswith("note ") and ": short: " in line]
    assert len(shorts) == 3 and all(line.endswith("(kept; loaders pad it)") for line in shorts)
    assert "note 4 videos in all with 'short' (1 not shown above" in err
    recs = {Path(r.source).name: r for r in read_manifest(out)}
    assert set(recs) == {good.name for good in (src / "good").iterdir()} | {"odd.avi", "tiny.avi"}
    assert recs["tiny.avi"].frames == 3 and "short" in recs["tiny.avi"].flags
    assert "odd_size" in recs["odd.avi"].flags and recs["odd.avi"].width % 2 == 0
    assert rep["counts"] == {
        "listed": 10 + (os.geteuid() != 0),
        "prepared": 4,
        "transcoded": 4,
        "kept_earlier": 0,
        "skipped": 0,
        "failed": 6,
        "short": 4,
        "train": 4,
        "test": 0,
        "classes": 2,
        "unlisted": 0,
    }
    # second run: everything done is skipped, failures reported again
    assert main(args) == 1
    assert "skipping 4 video(s)" in capsys.readouterr().err
    rep2 = json.loads((out / "prep_report.json").read_text())
    assert rep2["counts"]["skipped"] == 4 and rep2["counts"]["transcoded"] == 0 and rep2["counts"]["failed"] == 6
    assert [r.path for r in read_manifest(out)] == sorted(r.path for r in recs.values())


def test_interrupted_run_leaves_nothing_trusted(tmp_path, synth_src):
    src = tmp_path / "src" / "c"
    src.mkdir(parents=True)
    vids = sorted((synth_src / "UCF-101" / "Square").glob("*.avi"))[:3]
    for v in vids:
        shutil.copy(v, src / v.name)
    out = tmp_path / "out"
    prepare(tmp_path / "src", out, "folder", short_side=24, workers=1, show_progress=False)
    good_bytes = {p.name: p.read_bytes() for p in (out / "videos" / "c").iterdir()}
    # simulate kill -9 at three moments: a half-written temp file; an output renamed but not yet in the
    # journal (here: a broken output and a stale journal); a torn journal line
    names = sorted(good_bytes)
    (out / "videos" / "c" / f".{names[0]}.partial-4242").write_bytes(b"half")
    (out / "videos" / "c" / names[1]).write_bytes(good_bytes[names[1]][:100])
    journal = (out / JOURNAL).read_text().splitlines()
    kept = [ln for ln in journal if vids[2].name not in ln]
    (out / JOURNAL).write_text("\n".join(kept) + "\n" + '{"source": "c/torn', encoding="utf-8")
    (out / "manifest.jsonl").unlink()
    rep = prepare(tmp_path / "src", out, "folder", short_side=24, workers=1, show_progress=False)
    assert rep["counts"]["skipped"] == 1 and rep["counts"]["transcoded"] == 2 and rep["counts"]["failed"] == 0
    assert not list(out.rglob("*.partial-*"))
    for r in read_manifest(out):
        assert verify(out / r.path)[0] == r.frames
    assert {p.name: p.read_bytes() for p in (out / "videos" / "c").iterdir()} == good_bytes
    # changed settings invalidate earlier outputs
    rep = prepare(tmp_path / "src", out, "folder", short_side=48, workers=1, show_progress=False)
    assert rep["counts"]["transcoded"] == 3 and read_manifest(out)[0].height == 48


def test_real_kill_9_then_resume(tmp_path, synth_src):
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "src" / "c"
    src.mkdir(parents=True)
    for k in range(3):  # enough work that the kill lands mid-run
        for v in sorted((synth_src / "UCF-101").rglob("*.avi")):
            shutil.copy(v, src / f"{k}{v.name}")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "tbfast",
        "data",
        "prep",
        str(tmp_path / "src"),
        str(out),
        "--format",
        "folder",
        "--short-side",
        "24",
        "--workers",
        "1",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        j = out / JOURNAL
        if j.is_file() and j.read_text().count("\n") >= 3:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.jsonl").exists()
    rep = prepare(tmp_path / "src", out, "folder", short_side=24, workers=1, show_progress=False)
    assert rep["counts"]["prepared"] == 48 and 3 <= rep["counts"]["skipped"] < 48 and rep["counts"]["failed"] == 0
    for r in read_manifest(out):
        assert verify(out / r.path)[0] == r.frames


def test_dali_cpu_decodes_outputs(prepared):
    from nvidia.dali import fn, pipeline_def, types

    records = read_manifest(prepared)
    data = [np.fromfile(prepared / r.path, dtype=np.uint8) for r in records]

    @pipeline_def(
        batch_size=len(records),
        num_threads=1,
        device_id=None,
        prefetch_queue_depth=1,
        exec_async=False,
        exec_pipelined=False,
    )
    def pipe():
        enc = fn.external_source(name="enc", dtype=types.UINT8, ndim=1)
        return fn.decoders.video(enc, device="cpu")

    p = pipe()
    p.build()
    p.feed_input("enc", data)
    (out,) = p.run()
    for r, v in zip(records, [np.array(out[i]) for i in range(len(records))]):
        assert v.shape == (r.frames, r.height, r.width, 3)
        assert v.std() > 5  # real pictures, not blank frames


def test_prep_user_errors(tmp_path, synth_src):
    assert main(["data", "prep", str(tmp_path / "nope"), str(tmp_path / "o")]) == 2
    assert main(["data", "prep", str(synth_src), str(tmp_path / "o"), "--splits", str(tmp_path)]) == 2
    # invalid encoder settings are refused up front, before any video is blamed or anything written
    for bad in (["--crf", "999"], ["--fps", "nan"], ["--fps", "-1"], ["--short-side", "100000"], ["--workers", "0"]):
        assert main(["data", "prep", str(synth_src), str(tmp_path / "o2"), *bad]) == 2, bad
        assert not (tmp_path / "o2").exists(), bad


def test_ucf101_listed_but_missing_and_hmdb51_end_to_end(tmp_path, synth_src):
    vids = sorted((synth_src / "UCF-101" / "Ring").glob("*.avi"))
    ucf = tmp_path / "ucf"
    (ucf / "UCF-101" / "Ring").mkdir(parents=True)
    for v in vids[:2]:
        shutil.copy(v, ucf / "UCF-101" / "Ring" / v.name)
    lists = ucf / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_bytes(b"1 Ring\r\n")
    (lists / "trainlist01.txt").write_bytes(f"Ring/{vids[1].name} 1\r\nRing/v_Ring_g20_c09.avi 1\r\n".encode())
    (lists / "testlist01.txt").write_bytes(f"Ring/{vids[0].name}\r\nRing/{vids[1].name}\r\n".encode())
    assert (
        main(["data", "prep", str(ucf), str(tmp_path / "o1"), "--short-side", "24", "--workers", "1", "--no-progress"])
        == 1
    )
    rep = json.loads((tmp_path / "o1" / "prep_report.json").read_text())
    assert [(f["source"], f["reason"][:7]) for f in rep["failures"]] == [("UCF-101/Ring/v_Ring_g20_c09.avi", "missing")]
    assert [(r.split, r.label) for r in read_manifest(tmp_path / "o1")] == [("test", 0), ("train", 0)]
    assert any(w["source"].endswith(vids[1].name) and "listed more than once" in w["reason"] for w in rep["warnings"])

    hmdb = tmp_path / "hmdb"
    (hmdb / "ring").mkdir(parents=True)
    (hmdb / "splits").mkdir()
    for v in vids[:3]:
        shutil.copy(v, hmdb / "ring" / v.name)
    (hmdb / "splits" / "ring_test_split1.txt").write_text(f"{vids[0].name} 1 \n{vids[1].name} 2 \n{vids[2].name} 0 \n")
    assert (
        main(
            [
                "data",
                "prep",
                str(hmdb),
                str(tmp_path / "o2"),
                "--format",
                "hmdb51",
                "--splits",
                str(hmdb / "splits"),
                "--short-side",
                "24",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    recs = read_manifest(tmp_path / "o2")
    assert sorted((Path(r.source).name, r.split) for r in recs) == [(vids[0].name, "train"), (vids[1].name, "test")]


def test_output_names_unique():
    from tbfast.data.prep import output_paths
    from tbfast.data.sources import SourceItem

    items = [
        SourceItem("a b/x.avi", "a b", "train"),
        SourceItem("a b/x.mp4", "a b", "train"),
        SourceItem("train/a b/y.mp4", "a b", "train"),
        SourceItem("val/a b/y.mp4", "a b", "test"),
    ]
    assert output_paths(items, "vp9") == [
        "videos/a_b/x_avi.webm",
        "videos/a_b/x_mp4.webm",
        "videos/a_b/y_mp4.webm",
        "videos/a_b/y_mp4_2.webm",
    ]


def test_corrupted_prepared_video_is_an_error_in_every_loader_and_rerun_re_encodes(prepared, tmp_path, capsys):
    """A prepared file cut short, or overwritten with other bytes of the same size, is never padded
    or decoded silently: every loader mode raises CorruptVideoError naming it; a prep re-run on the
    same source re-encodes it (the same size is not trusted)."""
    import shutil

    from dali_pipelines.loader import CorruptVideoError, build_loader
    from tbfast.data.manifest import file_checksum

    copy = tmp_path / "prepared"
    shutil.copytree(prepared, copy)
    recs = read_manifest(copy)
    assert all(r.bytes > 0 and len(r.blake2b) == 32 for r in recs)
    i = next(k for k, r in enumerate(recs) if r.split == "train")
    victim = copy / recs[i].path
    good = victim.read_bytes()
    for damage in (good[:2000], bytes(len(good))):  # truncated; garbage of the same size
        victim.write_bytes(damage)
        for mode in ("ssl", "train", "eval", "similarity"):
            loader = build_loader(
                copy,
                mode,
                indices=[i],
                split="train" if mode in ("ssl", "train") else None,
                batch_size=1,
                size=16,
                num_threads=1,
                augment=False,
            )
            with pytest.raises(CorruptVideoError, match=recs[i].path.split("/")[-1]):
                next(iter(loader))
    # prep re-run: the same-size garbage is re-encoded, not trusted
    report = json.loads((copy / "prep_report.json").read_text())
    args = [
        "data",
        "prep",
        report["source"],
        str(copy),
        "--format",
        report["format"],
        "--short-side",
        str(report["settings"]["short_side"]),
        "--workers",
        "1",
        "--no-progress",
    ]
    leak = copy / ".manifest.jsonl.tmp4242"  # a manifest write killed half-way
    leak.write_text("{")
    assert main(args) == 0
    assert not leak.exists()
    rep = json.loads((copy / "prep_report.json").read_text())
    assert rep["counts"]["transcoded"] == 1 and rep["counts"]["skipped"] == len(recs) - 1
    assert file_checksum(victim) == read_manifest(copy)[i].blake2b
    # a failed re-run (a source video gone, e.g. an unplugged disk) keeps the earlier prepared file
    src = tmp_path / "src"
    shutil.copytree(report["source"], src)
    gone = src / recs[i].source
    gone.unlink()
    before = read_manifest(copy)
    args[2] = str(src)
    assert main([*args, "--short-side", "20"]) == 1  # other settings: everything else is re-encoded
    err = capsys.readouterr().err
    assert "kept the earlier prepared file" in err
    after = read_manifest(copy)
    assert len(after) == len(before) and after[i].path == before[i].path and after[i].width == before[i].width
    assert json.loads((copy / "prep_report.json").read_text())["counts"]["kept_earlier"] == 1


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("frames", -5, "frames -5"),
        ("label", 99, "has label 99"),
        ("fps", 0, "fps 0"),
        ("split", "val", "split 'val'"),
        ("path", "../outside.webm", "relative path"),
        ("width", "wide", "size"),
    ],
)
def test_nonsense_manifest_values_are_refused_when_read(prepared, tmp_path, field, value, message):
    import shutil

    copy = tmp_path / "prepared"
    shutil.copytree(prepared, copy)
    lines = (copy / "manifest.jsonl").read_text().splitlines()
    rec = json.loads(lines[3])
    rec[field] = value
    lines[3] = json.dumps(rec)
    (copy / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=message):
        read_manifest(copy)


def test_loader_hashes_each_file_once_and_still_sees_a_later_change(prepared, tmp_path, monkeypatch):
    """The checksum is verified on a file's first read in a process; later reads check its identity
    (size, mtime, inode): a file replaced after the first epoch is still an error naming it."""
    import time as _time

    import dali_pipelines.loader as L

    data = tmp_path / "p"
    shutil.copytree(prepared, data)
    calls = []
    real = L.content_checksum
    monkeypatch.setattr(L, "content_checksum", lambda b: calls.append(1) or real(b))
    loader = L.build_loader(data, "eval", split="test", batch_size=2, size=16)
    n = len(loader.indices)
    for epoch in range(2):
        loader.set_epoch(epoch)
        assert sum(len(b["index"]) for b in loader) == n
    assert len(calls) == n  # hashed once each, not once per epoch
    r = read_manifest(data)[loader.indices[0]]
    f = data / r.path
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, other content, a new modification time
    _time.sleep(0.01)
    f.write_bytes(bytes(raw))
    with pytest.raises(L.CorruptVideoError, match="checksum mismatch"):
        for _ in loader:
            pass
    assert loader.host_videos >= n and loader.host_seconds["plan"] > 0
