"""One decode, many models (tbfast/engine/shared.py): every model of a shared pass ends bit-identical
(fp32, CPU) to the same stage run alone, each batch is decoded once, each teacher runs once per
batch, and a pass killed with SIGKILL continues with --resume auto to the same weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tbfast.engine import stages
from tbfast.engine.config import resolve
from tbfast.engine.distributed import Dist
from tbfast.engine.shared import LoaderPool

SMALL = {
    "data": {"size": 16, "batch_size": 2, "num_threads": 1},
    "train": {"device": "cpu", "progress": False, "log_every": 1},
    "optim": {"warmup_epochs": 1},
}


def _cfg(stage, epochs, **extra):
    ov = json.loads(json.dumps(SMALL))
    ov["train"]["epochs"] = epochs
    for section, values in extra.items():
        ov.setdefault(section, {}).update(values)
    return resolve(stage, "synthetic_tiny", ov)


def _same_checkpoint(a: Path, b: Path) -> None:
    sa, sb = (torch.load(p / "checkpoints" / "last.pt", weights_only=True) for p in (a, b))
    assert (sa["epoch"], sa["step"], sa["finished"]) == (sb["epoch"], sb["step"], sb["finished"])
    for k, v in sa["model"].items():
        assert torch.equal(v, sb["model"][k]), f"{a.name}: {k} differs from the run alone"
    for k, v in sa["optimizer"]["state"].items():
        for name, t in v.items():
            assert torch.equal(t, sb["optimizer"]["state"][k][name]), f"{a.name}: optimizer {k}.{name}"
    assert sa["scheduler"] == sb["scheduler"]
    assert torch.equal(sa["rng"][0]["torch"], sb["rng"][0]["torch"])
    la, lb = (
        [
            {k: v for k, v in json.loads(line).items() if k not in ("time", "clips_per_s", "data_share", "seconds")}
            for line in (p / "metrics.jsonl").read_text().splitlines()
        ]
        for p in (a, b)
    )
    assert la == lb


@pytest.fixture(autouse=True)
def _threads(one_torch_thread):
    yield


def test_ssl_pair_in_one_pass_equals_each_alone(prepared, tmp_path):
    dist = Dist()
    cfgs = {k: _cfg(k, 2) for k in ("invariant", "distinctive")}
    for k, cfg in cfgs.items():
        stages.train_ssl(cfg, prepared, tmp_path / "alone" / k, dist=dist, log=lambda s: None)
    pool = LoaderPool()
    members = [
        stages.ssl_member(_cfg(k, 2), prepared, tmp_path / "shared" / k, dist=dist, pool=pool, log=lambda s: None)
        for k in cfgs
    ]
    summaries = stages.train_together(members, pool=pool, log=lambda s: None)
    assert set(summaries) == set(cfgs) and all(s["finished"] for s in summaries.values())
    for k in cfgs:
        _same_checkpoint(tmp_path / "shared" / k, tmp_path / "alone" / k)
    c = pool.counts()
    # 8 training videos, batch 2: 4 batches per epoch, 2 epochs, decoded once for both models
    assert c == {"loaders": 1, "views": 2, "decoded": 8, "served": 16, "seeks": 0}


def _teachers(prepared, lab, root):
    out = {}
    for kind in ("invariant", "distinctive"):
        cfg = _cfg("supervised", 1, train={"seed": len(kind), "max_steps": 1})
        stages.train_classifier(
            cfg, prepared, root / kind, dist=Dist(), labeled=lab, init="scratch", log=lambda s: None
        )
        out[kind] = root / kind / "checkpoints" / "last.pt"
    from tbfast.data.manifest import read_manifest

    rows = ["index,path,raw,score"] + [
        f"{i},{r.path},0,{(i % 5) / 4}" for i, r in enumerate(read_manifest(prepared)) if r.split == "train"
    ]
    out["sim"] = root / "sim.csv"
    out["sim"].write_text("\n".join(rows) + "\n")
    return out


def _student_set(prepared, lab, unl, t, root, *, pool=None, teachers=None, resume=None, only=None):
    """supervised-only (3 epochs over the labeled videos: 6 steps) and three students (2 epochs over
    the unlabeled videos: 4 steps each); ``only=k``: build just the k-th."""
    members = []
    if only in (None, 0):
        members.append(
            stages.classifier_member(
                _cfg("supervised", 3),
                prepared,
                root / "supervised",
                dist=Dist(),
                labeled=lab,
                init="scratch",
                pool=pool,
                resume=resume,
                name="supervised",
                log=lambda s: None,
            )
        )
    for k, w in enumerate(("invariant", "distinctive", "timebalance"), 1):
        if only not in (None, k):
            continue
        members.append(
            stages.student_member(
                _cfg("student", 2, loss={"weighting": w}),
                prepared,
                root / w,
                dist=Dist(),
                labeled=lab,
                unlabeled=unl,
                teacher_inv=t["invariant"],
                teacher_dis=t["distinctive"],
                similarity=t["sim"],
                pool=pool,
                teachers=teachers,
                resume=resume,
                name=w,
                log=lambda s: None,
            )
        )
    return members


def _alone(prepared, lab, unl, t, root):
    """Each model of the set as its stage runs alone: built, then trained, before the next is built."""
    for k in range(4):
        stages.fit_alone(_student_set(prepared, lab, unl, t, root, only=k)[0])


@pytest.fixture(scope="module")
def student_refs(prepared, prepared_split, tmp_path_factory):
    """Stand-in teachers and the student set trained model by model (the references)."""
    import torch as _torch

    n = _torch.get_num_threads()
    _torch.set_num_threads(1)
    try:
        lab, unl = prepared_split
        root = tmp_path_factory.mktemp("student_refs")
        t = _teachers(prepared, lab, root / "teachers")
        _alone(prepared, lab, unl, t, root / "alone")
    finally:
        _torch.set_num_threads(n)
    return t, root / "alone"


def test_student_set_in_one_pass_equals_each_alone(prepared, prepared_split, student_refs, tmp_path):
    lab, unl = prepared_split
    t, alone = student_refs
    pool, teachers = LoaderPool(), {}
    members = _student_set(prepared, lab, unl, t, tmp_path / "shared", pool=pool, teachers=teachers)
    summaries = stages.train_together(members, pool=pool, log=lambda s: None)
    assert set(summaries) == {"supervised", "invariant", "distinctive", "timebalance"}
    for name in summaries:
        _same_checkpoint(tmp_path / "shared" / name, alone / name)
    # each teacher loaded once and run once per batch (4 student steps), not once per student
    assert len(teachers) == 2
    assert sorted(tt.forwards for tt in teachers.values()) == [4, 4]
    c = pool.counts()
    # labeled stream: 6 batches for the baseline, the students' 4 among them; unlabeled: 4 batches
    assert (c["loaders"], c["decoded"]) == (2, 6 + 4)
    assert c["served"] == 6 + 3 * (4 + 4)


def test_models_resumed_at_different_steps_catch_up_then_share(prepared, prepared_split, student_refs, tmp_path):
    lab, unl = prepared_split
    t, alone = student_refs
    root = tmp_path / "shared"
    # a pass stopped early for two models: the baseline after 1 step, the s=0 student after 3
    stages.fit_alone(
        stages.classifier_member(
            _cfg("supervised", 3, train={"max_steps": 1}),
            prepared,
            root / "supervised",
            dist=Dist(),
            labeled=lab,
            init="scratch",
            log=lambda s: None,
        )
    )
    stages.fit_alone(
        stages.student_member(
            _cfg("student", 2, loss={"weighting": "distinctive"}, train={"max_steps": 3}),
            prepared,
            root / "distinctive",
            dist=Dist(),
            labeled=lab,
            unlabeled=unl,
            teacher_dis=t["distinctive"],
            log=lambda s: None,
        )
    )
    pool = LoaderPool()
    stages.train_together(
        _student_set(prepared, lab, unl, t, root, pool=pool, teachers={}, resume="auto"), pool=pool, log=lambda s: None
    )
    for name in ("supervised", "invariant", "distinctive", "timebalance"):
        _same_checkpoint(root / name, alone / name)
    # the models that were behind went first and then shared: still every batch decoded once
    # (served: the baseline's 5 remaining steps, 4 x (labeled + unlabeled) for s=1 and TimeBalance, 1 for s=0)
    c = pool.counts()
    assert (c["decoded"], c["served"], c["seeks"]) == (10, 5 + 2 * 8 + 2, 0)


def test_a_failing_model_stops_alone_and_is_named(prepared, tmp_path):
    pool = LoaderPool()
    bad = _cfg("invariant", 1, optim={"lr": 1e30})
    members = [
        stages.ssl_member(bad, prepared, tmp_path / "bad", dist=Dist(), pool=pool, name="bad", log=lambda s: None),
        stages.ssl_member(
            _cfg("distinctive", 1), prepared, tmp_path / "good", dist=Dist(), pool=pool, name="good", log=lambda s: None
        ),
    ]
    from tbfast.errors import UserError

    with pytest.raises(UserError, match=r"bad: .*non-finite.*finished: good"):
        stages.train_together(members, pool=pool, log=lambda s: None)
    assert json.loads((tmp_path / "good" / "summary.json").read_text())["finished"]
    assert not (tmp_path / "bad" / "summary.json").exists()
    assert not list(tmp_path.glob("*/.tbfast.lock"))


def test_recipe_with_shared_passes_equals_one_stage_at_a_time(prepared, tmp_path):
    """`tbfast run`: the SSL pair, the fine-tuning pair and baseline + students in one pass each give
    the very checkpoints and accuracies of the stages run one after the other."""
    import shutil

    from tbfast.cli import main as cli

    data = tmp_path / "prepared"
    shutil.copytree(prepared, data)
    runs = {}
    for shared in ("true", "false"):
        out = tmp_path / f"shared_{shared}"
        assert (
            cli(
                [
                    "run",
                    "--data",
                    str(data),
                    "--preset",
                    "synthetic_tiny",
                    "--out",
                    str(out),
                    "--fraction",
                    "0.5",
                    "--no-progress",
                    "--device",
                    "cpu",
                    "--threads",
                    "1",
                    "--set",
                    "train.max_steps=3",
                    "--set",
                    "train.log_every=1",
                    "--set",
                    "data.size=16",
                    "--set",
                    "data.batch_size=2",
                    "--set",
                    "eval.clips=2",
                    "--set",
                    f"recipe.shared_passes={shared}",
                    "--seeds",
                    "1",
                ]
            )
            == 0
        )
        runs[shared] = out
    a, b = (json.loads((runs[k] / "results.json").read_text()) for k in ("true", "false"))
    assert a["top1_all"] == b["top1_all"] and a["timebalance_paired"] == b["timebalance_paired"]
    stages_ = (
        "invariant",
        "distinctive",
        "finetune_invariant",
        "finetune_distinctive",
        "supervised",
        "student_invariant",
        "student_distinctive",
        "timebalance",
    )
    for name in stages_:
        _same_checkpoint(runs["true"] / name, runs["false"] / name)
    s = json.loads((runs["true"] / "timebalance" / "summary.json").read_text())
    assert s["shared_pass"] == ["supervised", "student_invariant", "student_distinctive", "timebalance"]
    assert "shared_pass" not in json.loads((runs["false"] / "timebalance" / "summary.json").read_text())
    assert "invariant + distinctive" in a["seconds"] and "invariant" in b["seconds"]


def _students_cmd(prepared, lab, unl, t, out, *extra):
    return [
        sys.executable,
        "-m",
        "tbfast",
        "train",
        "students",
        "--data",
        str(prepared),
        "--out",
        str(out),
        "--labeled",
        str(lab),
        "--unlabeled",
        str(unl),
        "--teacher-invariant",
        str(t["invariant"]),
        "--teacher-distinctive",
        str(t["distinctive"]),
        "--similarity",
        str(t["sim"]),
        "--preset",
        "synthetic_tiny",
        "--size",
        "16",
        "--batch-size",
        "2",
        "--threads",
        "1",
        "--epochs",
        "3",
        "--ckpt-every",
        "1",
        "--log-every",
        "1",
        "--no-progress",
        "--device",
        "cpu",
        *extra,
    ]


def test_sigkill_in_a_shared_pass_then_resume_auto_equals_uninterrupted(
    prepared, prepared_split, student_refs, tmp_path, capsys
):
    from tbfast.cli import main as cli

    lab, unl = prepared_split
    t, _ = student_refs
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    full = tmp_path / "full"  # uninterrupted, in this process (one torch thread, as the subprocesses)
    assert cli(_students_cmd(prepared, lab, unl, t, full)[3:]) == 0
    assert "batches decoded for" in capsys.readouterr().err
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _students_cmd(prepared, lab, unl, t, killed),
        env=dict(env, TBFAST_STEP_DELAY="0.2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # 6 steps per model (3 epochs of 2 batches); kill once a model has passed step 3
    last = killed / "timebalance" / "checkpoints" / "last.pt"
    deadline, step = time.time() + 240, 0
    while time.time() < deadline and proc.poll() is None and step < 3:
        try:
            step = torch.load(last, weights_only=True)["step"] if last.exists() else 0
        except Exception:
            step = 0
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    steps = {
        m: torch.load(killed / m / "checkpoints" / "last.pt", weights_only=True)["step"]
        for m in ("supervised", "student_invariant", "student_distinctive", "timebalance")
    }
    assert 0 < min(steps.values()) and max(steps.values()) < 6, steps
    res = subprocess.run(
        _students_cmd(prepared, lab, unl, t, killed, "--resume", "auto"), env=env, capture_output=True, timeout=300
    )
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    for m in steps:
        _same_checkpoint(killed / m, full / m)
    # a plain re-run refuses to overwrite the finished runs
    assert cli(_students_cmd(prepared, lab, unl, t, killed)[3:]) == 2
    assert "--resume auto" in capsys.readouterr().err


def test_train_teachers_ssl_pair_then_finetune_pair(prepared, prepared_split, tmp_path, capsys):
    from tbfast.cli import main as cli

    lab, _ = prepared_split
    root = tmp_path / "runs"
    args = [
        "train",
        "teachers",
        "--data",
        str(prepared),
        "--out",
        str(root),
        "--labeled",
        str(lab),
        "--preset",
        "synthetic_tiny",
        "--size",
        "16",
        "--batch-size",
        "2",
        "--threads",
        "1",
        "--max-steps",
        "2",
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert cli(args) == 0
    err = capsys.readouterr().err
    assert err.count("one data pass for 2 models") == 2
    for kind in ("invariant", "distinctive"):
        assert torch.load(root / kind / "checkpoints" / "last.pt", weights_only=True)["step"] == 2
        ft = torch.load(root / f"finetune_{kind}" / "checkpoints" / "last.pt", weights_only=True)
        assert ft["stage"] == "finetune" and ft["init_stage"] == kind and ft["step"] == 2
    # again: every model is there already; --resume auto trains nothing, a plain call refuses
    assert cli(args + ["--resume", "auto"]) == 0
    assert cli(args) == 2 and "--resume auto" in capsys.readouterr().err


def test_models_of_a_pass_need_distinct_names():
    from tbfast.engine.shared import Member, fit_together

    with pytest.raises(ValueError, match="distinct names"):
        fit_together([Member("a", object(), dict), Member("a", object(), dict)])
