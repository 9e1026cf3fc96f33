"""N processes compute the one-process objective (issue 12), checked on the CPU with gloo.

2 ranks with B/2 videos each against 1 process with all B videos, same weights, same clips: the
loss (the ranks' mean), every weight gradient after DDP's averaging and every BatchNorm running
statistic agree to 1e-9 in float64 (in float32: loss and statistics to 1e-5, gradients as close to
the float64 truth as one process's), for the invariant, distinctive and combined SSL stages (L_I's
negatives gathered from every rank, BatchNorm statistics synchronised per clip group, both
BatchNorm executions), fine-tuning and the student (synchronised labeled/unlabeled groups).
Dropout is set to 0: its masks are random per clip, not part of the objective.

Each comparison can fail: without the gather, without synchronised statistics or with the
per-rank L_D1 sum, the 2-rank numbers differ (checked below with the features switched off).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

B = 4  # videos per step in one process; 2 per rank with 2 ranks
SIZE = 16
CASES = [  # (name, stage, overrides)
    ("invariant", "invariant", {}),
    ("distinctive", "distinctive", {}),
    ("combined", "combined", {}),
    ("combined_pass", "combined", {"model": {"group_bn_exec": "pass"}}),
    ("combined_mean", "combined", {"loss": {"reduction": "mean"}}),
    ("finetune", "finetune", {"model": {"sync_bn": "on"}}),
    ("student", "student", {"model": {"sync_bn": "on"}}),
    # switched off: must differ from one process (proves the comparisons can fail)
    ("invariant_local_negatives", "invariant", {"loss": {"cross_rank": False}}),
    ("distinctive_rank_bn", "distinctive", {"model": {"sync_bn": "off"}}),
]
SHOULD_DIFFER = {"invariant_local_negatives", "distinctive_rank_bn"}


def _cfg(stage, over):
    from tbfast.engine.config import resolve

    o = {"data": {"batch_size": B, "size": SIZE}, "model": {"dropout": 0.0}}
    for sec, vals in over.items():
        o.setdefault(sec, {}).update(vals)
    return resolve(stage, "synthetic_tiny", o)


def _batch(stage, gen):
    def clips(n, t):
        return torch.rand(n, 3, t, SIZE, SIZE, generator=gen)

    if stage in ("invariant", "distinctive", "combined"):
        return {
            "long0": clips(B, 16),
            "long1": clips(B, 16),
            "short0": clips(4 * B, 16),
            "short1": clips(4 * B, 16),
            "index": torch.arange(B),
        }
    if stage == "finetune":
        return {"clip": clips(B, 8), "label": torch.randint(0, 3, (B,), generator=gen), "index": torch.arange(B)}
    return {
        "l": {"clip": clips(B, 8), "label": torch.randint(0, 3, (B,), generator=gen), "index": torch.arange(B)},
        "u": {"clip": clips(B, 8), "index": torch.arange(B, 2 * B)},
    }


DTYPES = {torch.float64: "fp64", torch.float32: "fp32"}


def _cast(batch, dtype):
    if isinstance(batch, dict):
        return {k: _cast(v, dtype) for k, v in batch.items()}
    return batch.to(dtype) if batch.is_floating_point() else batch


def _share(batch, rank, world):
    """Rank ``rank``'s videos of the step (rows of each tensor; short clips come 4 per video)."""
    if "l" in batch:
        return {k: _share(v, rank, world) for k, v in batch.items()}
    out = {}
    for k, v in batch.items():
        per = v.shape[0] // world
        out[k] = v[rank * per : (rank + 1) * per]
    return out


def _run(rank: int, world: int, init: str, out_dir: str) -> None:
    """One process: every case, one step each; saves loss terms, gradients and BN buffers."""
    import torch.distributed as tdist
    from torch import nn

    from tbfast.engine.config import sync_bn
    from tbfast.engine.distributed import Dist
    from tbfast.engine.nets import ClassNet, SSLNet
    from tbfast.engine.tasks import ClassifyTask, SSLTask, StudentTask, Teacher
    from tbfast.models import set_sync_bn

    torch.set_num_threads(1)
    if world > 1:
        tdist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    d = Dist(rank=rank, world=world)
    results = {}
    for (name, stage, over), dtype in [(c, dt) for c in CASES for dt in DTYPES]:
        cfg = _cfg(stage, over)
        cfg.data.batch_size = B // world
        gen = torch.Generator().manual_seed(7)
        full = _batch(stage, gen)
        torch.manual_seed(3)
        if stage in ("invariant", "distinctive", "combined"):
            model = SSLNet(cfg.model)
            task = SSLTask(cfg, torch.device("cpu"), None, dist=d)
        elif stage == "finetune":
            model = ClassNet(cfg.model, 3)
            task = ClassifyTask(cfg, torch.device("cpu"), None)
        else:
            model = ClassNet(cfg.model, 3)
            teachers = [Teacher(ClassNet(cfg.model, 3), torch.device("cpu"), False) for _ in range(2)]
            scores = torch.rand(2 * B, generator=gen)
            task = StudentTask(cfg, torch.device("cpu"), [0], [0], teachers[0], teachers[1], scores)
        set_sync_bn(model, sync_bn(cfg, world))
        model.to(dtype).train()
        full = _cast(full, dtype)
        net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
        out = task.compute(net, _share(full, rank, world))
        out["loss"].backward()
        results[f"{name}/{DTYPES[dtype]}"] = {
            "terms": {k: float(v.detach()) for k, v in out.items()},
            "grads": {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None},
            "buffers": {n: b.detach().clone() for n, b in model.named_buffers() if "running" in n},
        }
    torch.save(results, Path(out_dir) / f"rank{rank}_of{world}.pt")
    if world > 1:
        tdist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("dist_exact")
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        mp.spawn(_run, args=(2, str(out / "init"), str(out)), nprocs=2, join=True)
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old
    _run(0, 1, "", str(out))
    load = lambda f: torch.load(out / f, weights_only=True)  # noqa: E731
    return load("rank0_of1.pt"), [load("rank0_of2.pt"), load("rank1_of2.pt")]


def _diff(one, two) -> dict:
    """Differences between one process and the 2-rank run: the loss (relative), the gradient of
    all weights together (relative norm of the difference) and the worst single weight tensor
    (relative to the largest gradient entry of the model: a tensor whose true gradient is ~0, e.g.
    a bias before a BatchNorm, is measured against the model's scale, not its own rounding noise)."""
    loss1 = one["terms"]["loss"]
    loss2 = sum(r["terms"]["loss"] for r in two) / 2  # what the trainer logs: the ranks' mean
    g1 = torch.cat([t.flatten() for t in one["grads"].values()])
    g2 = torch.cat([two[0]["grads"][n].flatten() for n in one["grads"]])
    scale = g1.abs().max().item()
    worst = max(
        (two[0]["grads"][n] - t).abs().max().item() / max(t.abs().max().item(), 1e-6 * scale)
        for n, t in one["grads"].items()
    )
    b = max(
        (two[0]["buffers"][n] - t).abs().max().item() / max(t.abs().max().item(), 1e-12)
        for n, t in one["buffers"].items()
    )
    return {
        "loss": abs(loss2 - loss1) / abs(loss1),
        "grad_norm": ((g2 - g1).norm() / g1.norm()).item(),
        "grad_worst_tensor": worst,
        "buffers": b,
    }


NAMES = [c[0] for c in CASES if c[0] not in SHOULD_DIFFER]


@pytest.mark.parametrize("name", NAMES)
def test_two_ranks_compute_the_one_process_objective_fp64(runs, name):
    """In float64 every weight tensor's gradient agrees to 1e-9: the same objective, not a near one."""
    one, two = runs
    one, two = one[f"{name}/fp64"], [r[f"{name}/fp64"] for r in two]
    for n in one["grads"]:  # DDP averaged: both ranks hold the same gradients
        assert torch.equal(two[0]["grads"][n], two[1]["grads"][n])
    dev = _diff(one, two)
    assert dev["loss"] < 1e-12 and dev["grad_worst_tensor"] < 1e-9 and dev["buffers"] < 1e-12, dev
    assert set(one["grads"]) == set(two[0]["grads"]) and len(one["grads"]) > 10


@pytest.mark.parametrize("name", NAMES)
def test_two_ranks_compute_the_one_process_objective_fp32(runs, name):
    """In float32: the loss and the BatchNorm statistics agree to 1e-5, and the 2-rank gradient is
    as close to the float64 truth as one process's float32 gradient is. (On this tiny model at
    16x16 pixels float32 gradients themselves are only ~1e-3 accurate, one process or two: the
    cancellations inside BatchNorm's backward round differently with the batch split, so the exact
    statement is the float64 test above.)"""
    one, two = runs
    dev = _diff(one[f"{name}/fp32"], [r[f"{name}/fp32"] for r in two])
    assert dev["loss"] < 1e-5 and dev["buffers"] < 1e-5, dev

    def vec(r):
        return torch.cat([t.double().flatten() for t in r["grads"].values()])

    truth = vec(one[f"{name}/fp64"])
    err_one = ((vec(one[f"{name}/fp32"]) - truth).norm() / truth.norm()).item()
    err_two = ((vec(two[0][f"{name}/fp32"]) - truth).norm() / truth.norm()).item()
    assert err_two <= 2 * err_one + 1e-5, (err_one, err_two)


@pytest.mark.parametrize("name", sorted(SHOULD_DIFFER))
def test_without_the_gather_or_the_synchronised_statistics_two_ranks_differ(runs, name):
    one, two = runs
    dev = _diff(one[f"{name}/fp64"], [r[f"{name}/fp64"] for r in two])
    assert dev["grad_norm"] > 1e-3, dev
