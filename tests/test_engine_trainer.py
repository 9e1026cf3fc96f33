"""The training loop on stand-in loaders (no DALI): exact resume, non-finite loss, schedule,
student loss wiring (teachers frozen, p_T detached, s per video from the file)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tbfast.engine import checkpoint as ck
from tbfast.engine.config import resolve
from tbfast.engine.distributed import Dist
from tbfast.engine.nets import ClassNet
from tbfast.engine.schedule import WarmupPlateau
from tbfast.engine.tasks import ClassifyTask, StudentTask, Teacher
from tbfast.engine.trainer import NonFiniteLoss, Trainer
from tbfast.errors import UserError


class FakeLoader:
    """``train``-mode batches with the contract's fields; a pure function of (seed, epoch, batch)."""

    def __init__(self, indices, batch_size=2, num_classes=3, size=16, seed=0):
        self.indices, self.bs, self.nc, self.size, self.seed = list(indices), batch_size, num_classes, size, seed
        self.epoch, self.start = 0, 0
        self.calls = []

    def __len__(self):
        return len(self.indices) // self.bs

    def set_epoch(self, epoch, start_batch=0):
        self.epoch, self.start = epoch, start_batch
        self.calls.append((epoch, start_batch))

    def __iter__(self):
        g = torch.Generator().manual_seed(1000 * self.seed + self.epoch)
        order = [self.indices[i] for i in torch.randperm(len(self.indices), generator=g).tolist()]
        start, self.start = self.start, 0
        for b in range(start, len(self)):
            idx = order[b * self.bs : (b + 1) * self.bs]
            gb = torch.Generator().manual_seed(hash((self.seed, self.epoch, b)) % (2**31))
            clip = torch.rand(len(idx), 3, 8, self.size, self.size, generator=gb)
            yield {
                "clip": clip.to(memory_format=torch.channels_last_3d),
                "label": torch.tensor([i % self.nc for i in idx]),
                "index": torch.tensor(idx),
            }


def _cfg(stage="supervised", **train):
    cfg = resolve(
        stage,
        "synthetic_tiny",
        {
            "data": {"size": 16, "batch_size": 2},
            "train": {"device": "cpu", "progress": False, "log_every": 1, **train},
            "optim": {"warmup_epochs": 1},
        },
    )
    return cfg


def _train(tmp, cfg, resume=None, task_factory=None):
    torch.manual_seed(cfg.train.seed)
    model = ClassNet(cfg.model, 3)
    loader = FakeLoader(range(8))
    task = (task_factory or (lambda: ClassifyTask(cfg, torch.device("cpu"), loader)))()
    tr = Trainer(cfg, task, model, tmp, Dist(), meta={"backbone": "tiny", "num_classes": 3}, resume=resume)
    return tr, tr.fit()


def test_a_finished_run_extended_with_more_epochs_equals_one_trained_that_long(tmp_path):
    """--resume auto --epochs 3 on a finished 2-epoch run continues it (nothing depends on the total)."""
    _, full = _train(tmp_path / "a", _cfg(epochs=3))
    _, short = _train(tmp_path / "b", _cfg(epochs=2))
    assert torch.load(short.last, weights_only=True)["finished"]
    tr, more = _train(tmp_path / "b", _cfg(epochs=3), resume="auto")
    assert more.epochs == 3 and more.steps == full.steps
    a, b = (torch.load(r.last, weights_only=True) for r in (full, more))
    assert b["finished"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_resume_mid_epoch_equals_uninterrupted(tmp_path):
    _, full = _train(tmp_path / "a", _cfg(epochs=2))
    # stop mid-epoch 2 (4 batches per epoch), then continue from last.pt
    _, part = _train(tmp_path / "b", _cfg(epochs=2, max_steps=6))
    assert part.steps == 6
    state = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    assert (state["epoch"], state["batch"], state["step"]) == (1, 2, 6)
    _, rest = _train(tmp_path / "b", _cfg(epochs=2), resume="auto")
    a = torch.load(full.last, weights_only=True)
    b = torch.load(rest.last, weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["scheduler"] == b["scheduler"] and a["step"] == b["step"] == 8
    # the epoch means (which drive the plateau schedule) survive the interruption
    assert full.history[-1]["loss"] == pytest.approx(rest.history[-1]["loss"], rel=1e-12)


class CrashAt(ClassifyTask):
    """A process that dies at its ``at``-th step (no checkpoint written then)."""

    def __init__(self, *a, at=3, **k):
        super().__init__(*a, **k)
        self.at, self.n = at, 0

    def compute(self, model, batch):
        self.n += 1
        if self.n == self.at:
            raise KeyboardInterrupt("killed")
        return super().compute(model, batch)


def test_checkpoints_every_n_epochs_change_nothing_and_resume_exactly(tmp_path, monkeypatch):
    """--save-every 2: last.pt at epochs 2, 4 and the last (5) only; the same weights as saving every
    epoch; a crash in epoch 4 resumes from epoch 2's checkpoint and ends bit-identical."""
    _, every = _train(tmp_path / "a", _cfg(epochs=5))
    saved = []
    real = ck.save_checkpoint
    monkeypatch.setattr(ck, "save_checkpoint", lambda st, p: (saved.append((p.name, st["epoch"])), real(st, p)))
    _, sparse = _train(tmp_path / "b", _cfg(epochs=5, save_every=2))
    assert [e for name, e in saved if name == "last.pt"] == [2, 4, 5, 5]  # the last: epoch end, then finish
    a, b = (torch.load(r.last, weights_only=True) for r in (every, sparse))
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    cfg = _cfg(epochs=5, save_every=2)
    with pytest.raises(KeyboardInterrupt):  # 4 steps per epoch: dies at step 14, in epoch 4
        _train(tmp_path / "c", cfg, task_factory=lambda: CrashAt(cfg, torch.device("cpu"), FakeLoader(range(8)), at=14))
    assert torch.load(tmp_path / "c" / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2
    _, rest = _train(tmp_path / "c", cfg, resume="auto")
    c = torch.load(rest.last, weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], c["model"][k]), k
    assert c["step"] == a["step"] == 20 and c["scheduler"] == a["scheduler"]


class NaNAt(ClassifyTask):
    def __init__(self, *a, at=3, **k):
        super().__init__(*a, **k)
        self.at, self.n = at, 0

    def compute(self, model, batch):
        out = super().compute(model, batch)
        self.n += 1
        if self.n == self.at:
            out["loss"] = out["loss"] * float("nan")
        return out


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = _cfg(epochs=3, ckpt_every=2)
    loader = FakeLoader(range(8))
    with pytest.raises(NonFiniteLoss) as e:
        _train(tmp_path, cfg, task_factory=lambda: NaNAt(cfg, torch.device("cpu"), loader, at=7))
    msg = str(e.value)
    assert "non-finite" in msg and "last.pt" in msg and "--resume auto" in msg and "step 7" in msg
    assert isinstance(e.value, UserError)
    state = ck.load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    # the step-6 weights gave the non-finite loss of step 7: set aside; last.pt is the one before (every 2 steps)
    assert state["step"] == 4 and "step 6" in msg and "last.nonfinite.pt" in msg
    assert ck.load_checkpoint(tmp_path / "checkpoints" / "last.nonfinite.pt")["step"] == 6
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_exploding_lr_leaves_a_usable_checkpoint_and_the_advised_recovery_works(tmp_path):
    """--lr 1e38 --ckpt-every 1: the first update explodes the weights (finite, ~1e36) and the next
    loss is non-finite; the exploded checkpoint must not stay last.pt, and a lower lr with --resume
    auto must then train to the end with finite weights."""
    cfg = _cfg(epochs=2, ckpt_every=1)
    cfg.optim.lr, cfg.optim.warmup_epochs = 1e38, 0
    with pytest.raises(NonFiniteLoss) as e:
        _train(tmp_path, cfg)
    assert "--resume auto" in str(e.value)
    last = tmp_path / "checkpoints" / "last.pt"
    if last.exists():  # what stays must be weights that gave a finite loss after them
        state = ck.load_checkpoint(last)
        assert max(v.abs().max().item() for v in state["model"].values() if v.is_floating_point()) < 1e6
    cfg2 = _cfg(epochs=2, ckpt_every=1)
    _, res = _train(tmp_path, cfg2, resume="auto")
    state = ck.load_checkpoint(last)
    assert res.epochs == 2 and state["finished"]
    assert all(
        torch.isfinite(v).all() and v.abs().max() < 1e6 for v in state["model"].values() if v.is_floating_point()
    )


def test_warmup_then_halving_on_plateau():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1.0)
    s = WarmupPlateau(opt, base_lr=1e-3, steps_per_epoch=10, warmup_epochs=2, patience=2)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5)
    for _ in range(10):
        s.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5 + 0.99e-3 * 0.5)
    for _ in range(10):
        s.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)
    losses = [1.0, 0.9, 0.95, 0.95, 0.95]  # no improvement for 3 > patience epochs -> halve once
    assert [s.epoch_end(x) for x in losses] == [False, False, False, False, True]
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-4)
    s2 = WarmupPlateau(opt, base_lr=1e-3, steps_per_epoch=10)
    s2.load_state_dict(s.state_dict())
    assert s2.lr() == s.lr()


# ---------------------------------------------------------------- student wiring
class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, logits, p_inv, p_dis, s, kind, reduction="mean"):
        self.calls.append({"s": s.clone(), "p_inv": p_inv, "p_dis": p_dis, "kind": kind, "reduction": reduction})
        p_t = s[:, None] * p_inv + (1 - s[:, None]) * p_dis
        return ((torch.softmax(logits, 1) - p_t) ** 2).mean()


def _student(tmp_path, weighting="timebalance"):
    cfg = _cfg("student", epochs=1)
    cfg.loss.weighting = weighting
    dev = torch.device("cpu")
    torch.manual_seed(0)
    t_inv = Teacher(ClassNet(cfg.model, 3), dev, half=True)
    t_dis = Teacher(ClassNet(cfg.model, 3), dev, half=True)
    scores = torch.full((20,), float("nan"))
    scores[:16] = torch.linspace(0, 1, 16)
    lab, unl = FakeLoader([0, 1, 2, 3]), FakeLoader(range(4, 16))
    task = StudentTask(cfg, dev, lab, unl, t_inv, t_dis, scores)
    task.distill = Recorder()
    return cfg, task, t_inv, t_dis, scores, lab, unl


def test_student_teachers_frozen_pt_detached_and_s_from_file(tmp_path):
    cfg, task, t_inv, t_dis, scores, lab, unl = _student(tmp_path)
    model = ClassNet(cfg.model, 3)
    task.set_epoch(0, 0)
    batch = next(iter(task.batches()))
    t_inv.train()  # a frozen teacher ignores train()
    out = task.compute(model, batch)
    out["loss"].backward()
    assert not t_inv.training and not t_inv.net.training
    assert all(p.grad is None and not p.requires_grad for t in (t_inv, t_dis) for p in t.parameters())
    assert any(p.grad is not None for p in model.parameters())
    labeled_call, unlabeled_call = task.distill.calls
    for call in (labeled_call, unlabeled_call):
        assert not call["p_inv"].requires_grad and not call["p_dis"].requires_grad and call["kind"] == "l2"
    assert torch.equal(labeled_call["s"], scores[batch["l"]["index"]])
    assert torch.equal(unlabeled_call["s"], scores[batch["u"]["index"]])
    # both teachers saw exactly the clips the student saw
    x = torch.cat([batch["l"]["clip"], batch["u"]["clip"]])
    assert torch.allclose(labeled_call["p_inv"], t_inv.probs(x)[:2])
    assert torch.allclose(unlabeled_call["p_dis"], t_dis.probs(x)[2:])
    assert set(out) == {"loss", "ce", "distill_l", "distill_u", "acc"}
    lc = cfg.loss
    assert out["loss"].item() == pytest.approx(
        (out["ce"] + lc.w_labeled * out["distill_l"] + lc.w_unlabeled * out["distill_u"]).item(), rel=1e-6
    )


def test_student_single_teacher_weights_and_missing_scores(tmp_path):
    cfg, task, *_ = _student(tmp_path, "invariant")
    assert torch.equal(task.weights(torch.tensor([5, 6])), torch.ones(2))
    cfg, task, *_ = _student(tmp_path, "distinctive")
    assert torch.equal(task.weights(torch.tensor([5, 6])), torch.zeros(2))
    cfg, task, *_ = _student(tmp_path)
    with pytest.raises(UserError, match="no score"):
        task.weights(torch.tensor([3, 18]))


def test_student_labeled_loader_cycles_from_the_global_step(tmp_path):
    cfg, task, _, _, _, lab, unl = _student(tmp_path)
    assert task.steps_per_epoch() == 6  # one pass over the 12 unlabeled videos, batch 2
    task.set_epoch(1, 3)  # resume: epoch 1, batch 3 -> global step 9 -> labeled epoch 4, batch 1
    it = task.batches()
    next(it)
    assert lab.calls[-1] == (4, 1) and unl.calls[-1] == (1, 3)
    for _ in range(2):
        next(it)
    assert lab.calls[-1] == (5, 0)  # the labeled loader (2 batches) wrapped around


def test_precision_auto_is_fp32_on_cpu_and_bf16_is_checked(tmp_path, recwarn):
    from tbfast.engine.trainer import choose_precision

    cfg = _cfg()
    model = ClassNet(cfg.model, 3)
    task = ClassifyTask(cfg, torch.device("cpu"), FakeLoader(range(8)))
    assert choose_precision(cfg, torch.device("cpu"), task, model, print) == "fp32"
    cfg.train.precision = "fp16"
    assert choose_precision(cfg, torch.device("cpu"), task, model, print) == "fp32"
    cfg.train.precision = "bf16"
    # the tiny model's Conv3d layers are guarded for shallow inputs: its bf16 gradients match fp32
    assert choose_precision(cfg, torch.device("cpu"), task, model, print) == "bf16"


def test_failed_bf16_check_falls_back_to_fp32(monkeypatch):
    import tbfast.amp as amp
    from tbfast.engine.trainer import choose_precision

    cfg = _cfg()
    cfg.train.precision = "bf16"
    model = ClassNet(cfg.model, 3)
    task = ClassifyTask(cfg, torch.device("cpu"), FakeLoader(range(8)))
    monkeypatch.setattr(amp, "gradient_check", lambda *a, **k: amp.GradCheck(False, math.inf, "x", 0.05))
    with pytest.warns(UserWarning, match="fp32"):
        assert choose_precision(cfg, torch.device("cpu"), task, model, print) == "fp32"


def test_augmentation_overrides_from_config():
    from tbfast.engine.config import parse_set
    from tbfast.engine.stages import augmented_spec

    cfg = resolve(
        "invariant",
        "synthetic_tiny",
        parse_set(["data.ssl_aug={gray_p: 0.5, hue: [-0.4, 0.4]}", "data.ssl_crop_scale=[0.7, 1.0]"]),
    )
    aug = augmented_spec("ssl", cfg).aug
    assert aug.gray_p == 0.5 and aug.hue == (-0.4, 0.4) and aug.crop_scale == (0.7, 1.0)
    assert aug.erase_p == 0.7  # untouched fields keep METHOD.md's values
    assert augmented_spec("train", cfg).aug.gray_p == 0.1
    cfg.data.ssl_aug = {"grey_p": 0.5}
    with pytest.raises(UserError, match="grey_p"):
        augmented_spec("ssl", cfg)
