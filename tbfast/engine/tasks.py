"""One small *task* per stage: which loader(s) feed it and the loss of one batch.

A task owns its loaders and any frozen modules (teachers); the trainer owns the trainable
model, precision, optimiser, DDP, checkpoints and logging. ``compute`` runs inside the
trainer's autocast and returns a dict of scalar tensors with the total under ``"loss"``.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from tbfast.engine.config import Config, bn_mode
from tbfast.errors import UserError
from tbfast.kernels import get_ssl_objective, student_distill_loss


def _up(t: torch.Tensor) -> torch.Tensor:
    """At least float32 (losses never run in half precision; float64 stays float64, for tests)."""
    return t if t.dtype == torch.float64 else t.float()


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


class Task:
    stage: str = ""
    terms: tuple[str, ...] = ("loss",)

    def __init__(self, cfg: Config, device: torch.device):
        self.cfg = cfg
        self.device = device

    def steps_per_epoch(self) -> int:
        raise NotImplementedError

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        raise NotImplementedError

    def batches(self) -> Iterator[dict]:
        raise NotImplementedError

    def compute(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def clips(self, batch: dict) -> int:
        raise NotImplementedError

    def indices(self, batch: dict) -> list[int]:
        """Manifest indices of the videos in ``batch`` (student: the unlabeled ones, which define the epoch)."""
        return batch["u"]["index"].tolist() if "u" in batch else batch["index"].tolist()

    def probe(self, model: nn.Module) -> tuple[nn.Module, tuple[int, ...]]:
        """(module taking one clip tensor, input shape) for the start-up gradient self-check."""
        raw = model.module if hasattr(model, "module") else model
        return raw.backbone, (2, 3, self.clip_len, self.cfg.data.size, self.cfg.data.size)

    clip_len = 8


class SingleLoaderTask(Task):
    """A task fed by one loader (self-supervised pretraining, classification)."""

    def __init__(self, cfg: Config, device: torch.device, loader):
        super().__init__(cfg, device)
        self.stage = cfg.stage
        self.loader = loader

    def steps_per_epoch(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.loader.set_epoch(epoch, start_batch)

    def batches(self):
        for batch in self.loader:
            yield to_device(batch, self.device)


class SSLTask(SingleLoaderTask):
    """Self-supervised pretraining (METHOD.md §4): L_I, L_D1 + L_D2, or all three."""

    clip_len = 16

    def __init__(self, cfg: Config, device: torch.device, loader, dist=None):
        super().__init__(cfg, device, loader)
        self.dist = dist
        self.objective = get_ssl_objective(cfg.loss.ssl_impl)
        self.bn = bn_mode(cfg, device.type)
        if self.bn != "mixed" and cfg.data.batch_size < 2:
            raise UserError(
                "per-clip-group BatchNorm needs at least 2 videos per step and process (the projection "
                "head normalises each group of B rows); use --batch-size 2 or more, or "
                "--set model.group_bn=false"
            )
        lc = cfg.loss
        self.terms = ("loss",) + tuple(t for t, w in (("L_I", lc.w_inv), ("L_D1", lc.w_ll), ("L_D2", lc.w_gl)) if w)

    def clips(self, batch: dict) -> int:
        return 2 * (batch["long0"].shape[0] + batch["short0"].shape[0])

    def compute(self, model, batch):
        lc = self.cfg.loss
        long = torch.cat([batch["long0"], batch["long1"]])
        short = torch.cat([batch["short0"], batch["short1"]])
        z_long, z_short, z_slices = model(long, short, slices=lc.w_gl > 0, bn=self.bn)
        z_long, z_short = _up(z_long), _up(z_short)
        z_slices = None if z_slices is None else _up(z_slices)
        kw = dict(tau=lc.tau, reduction=lc.reduction)
        d = self.dist
        if d is not None and d.enabled:  # the reference's sum over videos counts the whole step
            kw["bsz_total"] = z_short.shape[0] * d.world
        if d is None or not d.enabled or not (lc.cross_rank and lc.w_inv):
            out = self.objective(z_long, z_slices, z_short, w_inv=lc.w_inv, w_ll=lc.w_ll, w_gl=lc.w_gl, **kw)
            return {k: v for k, v in out.items() if k in self.terms and v is not None}
        # several processes, one objective: L_I over every rank's videos (embeddings gathered with
        # their gradients; each rank computes the same global L_I, and DDP's gradient average over
        # the ranks' sum of gradients through the gather gives exactly one process's gradient); the
        # per-video terms on this rank's videos, whose ranks' average is the global mean (the
        # reference's sum over videos counts the whole step: bsz_total)
        from tbfast.engine.distributed import gather_rows

        inv = self.objective(
            gather_rows(z_long, d), None, gather_rows(z_short, d), w_inv=lc.w_inv, w_ll=0.0, w_gl=0.0, **kw
        )
        out = {"L_I": inv["L_I"], "loss": lc.w_inv * inv["L_I"]}
        if lc.w_ll or lc.w_gl:
            per = self.objective(z_long, z_slices, z_short, w_inv=0.0, w_ll=lc.w_ll, w_gl=lc.w_gl, **kw)
            out.update(L_D1=per["L_D1"], L_D2=per["L_D2"], loss=out["loss"] + per["loss"])
        return {k: v for k, v in out.items() if k in self.terms and v is not None}


class ClassifyTask(SingleLoaderTask):
    """Cross-entropy on the labeled subset: teacher fine-tuning and the supervised-only baseline."""

    terms = ("loss", "acc")

    def clips(self, batch: dict) -> int:
        return batch["clip"].shape[0]

    def compute(self, model, batch):
        logits = _up(model(batch["clip"]))
        loss = F.cross_entropy(logits, batch["label"])
        acc = (logits.detach().argmax(1) == batch["label"]).float().mean()
        return {"loss": loss, "acc": acc}


class Teacher(nn.Module):
    """A frozen classifier: eval mode, no grad, half precision on GPUs; never wrapped in DDP.

    Remembers its predictions for the last batch (by the identity of its clip tensors): students of
    a shared pass (``tbfast.engine.shared``) get the same batch objects, and the teacher runs once."""

    def __init__(self, net: nn.Module, device: torch.device, half: bool):
        super().__init__()
        self._memo: tuple[tuple, torch.Tensor] | None = None
        self.forwards = 0  # batches run through the network (the rest were remembered)
        self.dtype = torch.float32
        if half and device.type == "cuda":
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.net = net.to(device=device, dtype=self.dtype).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):  # stays in eval mode whatever the caller does
        return super().train(False)

    @torch.no_grad()
    def probs(self, x: torch.Tensor, key: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """Class probabilities of ``x``; ``key``: the tensors ``x`` was made from (the same objects
        again return the remembered result)."""
        if (
            key is not None
            and self._memo is not None
            and len(key) == len(self._memo[0])
            and all(a is b for a, b in zip(key, self._memo[0]))
        ):
            return self._memo[1]
        with torch.autocast(x.device.type, enabled=False):
            p = torch.softmax(self.net(x.to(self.dtype)).float(), dim=1)
        self.forwards += 1
        self._memo = (tuple(key), p) if key is not None else None
        return p


class StudentTask(Task):
    """TimeBalance student (METHOD.md §4-5): CE on labeled clips + distillation towards
    p_T = s*p_I + (1-s)*p_D on labeled and unlabeled clips; epoch = one pass over the
    unlabeled set, the labeled loader cycles (its position follows from the global step).
    """

    terms = ("loss", "ce", "distill_l", "distill_u", "acc")

    def __init__(
        self,
        cfg: Config,
        device: torch.device,
        labeled_loader,
        unlabeled_loader,
        teacher_inv: Teacher | None,
        teacher_dis: Teacher | None,
        scores: torch.Tensor,
    ):
        super().__init__(cfg, device)
        self.stage = "student"
        self.lab = labeled_loader
        self.unl = unlabeled_loader
        self.t_inv = teacher_inv
        self.t_dis = teacher_dis
        self.scores = scores.to(device)  # (len(manifest),) s per manifest index, NaN = unknown
        self.distill = student_distill_loss
        self.bn = bn_mode(cfg, device.type)
        self.weighting = cfg.loss.weighting
        self._pos = (0, 0)
        if self.weighting != "distinctive" and teacher_inv is None:
            raise UserError("the student needs --teacher-invariant (unless --weighting distinctive)")
        if self.weighting != "invariant" and teacher_dis is None:
            raise UserError("the student needs --teacher-distinctive (unless --weighting invariant)")
        if len(self.lab) == 0:
            raise UserError("the labeled subset has fewer videos than one batch; lower --batch-size")

    def steps_per_epoch(self) -> int:
        return len(self.unl)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.unl.set_epoch(epoch, start_batch)
        self._pos = (epoch, start_batch)

    def _labeled(self, global_step: int):
        n = len(self.lab)
        lab_epoch, lab_batch = divmod(global_step, n)
        while True:
            self.lab.set_epoch(lab_epoch, lab_batch)
            for batch in self.lab:
                yield batch
            lab_epoch, lab_batch = lab_epoch + 1, 0

    def batches(self):
        epoch, start = self._pos
        lab = self._labeled(epoch * len(self.unl) + start)
        for ub in self.unl:
            lb = next(lab)
            yield {"l": to_device(lb, self.device), "u": to_device(ub, self.device)}

    def clips(self, batch: dict) -> int:
        return batch["l"]["clip"].shape[0] + batch["u"]["clip"].shape[0]

    def weights(self, index: torch.Tensor) -> torch.Tensor:
        if self.weighting == "invariant":
            return torch.ones(index.shape[0], device=self.device)
        if self.weighting == "distinctive":
            return torch.zeros(index.shape[0], device=self.device)
        s = self.scores[index.to(self.device)]
        if torch.isnan(s).any():
            bad = index[torch.isnan(s).cpu()].tolist()[:5]
            raise UserError(
                f"the similarity file has no score for manifest indices {bad}; compute it with "
                "`tbfast similarity` on the same prepared data"
            )
        return s

    def teacher_probs(self, x: torch.Tensor, key: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        p_inv = self.t_inv.probs(x, key) if self.t_inv is not None else None
        p_dis = self.t_dis.probs(x, key) if self.t_dis is not None else None
        # a missing teacher gets weight 0; reuse the other's probabilities as a placeholder
        return (p_inv if p_inv is not None else p_dis), (p_dis if p_dis is not None else p_inv)

    def compute(self, model, batch):
        lc = self.cfg.loss
        xl, xu = batch["l"]["clip"], batch["u"]["clip"]
        y = batch["l"]["label"]
        x = torch.cat([xl, xu])
        p_inv, p_dis = self.teacher_probs(x, key=(xl, xu))  # the student and both teachers see the same clips
        s = torch.cat([self.weights(batch["l"]["index"]), self.weights(batch["u"]["index"])])
        nl = xl.shape[0]
        # labeled and unlabeled clips: two BatchNorm groups, as the reference's two calls
        logits = _up(model(x, groups=[nl, xu.shape[0]], bn=self.bn))
        ce = F.cross_entropy(logits[:nl], y)
        with torch.autocast(x.device.type, enabled=False):
            d_l = self.distill(logits[:nl], p_inv[:nl], p_dis[:nl], s[:nl], lc.distill, lc.reduction)
            d_u = self.distill(logits[nl:], p_inv[nl:], p_dis[nl:], s[nl:], lc.distill, lc.reduction)
        loss = ce + lc.w_labeled * d_l + lc.w_unlabeled * d_u
        acc = (logits[:nl].detach().argmax(1) == y).float().mean()
        return {"loss": loss, "ce": ce, "distill_l": d_l, "distill_u": d_u, "acc": acc}
