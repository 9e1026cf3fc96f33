"""Checkpoint files (atomic, weights_only, RNG round trip), clear errors for the wrong
checkpoint, and the config presets/overrides."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tbfast.cli import main as cli
from tbfast.engine import checkpoint as ck
from tbfast.engine.config import list_presets, parse_set, resolve
from tbfast.errors import UserError

TINY = ["--preset", "synthetic_tiny", "--size", "16", "--no-progress", "--device", "cpu", "--threads", "1"]


def _fake(stage="finetune", backbone="tiny", num_classes=4):
    return {
        "format": ck.FORMAT,
        "stage": stage,
        "backbone": backbone,
        "num_classes": num_classes,
        "model": {},
        "config": {},
    }


def test_save_is_atomic_and_loads_weights_only(tmp_path):
    path = tmp_path / "c" / "last.pt"
    obj = {**_fake(), "model": {"w": torch.arange(3.0)}, "rng": ck.rng_state()}
    ck.save_checkpoint(obj, path)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left
    back = ck.load_checkpoint(path)
    assert torch.equal(back["model"]["w"], obj["model"]["w"])

    class Boom:
        def __reduce__(self):
            raise RuntimeError("interrupted while writing")

    with pytest.raises(RuntimeError):
        ck.save_checkpoint({"x": Boom()}, path)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # old file intact, temp removed
    assert torch.equal(ck.load_checkpoint(path)["model"]["w"], obj["model"]["w"])


def test_atomic_files_honour_the_umask(tmp_path):
    import os
    import subprocess
    import sys

    code = (
        "import os, sys; os.umask(0o027); from pathlib import Path; from tbfast.engine import checkpoint as ck; "
        "ck.atomic_write_bytes(Path(sys.argv[1]), b'x'); print(oct(os.stat(sys.argv[1]).st_mode & 0o777))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "a.json")], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "0o640"  # 0666 less the umask 027, not mkstemp's 0600
    ck.atomic_write_bytes(tmp_path / "b.json", b"y")
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(tmp_path / "b.json").st_mode & 0o777 == 0o666 & ~mask


def test_rng_state_round_trip():
    state = ck.rng_state()
    a = (torch.rand(2), random.random(), np.random.rand())
    ck.set_rng_state(state)
    b = (torch.rand(2), random.random(), np.random.rand())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def test_unreadable_and_foreign_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        ck.load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        ck.load_checkpoint(junk)
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a tbfast checkpoint"):
        ck.load_checkpoint(tmp_path / "other.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": ck.FORMAT, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="cannot read"):  # weights_only refuses arbitrary objects
        ck.load_checkpoint(tmp_path / "evil.pt")


def test_expect_names_the_mismatch():
    c = _fake()
    ck.expect(c, "x.pt", stages=("finetune",), backbone="tiny", num_classes=4)
    with pytest.raises(UserError, match="from stage 'finetune'.*invariant"):
        ck.expect(c, "x.pt", stages=("invariant",))
    with pytest.raises(UserError, match="backbone 'tiny'.*'r3d18'"):
        ck.expect(c, "x.pt", backbone="r3d18")
    with pytest.raises(UserError, match="4 classes.*101"):
        ck.expect(c, "x.pt", num_classes=101)


@pytest.fixture(scope="module")
def ssl_ckpt(prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("ssl")
    assert (
        cli(
            [
                "train",
                "invariant",
                "--data",
                str(prepared),
                "--out",
                str(out),
                "--max-steps",
                "1",
                "--batch-size",
                "2",
                *TINY,
            ]
        )
        == 0
    )
    return out / "checkpoints" / "last.pt"


def test_cli_rejects_wrong_checkpoints(prepared, prepared_split, ssl_ckpt, tmp_path, capsys):
    lab, _ = prepared_split
    data = ["--data", str(prepared)]
    # an SSL checkpoint where a classifier is needed
    assert cli(["eval", "--checkpoint", str(ssl_ckpt), *data, *TINY]) == 2
    assert "stage 'invariant'" in capsys.readouterr().err
    # a checkpoint with another class count
    state = torch.load(ssl_ckpt, weights_only=True)
    state.update(stage="finetune", num_classes=7)
    bad = tmp_path / "seven.pt"
    torch.save(state, bad)
    assert cli(["eval", "--checkpoint", str(bad), *data, *TINY]) == 2
    assert "7 classes" in capsys.readouterr().err
    # another backbone: --init with r3d18 for a tiny checkpoint
    assert (
        cli(
            [
                "train",
                "finetune",
                *data,
                "--out",
                str(tmp_path / "ft"),
                "--init",
                str(ssl_ckpt),
                "--labeled",
                str(lab),
                "--backbone",
                "r3d18",
                "--max-steps",
                "1",
                *TINY,
            ]
        )
        == 2
    )
    assert "backbone 'tiny'" in capsys.readouterr().err
    # resuming a run directory with a checkpoint of another stage
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.pt").write_bytes(ssl_ckpt.read_bytes())
    assert (
        cli(
            [
                "train",
                "distinctive",
                *data,
                "--out",
                str(tmp_path / "run"),
                "--resume",
                "auto",
                "--max-steps",
                "1",
                "--batch-size",
                "2",
                *TINY,
            ]
        )
        == 2
    )
    assert "stage 'invariant'" in capsys.readouterr().err
    # resuming with another objective than the checkpoint was trained with (reduction, BatchNorm groups)
    (tmp_path / "inv" / "checkpoints").mkdir(parents=True)
    (tmp_path / "inv" / "checkpoints" / "last.pt").write_bytes(ssl_ckpt.read_bytes())
    trained = torch.load(ssl_ckpt, weights_only=True)["config"]["loss"]["reduction"]
    other = {"mean": "reference", "reference": "mean"}[trained]
    assert (
        cli(
            [
                "train",
                "invariant",
                *data,
                "--out",
                str(tmp_path / "inv"),
                "--resume",
                "auto",
                "--reduction",
                other,
                "--max-steps",
                "1",
                "--batch-size",
                "2",
                *TINY,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"loss.reduction={trained}" in err and f"--set loss.reduction={trained}" in err
    old = torch.load(ssl_ckpt, weights_only=True)  # a checkpoint from before these settings existed
    del old["config"]["loss"]["reduction"], old["config"]["model"]["group_bn"]
    torch.save(old, tmp_path / "inv" / "checkpoints" / "last.pt")
    assert (
        cli(
            [
                "train",
                "invariant",
                *data,
                "--out",
                str(tmp_path / "inv"),
                "--resume",
                "auto",
                "--max-steps",
                "1",
                "--batch-size",
                "2",
                *TINY,
            ]
        )
        == 2
    )
    assert "model.group_bn=False" in capsys.readouterr().err
    # a truncated file (e.g. copied while being written)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(ssl_ckpt.read_bytes()[:1000])
    assert (
        cli(
            [
                "train",
                "finetune",
                *data,
                "--out",
                str(tmp_path / "ft2"),
                "--init",
                str(cut),
                "--labeled",
                str(lab),
                "--max-steps",
                "1",
                *TINY,
            ]
        )
        == 2
    )
    assert "cannot read" in capsys.readouterr().err


def test_presets_resolve_and_overrides_apply():
    assert {"ucf101_r3d18", "ucf101_r50", "hmdb51_r3d18", "k400_r50", "synthetic_tiny"} <= set(list_presets())
    from tbfast.engine.config import Config, load_preset

    default = Config()
    for p in list_presets():
        data = load_preset(p)
        for stage in ("invariant", "distinctive", "combined", "finetune", "supervised", "student"):
            cfg = resolve(stage, p)
            # each value is the stage's own, else the preset's, else the built-in default
            for section, key in (("train", "epochs"), ("data", "batch_size"), ("optim", "lr")):
                own = ((data.get("stages") or {}).get(stage) or {}).get(section, {})
                want = own.get(key, (data.get(section) or {}).get(key, getattr(getattr(default, section), key)))
                assert getattr(getattr(cfg, section), key) == want, (p, stage, section, key)
    assert resolve("invariant", "ucf101_r3d18").data.batch_size == 40  # METHOD.md §6
    assert resolve("finetune", "ucf101_r50").model.backbone == "r50"
    inv = resolve("invariant", "synthetic_tiny")
    assert (inv.loss.w_inv, inv.loss.w_ll, inv.loss.w_gl) == (1, 0, 0)
    dis = resolve("distinctive", "synthetic_tiny")
    assert (dis.loss.w_inv, dis.loss.w_ll, dis.loss.w_gl) == (0, 1, 1)
    cfg = resolve("student", "ucf101_r3d18", parse_set(["optim.lr=3e-4", "train.compile=true", "loss.distill=js"]))
    assert cfg.optim.lr == 3e-4 and cfg.train.compile is True and cfg.loss.distill == "js"
    with pytest.raises(UserError, match="unknown key"):
        resolve("student", None, parse_set(["optim.lrr=1"]))
    with pytest.raises(UserError, match="expected an integer"):
        resolve("student", None, parse_set(["train.epochs=many"]))
    with pytest.raises(UserError, match="choose one of"):
        resolve("student", None, parse_set(["loss.distill=l1"]))
    with pytest.raises(UserError, match="unknown preset"):
        resolve("student", "nope")


def test_rerun_into_a_finished_run_directory_is_refused_unless_asked(prepared, ssl_ckpt, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(ssl_ckpt.parent.parent, run)
    (run / "metrics.jsonl").write_text('{"kind": "epoch", "step": 13, "loss": 1.0}\n')  # the earlier run's log
    before = {p.name: p.read_bytes() for p in [run / "checkpoints" / "last.pt", run / "metrics.jsonl"]}
    args = [
        "train",
        "invariant",
        "--data",
        str(prepared),
        "--out",
        str(run),
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        *TINY,
    ]
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume auto" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in [run / "checkpoints" / "last.pt", run / "metrics.jsonl"]} == before
    assert cli([*args, "--overwrite", "--resume", "auto"]) == 2  # contradictory
    assert cli([*args, "--overwrite", "--seed", "5"]) == 0  # replaced: a fresh run with one step logged
    new_metrics = (run / "metrics.jsonl").read_bytes() if (run / "metrics.jsonl").exists() else b""
    assert before["metrics.jsonl"] and not new_metrics.startswith(before["metrics.jsonl"])  # not appended to
    assert (run / "checkpoints" / "last.pt").read_bytes() != before["last.pt"]


def test_one_writer_per_folder_and_stale_locks_are_taken_over(prepared, synth_src, tmp_path, capsys):
    import json
    import os
    import socket
    import subprocess
    import sys

    from tbfast.lock import LOCK_NAME

    def hold(folder, pid):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / LOCK_NAME).write_text(
            json.dumps(
                {
                    "pid": pid,
                    "host": socket.gethostname(),
                    "what": "tbfast test",
                    "since": "now",
                    "command": "held by a test",
                }
            )
        )

    live = os.getppid()  # a running process that is not this one
    run = tmp_path / "run"
    hold(run, live)
    args = [
        "train",
        "invariant",
        "--data",
        str(prepared),
        "--out",
        str(run),
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        *TINY,
    ]
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert f"pid {live}" in err and "in use by tbfast test" in err and LOCK_NAME in err
    assert not (run / "config.yaml").exists()  # nothing written by the refused writer
    prep = tmp_path / "prep"
    hold(prep, live)
    assert cli(["data", "prep", str(synth_src), str(prep), "--format", "ucf101", "--workers", "1"]) == 2
    assert "in use by tbfast test" in capsys.readouterr().err
    # a lock left by a process that no longer runs (killed writer): taken over, released at the end
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    hold(run, int(dead))
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    leak = run / "checkpoints" / ".last.pt.k1ll3d.tmp"  # a checkpoint write killed half-way
    leak.write_bytes(b"\0" * 1000)
    assert cli(args) == 0
    assert not leak.exists()
    assert not (run / LOCK_NAME).exists()


@pytest.mark.parametrize(
    "section,key,value",
    [
        ("optim", "lr", "0"),
        ("optim", "lr", "nan"),
        ("optim", "lr", "-1e-3"),
        ("loss", "tau", "0"),
        ("model", "dropout", "1.0"),
        ("train", "log_every", "0"),
        ("data", "num_threads", "0"),
        ("data", "size", "0"),
        ("train", "max_steps", "-1"),
        ("data", "ssl_crop_scale", "[0, 0]"),
        ("optim", "betas", "[0.9]"),
        ("optim", "betas", "[0.9, 1.5]"),
        ("train", "epochs", "0"),
        ("eval", "clips", "0"),
        ("optim", "lr", "inf"),
    ],
)
def test_nonsense_config_values_are_refused_naming_the_value(section, key, value):
    with pytest.raises(UserError, match=f"{section}.{key}="):
        resolve("invariant", "synthetic_tiny", parse_set([f"{section}.{key}={value}"]))


def test_cli_refuses_a_nonsense_value_before_any_work(prepared, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(["train", "invariant", "--data", str(prepared), "--out", str(out), "--max-steps", "-1", *TINY]) == 2
    assert "train.max_steps=-1" in capsys.readouterr().err
    assert not out.exists()


def test_os_errors_are_one_line_not_a_traceback(prepared, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    # a file where the run directory should be
    assert (
        cli(
            [
                "train",
                "invariant",
                "--data",
                str(prepared),
                "--out",
                str(blocker / "run"),
                "--max-steps",
                "1",
                "--batch-size",
                "2",
                *TINY,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("tbfast: error:") and "Traceback" not in err and str(blocker) in err
    from tbfast.cli import _os_error
    import errno

    msg = _os_error(OSError(errno.ENOSPC, "No space left on device", "/data/run/checkpoints/last.pt"))
    assert "No space left" in msg and "last.pt" in msg and "run the same command again" in msg


def test_init_from_torchvision_r3d18_weights(tmp_path, capsys):
    """--init accepts a torchvision r3d_18 state dict (e.g. Kinetics weights a user downloaded):
    every backbone tensor is loaded by name and shape, the fc head is skipped and reported; a
    state dict of another architecture is refused with a clear error."""
    from torchvision.models.video import r3d_18

    from tbfast.engine.config import resolve
    from tbfast.engine.nets import ClassNet
    from tbfast.engine.stages import CLASSIFIER_STAGES, SSL_STAGES, _load_init

    cfg = resolve("finetune", "ucf101_r3d18")
    torch.manual_seed(1)
    tv = r3d_18(weights=None).state_dict()
    path = tmp_path / "r3d_18_kinetics.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in tv.items()}}, path)  # DDP-style, wrapped
    net = ClassNet(cfg.model, 5)
    got = _load_init(net, str(path), cfg, stages=SSL_STAGES + CLASSIFIER_STAGES, what="--init")
    assert got == "external"
    own = net.backbone.state_dict()
    for k, v in own.items():
        assert torch.equal(v, tv[k]), k  # tclr keeps layer4's conv shapes: everything fits
    report = capsys.readouterr().err  # the log goes to stderr
    assert f"loaded {sum(not k.endswith('num_batches_tracked') for k in own)} of the backbone" in report
    assert "2 of the file's tensors skipped (fc.weight, fc.bias)" in report
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(8, 3, 3, 3, 3), "fc.weight": torch.zeros(5, 8)}, other)
    with pytest.raises(UserError, match="only 0 of the backbone's .* tensors match"):
        _load_init(ClassNet(cfg.model, 5), str(other), cfg, stages=SSL_STAGES, what="--init")


def test_malformed_yaml_preset_or_override_is_one_line(tmp_path, prepared, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {backbone: tiny\ntrain: [\n")
    base = ["train", "invariant", "--data", str(prepared), "--out", str(tmp_path / "run"), "--no-progress"]
    assert cli([*base, "--preset", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not valid YAML" in err[0] and "line 2, column 6" in err[0]
    assert cli([*base, "--preset", "synthetic_tiny", "--set", "data.ssl_aug={gray_p: 0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.ssl_aug: '{gray_p: 0.5' is not a valid YAML value" in err[0]
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_preset_can_start_from_another(tmp_path):
    """``base: OTHER``: OTHER's values, overridden key by key (nested mappings merged); OTHER unchanged."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("base: synthetic_tiny\ndata: {size: 24}\nstages:\n  invariant: {train: {epochs: 3}}\n")
    for stage in ("invariant", "distinctive", "student"):
        got, tiny = resolve(stage, str(mine)).to_dict(), resolve(stage, "synthetic_tiny").to_dict()
        assert got["data"].pop("size") == 24 and tiny["data"].pop("size") == 40
        if stage == "invariant":  # the stage's own epochs replaced; its lr and augmentation kept
            assert got["train"].pop("epochs") == 3 and tiny["train"].pop("epochs") == 20
        got.pop("preset"), tiny.pop("preset")
        assert got == tiny, stage
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"base: {loop}\n")
    with pytest.raises(UserError, match="names itself"):
        resolve("invariant", str(loop))
