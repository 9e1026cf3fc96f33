"""Real processes on the tiny prepared data: SIGKILL mid-epoch + ``--resume auto`` equals an
uninterrupted run; ``torchrun --nproc_per_node 2`` (gloo) trains with one shard per rank."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

COMMON = [
    "--preset",
    "synthetic_tiny",
    "--size",
    "16",
    "--no-progress",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--log-every",
    "1",
]


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture(scope="module")
def teachers(prepared, prepared_split, tmp_path_factory):
    """Two fine-tuned teachers (1 step each) and a similarity file, made in-process."""
    from tbfast.cli import main as cli

    root = tmp_path_factory.mktemp("teachers")
    lab, _ = prepared_split
    out = {}
    for kind in ("invariant", "distinctive"):
        d = root / kind
        assert (
            cli(
                [
                    "train",
                    "supervised",
                    "--data",
                    str(prepared),
                    "--out",
                    str(d),
                    "--labeled",
                    str(lab),
                    "--max-steps",
                    "1",
                    "--batch-size",
                    "2",
                    "--seed",
                    str(len(kind)),
                    *COMMON,
                ]
            )
            == 0
        )
        out[kind] = d / "checkpoints" / "last.pt"
    from tbfast.data.manifest import read_manifest

    recs = read_manifest(prepared)
    rows = ["index,path,raw,score"] + [
        f"{i},{r.path},0,{(i % 5) / 4}" for i, r in enumerate(recs) if r.split == "train"
    ]
    out["sim"] = root / "sim.csv"
    out["sim"].write_text("\n".join(rows) + "\n")
    return out


def _student_args(prepared, lab, unl, teachers, out):
    return [
        sys.executable,
        "-m",
        "tbfast",
        "train",
        "student",
        "--data",
        str(prepared),
        "--out",
        str(out),
        "--labeled",
        str(lab),
        "--unlabeled",
        str(unl),
        "--teacher-invariant",
        str(teachers["invariant"]),
        "--teacher-distinctive",
        str(teachers["distinctive"]),
        "--similarity",
        str(teachers["sim"]),
        "--batch-size",
        "1",
        "--epochs",
        "3",
        "--ckpt-every",
        "1",
        *COMMON,
    ]


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(prepared, prepared_split, teachers, tmp_path):
    lab, unl = prepared_split
    full = tmp_path / "full"
    res = subprocess.run(
        _student_args(prepared, lab, unl, teachers, full), env=_env(), capture_output=True, timeout=300
    )
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    killed = tmp_path / "killed"
    args = _student_args(prepared, lab, unl, teachers, killed)
    proc = subprocess.Popen(args, env=_env(TBFAST_STEP_DELAY="0.3"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    last = killed / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    step = 0
    # 4 unlabeled videos, batch 1: 4 steps per epoch; kill inside epoch 2 (after step 5)
    while time.time() < deadline and proc.poll() is None:
        if last.exists():
            try:
                step = torch.load(last, weights_only=True)["step"]
            except Exception:
                step = 0
            if step >= 5:
                break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = torch.load(last, weights_only=True)
    assert 5 <= state["step"] < 12 and state["batch"] % 4 != 0, (state["step"], state["batch"])  # mid-epoch
    res = subprocess.run(args + ["--resume", "auto"], env=_env(), capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    assert "resumed from" in res.stderr.decode()
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["step"] == b["step"] == 12 and b["finished"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
    # metrics.jsonl has each step once after the resume
    steps = [
        json.loads(x)["step"]
        for x in (killed / "metrics.jsonl").read_text().splitlines()
        if json.loads(x)["kind"] == "step"
    ]
    assert steps == list(range(1, 13))


def test_torchrun_two_processes_gloo(prepared, tmp_path):
    out = tmp_path / "ddp"
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "tbfast",
        "train",
        "invariant",
        "--data",
        str(prepared),
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--epochs",
        "1",
        "--bn-exec",
        "calls",
        *COMMON,
    ]  # 10 backbone calls in one DDP forward
    res = subprocess.run(args, env=_env(), capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    epoch = [r for r in recs if r["kind"] == "epoch"]
    assert len(epoch) == 1
    e = epoch[0]
    # 8 training videos, 2 ranks x batch 2: 2 steps; each rank its own 4 videos, no overlap
    assert e["world"] == 2 and e["shard_videos"] == [4, 4] and e["shard_overlap"] == 0 and e["step"] == 2
    assert e["clips"] == 8 * 10  # clips counted over both ranks
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["world"] == 2 and len(state["rng"]) == 2
    assert not any(k.startswith("module.") for k in state["model"])
    assert res.stdout.decode().count('"stage"') == 1  # rank 0 reports, rank 1 does not


def test_torchrun_recipe_then_similarity_and_eval_match_one_process(prepared, tmp_path):
    """`tbfast run` under torchrun (2 ranks, gloo): rank 0 prepares, scores, evaluates and reports
    once; the run resumes in one process (another world size); `similarity` and `eval` under torchrun
    give exactly the one-process results."""
    import shutil

    data = tmp_path / "prepared"
    shutil.copytree(prepared, data)
    out = tmp_path / "recipe"
    recipe = [
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
        "train.max_steps=1",
        "--seeds",
        "1",
        "--set",
        "data.size=16",
        "--set",
        "data.batch_size=2",
        "--set",
        "eval.clips=2",
    ]
    tr = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29519",
        "-m",
        "tbfast",
    ]
    res = subprocess.run(tr + ["run", *recipe], env=_env(), capture_output=True, timeout=900)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    assert res.stdout.decode().count("Full report (per class") == 1  # the summary, printed by rank 0 only
    results = json.loads((out / "results.json").read_text())
    assert results["world"] == 2 and set(results["top1"]) >= {"timebalance", "supervised"}
    inv = torch.load(out / "invariant" / "checkpoints" / "last.pt", weights_only=True)
    assert inv["world"] == 2 and len(inv["rng"]) == 2
    # the same OUT in one process: every stage is reused or resumed at world size 1
    res1 = subprocess.run(
        [sys.executable, "-m", "tbfast", "run", *recipe], env=_env(), capture_output=True, timeout=900
    )
    assert res1.returncode == 0, res1.stderr.decode()[-3000:]
    assert json.loads((out / "results.json").read_text())["world"] == 1

    sim = [
        "similarity",
        "--invariant",
        str(out / "invariant" / "checkpoints" / "last.pt"),
        "--distinctive",
        str(out / "distinctive" / "checkpoints" / "last.pt"),
        "--data",
        str(data),
        "--size",
        "16",
        "--device",
        "cpu",
        "--no-progress",
    ]
    ev = [
        "eval",
        "--checkpoint",
        str(out / "timebalance" / "checkpoints" / "last.pt"),
        "--data",
        str(data),
        "--size",
        "16",
        "--clips",
        "2",
        "--device",
        "cpu",
        "--no-progress",
    ]
    for world, prefix in ((1, [sys.executable, "-m", "tbfast"]), (2, tr)):
        r = subprocess.run(
            prefix + sim + ["--out", str(tmp_path / f"sim{world}.csv")], env=_env(), capture_output=True, timeout=300
        )
        assert r.returncode == 0, r.stderr.decode()[-3000:]
        r = subprocess.run(
            prefix + ev + ["--json", str(tmp_path / f"eval{world}.json")], env=_env(), capture_output=True, timeout=300
        )
        assert r.returncode == 0, r.stderr.decode()[-3000:]
    assert (tmp_path / "sim1.csv").read_bytes() == (tmp_path / "sim2.csv").read_bytes()
    e1, e2 = (json.loads((tmp_path / f"eval{w}.json").read_text()) for w in (1, 2))
    for k in ("seconds", "wall_seconds", "clips_per_s"):  # timings
        e1.pop(k, None)
        e2.pop(k, None)
    assert e1 == e2 and e1["videos"] == 8
