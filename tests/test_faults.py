"""Faults, driven through the CLI as a user meets them (issue 11): a full disk or Ctrl-C in the
middle of a prep or a training, and a table of bad inputs. Each case asserts the exit status, a
one-line message that says what to do, no traceback, and that nothing that was there is lost."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import torch

from _media import write_video
from tbfast.cli import main
from tbfast.data.manifest import file_checksum, read_manifest

TINY = ["--preset", "synthetic_tiny", "--size", "16", "--no-progress", "--device", "cpu", "--threads", "1"]


def _one_line_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("tbfast: error:")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in " ".join(err.split()), (n, err)


def _snapshot(out: Path) -> dict:
    """Manifest text and every listed video's checksum."""
    return {
        "manifest": (out / "manifest.jsonl").read_text(),
        "videos": {r.path: file_checksum(out / r.path) for r in read_manifest(out)},
    }


def _intact(out: Path, snap: dict) -> None:
    assert (out / "manifest.jsonl").read_text() == snap["manifest"]
    for r in read_manifest(out):  # every listed video is the file the manifest describes
        assert file_checksum(out / r.path) == r.blake2b == snap["videos"][r.path]
    assert not list(out.rglob(".*.partial-*")) and not list(out.rglob(".*.tmp*"))


@pytest.fixture
def small_source(tmp_path):
    src = tmp_path / "src"
    for c in ("a", "b"):
        for i in range(2):
            write_video(src / c / f"{c}{i}.mp4", n=20 + 5 * i)
    return src


def _prep(src, out, *extra):
    return main(
        [
            "data",
            "prep",
            str(src),
            str(out),
            "--format",
            "folder",
            "--short-side",
            "32",
            "--workers",
            "1",
            "--no-progress",
            *extra,
        ]
    )


@pytest.mark.parametrize("fault", ["disk_full", "ctrl_c"])
def test_a_prep_stopped_midway_by_a_settings_change_loses_nothing(small_source, tmp_path, monkeypatch, capsys, fault):
    import tbfast.data.prep as prep

    out = tmp_path / "P"
    assert _prep(small_source, out) == 0
    snap = _snapshot(out)
    real, calls = prep.transcode, []

    def failing(src, dst, settings):
        calls.append(dst)
        if len(calls) == 2:
            if fault == "disk_full":
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
            raise KeyboardInterrupt
        return real(src, dst, settings)

    monkeypatch.setattr(prep, "transcode", failing)
    capsys.readouterr()
    rc = _prep(small_source, out, "--crf", "40")  # new settings: every video is transcoded again
    err = capsys.readouterr().err
    if fault == "disk_full":
        assert rc == 2
        _one_line_error(err, "No space left on device", "free some space")
    else:
        assert rc == 130 and "interrupted" in err and "Traceback" not in err
    # the dataset a training may be reading is exactly as it was; the new output waits in staging
    _intact(out, snap)
    assert all(".staging" in str(d) for d in calls)
    monkeypatch.setattr(prep, "transcode", real)
    assert _prep(small_source, out, "--crf", "40") == 0
    rep = json.loads((out / "prep_report.json").read_text())
    assert rep["counts"]["skipped"] == 1 and rep["counts"]["transcoded"] == 3  # the finished one was kept
    assert not (out / ".staging").exists()
    recs = read_manifest(out)
    assert len(recs) == 4 and all(file_checksum(out / r.path) == r.blake2b for r in recs)
    assert {r.path: r.blake2b for r in recs} != {p: d for p, d in snap["videos"].items()}


def test_a_full_disk_while_training_keeps_the_last_good_checkpoint(
    prepared, prepared_split, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    args = [
        "train",
        "supervised",
        "--data",
        str(prepared),
        "--out",
        str(run),
        "--labeled",
        str(prepared_split[0]),
        *TINY,
        "--batch-size",
        "2",
        "--max-steps",
        "3",
        "--ckpt-every",
        "1",
    ]
    real, saves = torch.save, []

    def save(obj, f, *a, **k):
        saves.append(obj.get("step") if isinstance(obj, dict) else None)
        if len(saves) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", getattr(f, "name", None))
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    assert main(args) == 2
    _one_line_error(capsys.readouterr().err, "No space left on device", "free some space")
    ck = run / "checkpoints"
    assert not list(ck.glob(".*.tmp")) and not (run / ".tbfast.lock").exists()
    assert torch.load(ck / "last.pt", weights_only=True)["step"] == 1  # the write before the full disk
    monkeypatch.setattr(torch, "save", real)
    assert main(args + ["--resume", "auto"]) == 0
    assert torch.load(ck / "last.pt", weights_only=True)["step"] == 3


@pytest.fixture
def bad(tmp_path, prepared):
    """A folder of bad inputs next to a good prepared dataset."""
    b = tmp_path / "bad"
    b.mkdir()
    (b / "afile").write_text("x")
    (b / "garbage.pt").write_bytes(b"\x80\x02garbage" * 10)
    (b / "empty").mkdir()
    q = b / "Q"
    shutil.copytree(prepared, q)
    with open(q / "manifest.jsonl", "a") as f:
        f.write('{"path": "videos/x.webm", "label": 0}\n')
    k = b / "kin"
    k.mkdir()
    (k / "a.csv").write_text("label,youtube_id,time_start,time_end,split\nabc,xyz,0,10,train\nabc,,0,10,train\n")
    u = b / "ucf" / "ucfTrainTestlist"
    u.mkdir(parents=True)
    (u / "classInd.txt").write_text("1 A\n2 A\n")
    (u / "trainlist01.txt").write_text("")
    (u / "testlist01.txt").write_text("")
    return b


# (argv with {B}=bad folder, {P}=prepared, {S}=synthetic source, {L}=labeled list; message parts;
#  a path under {B} that must not have been created)
CASES = [
    (["data", "prep", "{S}", "{B}/afile"], ["a file stands where a folder is needed"], None),
    (
        ["data", "prep", "{S}", "{B}/afile/sub"],
        ["cannot create folder", "a file stands where a folder is needed"],
        None,
    ),
    (["data", "prep", "{B}/nope", "{B}/o"], ["source folder", "does not exist"], "o"),
    (["data", "prep", "{S}", "{B}/o", "--crf", "999"], ["--crf 999", "0 (best) to 63"], "o"),
    (["data", "prep", "{S}", "{B}/o", "--fps", "nan"], ["--fps nan"], "o"),
    (["data", "prep", "{S}", "{B}/o", "--short-side", "100000"], ["--short-side 100000"], "o"),
    (["data", "prep", "{S}", "{B}/o", "--format", "folder", "--test-fraction", "1.5"], ["--test-fraction"], "o"),
    (["data", "prep", "{S}", "{S}/UCF-101/o"], ["inside SRC"], None),
    (["data", "prep", "{B}/kin", "{B}/o", "--format", "kinetics"], ["a.csv:3", "fix or remove that line"], None),
    (["data", "prep", "{B}/ucf", "{B}/o"], ["classInd.txt", "listed twice"], None),
    (["data", "synth", "{B}/o", "--classes", "0"], ["--classes 0"], "o"),
    (["data", "splits", "{P}", "--fraction", "0"], ["fraction", "(0, 1]"], None),
    (["data", "splits", "{B}/empty", "--fraction", "0.5"], ["no manifest.jsonl", "tbfast data prep"], None),
    (
        ["train", "supervised", "--data", "{B}/empty", "--out", "{B}/r", "--labeled", "{L}", *TINY],
        ["not a prepared dataset"],
        "r",
    ),
    (
        ["train", "supervised", "--data", "{B}/Q", "--out", "{B}/r", "--labeled", "{L}", *TINY],
        ["manifest.jsonl:", "not a manifest line", "re-run `tbfast data prep`"],
        "r",
    ),
    (
        ["train", "supervised", "--data", "{P}", "--out", "{B}/afile", "--labeled", "{L}", *TINY, "--batch-size", "2"],
        ["a file stands where a folder is needed"],
        None,
    ),
    (
        ["train", "supervised", "--data", "{P}", "--out", "{B}/r", "--labeled", "{L}", *TINY, "--set", "optim.lr=-1"],
        ["optim.lr"],
        "r",
    ),
    (
        ["train", "supervised", "--data", "{P}", "--out", "{B}/r", "--labeled", "{L}", *TINY, "--set", "optim.lr=nan"],
        ["optim.lr"],
        "r",
    ),
    (
        ["train", "supervised", "--data", "{P}", "--out", "{B}/r", "--labeled", "{L}", *TINY, "--set", "loss.tau=0"],
        ["loss.tau"],
        "r",
    ),
    (
        [
            "train",
            "supervised",
            "--data",
            "{P}",
            "--out",
            "{B}/r",
            "--labeled",
            "{L}",
            *TINY,
            "--set",
            "model.dropout=1",
        ],
        ["model.dropout"],
        "r",
    ),
    (
        ["train", "supervised", "--data", "{P}", "--out", "{B}/r", "--labeled", "{L}", *TINY, "--set", "nope.key=1"],
        ["unknown section"],
        "r",
    ),
    (
        ["train", "supervised", "--data", "{P}", "--out", "{B}/r", "--labeled", "{L}", *TINY, "--max-steps", "-1"],
        ["train.max_steps=-1"],
        "r",
    ),
    (
        ["train", "supervised", "--data", "{P}", "--out", "{B}/r", "--labeled", "{B}/missing.txt", *TINY],
        ["missing.txt does not exist", "tbfast data splits"],
        "r",
    ),
    (
        ["train", "finetune", "--data", "{P}", "--out", "{B}/r", "--labeled", "{L}", "--init", "{B}/garbage.pt", *TINY],
        ["cannot read checkpoint", "is it a tbfast checkpoint"],
        "r",
    ),
    (
        ["train", "invariant", "--data", "{P}", "--out", "{B}/r", *TINY, "--batch-size", "1"],
        ["at least 2 videos per step"],
        "r",
    ),
    (["eval", "--checkpoint", "{B}/garbage.pt", "--data", "{P}"], ["is it a tbfast checkpoint"], None),
    (["eval", "--checkpoint", "{B}/garbage.pt", "--data", "{P}", "--clips", "0"], ["eval.clips=0"], None),
    (["run", "--out", "{B}/afile"], ["is a file"], None),
    (["run", "--out", "{B}/r", "--fraction", "0"], ["fraction", "(0, 1]"], "r"),
]


@pytest.mark.parametrize(
    "argv,needles,not_created", CASES, ids=[" ".join(c[0][:2]) + f"-{i}" for i, c in enumerate(CASES)]
)
def test_bad_input_is_one_clear_line_before_any_work(
    bad, prepared, prepared_split, synth_src, capsys, argv, needles, not_created
):
    subst = {"{B}": str(bad), "{P}": str(prepared), "{S}": str(synth_src), "{L}": str(prepared_split[0])}
    args = []
    for a in argv:
        for k, v in subst.items():
            a = a.replace(k, v)
        args.append(a)
    before = sorted(p.name for p in bad.iterdir())
    assert main(args) == 2
    _one_line_error(capsys.readouterr().err, *needles)
    if not_created:
        assert not (bad / not_created).exists()
    assert sorted(p.name for p in bad.iterdir()) == before  # nothing was created or removed


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--checkpoint", "{B}/garbage.pt", "--data", "{P}", "--json", "{B}"],
        ["similarity", "--invariant", "x.pt", "--distinctive", "y.pt", "--data", "{P}", "--out", "{B}/empty"],
        ["similarity", "--invariant", "x.pt", "--distinctive", "y.pt", "--data", "{P}", "--out", "{B}/afile/s.csv"],
        ["data", "show", "{P}", "--out", "{B}"],
        ["bench", "losses", "--quick", "--json", "{B}/afile/x.json"],
    ],
)
def test_an_output_file_that_cannot_be_written_is_refused_before_the_work(bad, prepared, capsys, argv):
    args = [a.replace("{B}", str(bad)).replace("{P}", str(prepared)) for a in argv]
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert ("is a folder; give a file path" in err or "is a file, not a folder" in err) and "Traceback" not in err


def test_linked_class_folders_and_videos_in_two_classes_are_refused(small_source, tmp_path, capsys):
    (small_source / "c").symlink_to(small_source / "a")
    assert _prep(small_source, tmp_path / "o1") == 2
    _one_line_error(capsys.readouterr().err, "is a link to class folder", "two labels")
    (small_source / "c").unlink()
    (small_source / "d").symlink_to(small_source)
    assert _prep(small_source, tmp_path / "o2") == 2
    _one_line_error(capsys.readouterr().err, "links to SRC itself")
    (small_source / "d").unlink()
    (small_source / "b" / "same.mp4").symlink_to(small_source / "a" / "a0.mp4")
    assert _prep(small_source, tmp_path / "o3") == 2
    _one_line_error(capsys.readouterr().err, "same file (a link) in two classes")
    assert not any((tmp_path / f"o{i}").exists() for i in (1, 2, 3))
