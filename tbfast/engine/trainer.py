"""The one training loop: precision, channels-last, fused Adam, warmup + plateau, DDP,
atomic checkpoints with exact resume, non-finite guard, metrics and progress.

Reads top to bottom like the torchvision references: ``setup`` (model, precision, optimiser,
resume) -> ``epoch_steps`` -> epoch end (scheduler, validation, checkpoints) -> ``fit``.
``fit_steps`` is ``fit`` one optimiser step at a time (a generator): ``tbfast.engine.shared`` drives
several trainers through it from one decoded data stream.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generator

import torch
from torch import nn

from tbfast import lock
from tbfast.engine import checkpoint as ck
from tbfast.engine.config import Config, plain, save_config
from tbfast.engine.distributed import Dist, all_gather_object, all_reduce_sum, barrier, broadcast_object
from tbfast.engine.metrics import MetricsLog, ProgressView, fmt_terms
from tbfast.engine.schedule import WarmupPlateau
from tbfast.engine.tasks import Task
from tbfast.errors import UserError


class NonFiniteLoss(UserError):
    pass


# seconds to sleep after each step: lets tests kill a run mid-epoch deterministically
_STEP_DELAY = float(os.environ.get("TBFAST_STEP_DELAY", "0") or 0)


@dataclass
class FitResult:
    run_dir: Path
    last: Path
    best: Path | None
    epochs: int
    steps: int
    seconds: float  # training steps' time in this invocation (no validation, checkpoints or plots)
    clips: int  # clips trained on in this invocation (all ranks)
    final_loss: float
    history: list = field(default_factory=list)
    wall_seconds: float = 0.0  # the whole invocation, validation and checkpoints included

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else float("nan")


# ---------------------------------------------------------------- precision
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def choose_precision(cfg: Config, device: torch.device, task: Task, model: nn.Module, log) -> str:
    """fp32 on the CPU and bf16 on GPUs by default; reduced precision only after its weight
    gradients on the model's real input shape matched fp32 (DESIGN.md: CPU bf16 Conv3d bug)."""
    p = cfg.train.precision
    if p == "auto":
        p = "bf16" if device.type == "cuda" else "fp32"
    if p == "fp16" and device.type == "cpu":
        log("fp16 autocast is not supported on the CPU; using fp32")
        return "fp32"
    if p == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        log("this GPU has no bf16; using fp16 with a GradScaler")
        p = "fp16"
    if p == "fp32" or not cfg.train.precision_check:
        return p
    try:
        from tbfast.amp import gradient_check, guard_cpu_bf16
    except ImportError:  # pragma: no cover - amp module missing
        log(f"cannot check {p} gradients (tbfast.amp missing); using fp32")
        return "fp32"
    probe, shape = task.probe(model)
    if device.type == "cpu":
        guard_cpu_bf16(model)
    from tbfast.models import sync_bn_paused

    with sync_bn_paused():  # a local check: no collective
        res = gradient_check(probe, shape, device=device, dtype=AUTOCAST[p], channels_last=cfg.train.channels_last)
    if not res.ok:
        warnings.warn(f"{p} start-up check failed ({res.describe()}); training in fp32 instead", stacklevel=1)
        log(f"WARNING: {p} {res.describe()}; falling back to fp32")
        return "fp32"
    log(f"{p} autocast: {res.describe()}")
    return p


def make_optimizer(model: nn.Module, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    oc = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    kw = dict(lr=oc.lr, betas=tuple(oc.betas), weight_decay=oc.weight_decay)
    if oc.fused:
        try:
            return torch.optim.Adam(params, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(params, foreach=device.type == "cuda", **kw)


@dataclass
class EpochState:
    """The epoch in progress: what a mid-epoch checkpoint stores (as a dict, ``epoch_state``) so
    that a resumed epoch reports the same means as an uninterrupted one."""

    sums: dict[str, float] = field(default_factory=dict)  # per loss term, over the epoch's steps so far
    count: int = 0  # steps
    clips: int = 0  # clips trained on (all ranks)
    seconds: float = 0.0  # training time of the logged windows
    seen: list[int] = field(default_factory=list)  # manifest indices trained on (several processes only)

    def to_dict(self) -> dict:
        d = {"sums": dict(self.sums), "count": self.count, "clips": self.clips, "seconds": self.seconds}
        return {**d, "seen": list(self.seen)} if self.seen else d

    @classmethod
    def from_dict(cls, d: dict | None) -> "EpochState | None":
        if not d:
            return None
        return cls(
            sums={k: float(v) for k, v in d.get("sums", {}).items()},
            count=int(d.get("count", 0)),
            clips=int(d.get("clips", 0)),
            seconds=float(d.get("seconds", 0.0)),
            seen=[int(i) for i in d.get("seen", [])],
        )


# ---------------------------------------------------------------- trainer
class Trainer:
    def __init__(
        self,
        cfg: Config,
        task: Task,
        model: nn.Module,
        run_dir: Path,
        dist: Dist,
        *,
        meta: dict,
        resume: str | None = None,
        validate: Callable[[nn.Module], dict] | None = None,
        on_log: Callable[[str], None] | None = None,
        show_progress: bool = True,
    ):
        """``meta``: checkpoint identity (``backbone``, ``num_classes``; ``classes``: their names, kept
        for ``tbfast predict``; ``inputs``: name -> input file, recorded in provenance.json); ``validate(model)`` -> dict with
        ``video_top1`` (rank 0); ``resume``: None, ``"auto"`` (RUN/checkpoints/last.pt if present) or a path;
        ``show_progress=False``: no progress bar of its own (a shared pass draws one for all its models)."""
        self.cfg, self.task, self.dist = cfg, task, dist
        self.device = dist.device
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.meta = meta
        self.validate = validate
        self.main = dist.main
        self.show_progress = show_progress
        self._log = on_log or (lambda s: None)
        # one writer per run directory (rank 0 writes everything); released when fit() ends
        self._lock = lock.acquire(self.run_dir, f"tbfast train {cfg.stage}", note=self.log) if self.main else None
        try:
            self._setup(cfg, task, model, dist, resume)
        except BaseException:
            lock.release(self._lock)
            raise

    def _setup(self, cfg: Config, task: Task, model: nn.Module, dist: Dist, resume: str | None) -> None:
        if self.main:  # a checkpoint or config write killed half-way leaves its temporary file
            n = ck.remove_stale_temps(self.run_dir) + ck.remove_stale_temps(self.ckpt_dir)
            if n:
                self.log(f"removed {n} temporary file(s) of an interrupted write in {self.run_dir}")
        resume = self._claim_run_dir(resume)
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
            from tbfast.provenance import provenance

            ck.atomic_write_bytes(
                self.run_dir / "provenance.json", json.dumps(provenance(self.meta.get("inputs")), indent=2).encode()
            )
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl" if self.main else None)

        tc = cfg.train
        torch.manual_seed(tc.seed + dist.rank)
        self.model = model.to(self.device)
        if tc.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d)
        self.precision = choose_precision(cfg, self.device, task, self.model, self.log)
        self.amp_dtype = AUTOCAST[self.precision]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.steps_per_epoch = task.steps_per_epoch()
        if self.steps_per_epoch < 1:
            raise UserError(
                f"{cfg.stage}: an epoch has no batches (fewer videos per rank than --batch-size "
                f"{cfg.data.batch_size}); lower the batch size"
            )
        oc = cfg.optim
        self.scheduler = WarmupPlateau(
            self.optimizer,
            base_lr=oc.lr,
            steps_per_epoch=self.steps_per_epoch,
            warmup_epochs=oc.warmup_epochs,
            warmup_start=oc.warmup_start,
            patience=oc.plateau_patience,
            factor=oc.plateau_factor,
            threshold=oc.plateau_threshold,
            min_lr=oc.min_lr,
        )
        self.epoch, self.batch, self.step = 0, 0, 0
        self._ckpt_steps: dict[str, int | None] = {}  # step of last.pt / prev.pt written or resumed here
        self._verified_step = 0  # every loss up to this step was seen finite
        self.best = -1.0
        self.epoch_state: EpochState | None = None
        self.finished = False
        # the non-finite guard: steps with a non-finite loss since the last check (a device tensor, read
        # only at checks), and the last loss terms seen (for the message)
        self._nonfinite = torch.zeros((), dtype=torch.int32, device=self.device)
        self._last_terms: dict[str, float] | str = {}
        if resume:
            self._resume(resume)
        self.train_model = self.model
        if dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if tc.compile:
            self.train_model = torch.compile(self.train_model)

    def _claim_run_dir(self, resume: str | None) -> str | None:
        """A run directory that holds a checkpoint is continued (``resume``) or, only when asked
        (``resume="overwrite"``), replaced; a plain re-run never overwrites it. Returns the resume
        argument for :meth:`_resume`."""
        last = self.ckpt_dir / "last.pt"
        if resume == "overwrite":
            if self.main:
                for name in ("last.pt", "best.pt", "prev.pt", "last.nonfinite.pt"):
                    (self.ckpt_dir / name).unlink(missing_ok=True)
                for name in ("metrics.jsonl", "summary.json"):
                    (self.run_dir / name).unlink(missing_ok=True)
            barrier(self.dist)
            return None
        if resume is None and last.exists():
            raise UserError(
                f"{self.run_dir} already holds a run ({last}); continue it with --resume auto, "
                "replace it with --overwrite, or choose another --out"
            )
        if resume is None and self.main and (self.run_dir / "metrics.jsonl").exists():
            # a run killed before its first checkpoint: nothing to continue, start its log afresh
            (self.run_dir / "metrics.jsonl").unlink()
        return resume

    def close(self) -> None:
        """Release the run directory without training (a shared pass stopped before this model's turn)."""
        lock.release(self._lock)

    def log(self, line: str) -> None:
        if self.main:
            self._log(line)

    # ------------------------------------------------------------ checkpoints
    def _state(self, finished: bool = False) -> dict:
        return {
            "format": ck.FORMAT,
            "stage": self.cfg.stage,
            "backbone": self.meta.get("backbone"),
            "num_classes": self.meta.get("num_classes"),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "rng": all_gather_object(ck.rng_state(), self.dist),
            "world": self.dist.world,
            "epoch_state": self.epoch_state.to_dict() if self.epoch_state else None,
            "best": self.best,
            "finished": finished,
            "precision": self.precision,
            "config": plain(self.cfg.to_dict()),
            **({"init_stage": self.meta["init_stage"]} if self.meta.get("init_stage") else {}),
            **({"classes": list(self.meta["classes"])} if self.meta.get("classes") else {}),
        }

    def save(self, name: str = "last.pt", finished: bool = False) -> Path:
        """Write a checkpoint of weights that are finite and whose losses so far were finite. ``last.pt``
        keeps its predecessor as ``prev.pt``: if the next loss turns out non-finite, the weights of
        ``last.pt`` are the ones that produced it, and the stop puts ``prev.pt`` back (``_keep_good``)."""
        self._check_finite()
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            self._nonfinite = self._nonfinite + 1
            self._last_terms = f"non-finite weights in {bad[:3]}"
            self._check_finite()
        state = self._state(finished)  # collective (RNG gather): every rank
        path = self.ckpt_dir / name
        if self.main:
            if name == "last.pt" and path.exists():  # prev.pt = the current last.pt; last.pt never missing
                tmp = self.ckpt_dir / ".prev.pt.link.tmp"
                tmp.unlink(missing_ok=True)
                try:
                    os.link(path, tmp)
                except OSError:  # a filesystem without hard links
                    import shutil

                    shutil.copyfile(path, tmp)
                os.replace(tmp, self.ckpt_dir / "prev.pt")
                self._ckpt_steps["prev.pt"] = self._ckpt_steps.get("last.pt")
            ck.save_checkpoint(state, path)
            self._ckpt_steps[name] = self.step
        barrier(self.dist)
        return path

    def _keep_good(self) -> str:
        """At a non-finite stop: make ``last.pt`` a checkpoint whose weights gave a finite loss after it.
        A checkpoint of step c is good when the loss of step c+1, computed with its weights, was seen
        finite. Returns the sentence for the error message."""
        last, prev = self.ckpt_dir / "last.pt", self.ckpt_dir / "prev.pt"
        c = self._ckpt_steps.get("last.pt")
        if not last.exists():
            return "no checkpoint was written yet"
        if c is None:  # neither written nor resumed by this process
            return f"{last} was written before this run and is left as it was"
        if self._verified_step >= c + 1:
            return f"the last good checkpoint is {last} (step {c}, untouched)"
        os.replace(last, self.ckpt_dir / "last.nonfinite.pt")
        if prev.exists():
            os.replace(prev, last)
            self._ckpt_steps["last.pt"] = self._ckpt_steps.pop("prev.pt", None)
            return (
                f"the checkpoint written just before (step {c}) holds the weights that gave the non-finite "
                f"loss and was moved to last.nonfinite.pt; {last} is now the one before it (step "
                f"{self._ckpt_steps['last.pt'] if self._ckpt_steps['last.pt'] is not None else '?'})"
            )
        return (
            f"the only checkpoint (step {c}) holds the weights that gave the non-finite loss and was moved to "
            "last.nonfinite.pt (no good checkpoint is left: --resume auto starts afresh)"
        )

    def _resume(self, resume: str) -> None:
        path = self.ckpt_dir / "last.pt" if resume == "auto" else Path(resume)
        if resume == "auto" and not path.exists():
            self.log(f"no checkpoint in {self.ckpt_dir}; starting from scratch")
            self.metrics.truncate_after(0)  # lines of a run that left no checkpoint
            return
        state = ck.load_checkpoint(path)
        ck.expect(
            state,
            path,
            stages=(self.cfg.stage,),
            backbone=self.meta.get("backbone"),
            num_classes=self.meta.get("num_classes"),
            what="resume checkpoint",
        )
        self._check_same_objective(state, path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.batch, self.step = int(state["epoch"]), int(state["batch"]), int(state["step"])
        self._ckpt_steps = {"last.pt": self.step} if path == self.ckpt_dir / "last.pt" else {}
        self._verified_step = self.step
        self.epoch_state = EpochState.from_dict(state.get("epoch_state"))
        self.best = float(state.get("best", -1.0))
        self.finished = bool(state.get("finished"))
        rng = state.get("rng") or []
        if len(rng) == self.dist.world:
            ck.set_rng_state(rng[self.dist.rank])
        else:
            self.log(
                f"checkpoint was written by {len(rng)} process(es), this run has {self.dist.world}: "
                "RNG streams restart (not bit-exact)"
            )
        self.metrics.truncate_after(self.step)
        self.log(f"resumed from {path}: epoch {self.epoch + 1}, batch {self.batch}, step {self.step}")

    def _check_same_objective(self, state: dict, path: Path) -> None:
        """A resumed run must keep the objective it started with (checkpoints written before these
        settings existed were trained with batch means and one set of BatchNorm statistics)."""
        saved = state.get("config") or {}
        was = {
            "loss.reduction": (saved.get("loss") or {}).get("reduction", "mean"),
            "model.group_bn": (saved.get("model") or {}).get("group_bn", False),
        }
        now = {"loss.reduction": self.cfg.loss.reduction, "model.group_bn": self.cfg.model.group_bn}
        diff = [k for k in was if was[k] != now[k]]
        if diff:
            fix = " ".join(f"--set {k}={str(was[k]).lower()}" for k in diff)
            raise UserError(
                f"{path} was trained with "
                + ", ".join(f"{k}={was[k]}" for k in diff)
                + "; resuming with "
                + ", ".join(f"{k}={now[k]}" for k in diff)
                + f" would change the objective mid-run. Resume with {fix}, or start a new run "
                "directory."
            )

    # ------------------------------------------------------------ non-finite guard
    def _check_finite(self) -> None:
        flag = self._nonfinite.clone()
        flag = all_reduce_sum(flag.float(), self.dist)
        if flag.item() == 0:
            self._verified_step = self.step
        else:
            kept = self._keep_good() if self.main else ""
            raise NonFiniteLoss(
                f"{self.cfg.stage}: the loss became non-finite (NaN/inf) at or before step {self.step} "
                f"(epoch {self.epoch + 1}, last terms {self._last_terms}); training stopped and {kept}. "
                f"Try a lower --lr, --clip-grad 1.0, or --precision fp32, then --resume auto."
            )

    # ------------------------------------------------------------ one epoch
    def epoch_steps(self, progress: ProgressView) -> Generator[None, None, bool]:
        """One epoch (from ``self.batch``), yielding after every optimiser step; returns False when
        stopped early by ``max_steps``."""
        tc, task = self.cfg.train, self.task
        task.set_epoch(self.epoch, self.batch)
        self.train_model.train()
        es = self.epoch_state or EpochState()
        self.epoch_state = es
        sums: dict[str, torch.Tensor] = {
            k: torch.tensor(v, dtype=torch.float64, device=self.device) for k, v in es.sums.items()
        }
        win = {"t0": time.perf_counter(), "data": 0.0, "clips": 0, "steps": 0}
        win_sums: dict[str, torch.Tensor] = {}
        check_every = 1 if self.device.type == "cpu" else max(1, tc.log_every)
        progress.start_epoch(self.epoch, tc.epochs, self.steps_per_epoch, self.batch)
        it = iter(task.batches())
        while True:
            t_wait = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            win["data"] += time.perf_counter() - t_wait
            with torch.autocast(
                self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
            ):
                out = task.compute(self.train_model, batch)
            loss = out["loss"]
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.cfg.optim.clip_grad > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            det = {k: v.detach().double() for k, v in out.items()}
            self._nonfinite = self._nonfinite + (~torch.isfinite(det["loss"])).int()
            if self.device.type == "cpu":  # on a GPU reading them would synchronise every step
                self._last_terms = {k: round(float(v), 5) for k, v in det.items()}
            for k, v in det.items():
                sums[k] = sums.get(k, torch.zeros((), dtype=torch.float64, device=self.device)) + v
                win_sums[k] = win_sums.get(k, torch.zeros((), dtype=torch.float64, device=self.device)) + v
            if self.dist.enabled:
                es.seen.extend(task.indices(batch))
            if _STEP_DELAY:
                time.sleep(_STEP_DELAY)
            n_clips = task.clips(batch) * self.dist.world
            es.count += 1
            es.clips += n_clips
            win["clips"] += n_clips
            win["steps"] += 1
            self.step += 1
            self.batch += 1
            if self.step % check_every == 0:
                self._check_finite()
            if self.step % tc.log_every == 0 or self.batch == self.steps_per_epoch:
                self._log_window(win, win_sums, progress)
                win = {"t0": time.perf_counter(), "data": 0.0, "clips": 0, "steps": 0}
                win_sums = {}
            if tc.ckpt_every and self.step % tc.ckpt_every == 0 and self.batch < self.steps_per_epoch:
                es.sums = {k: float(v) for k, v in sums.items()}
                self.save("last.pt")
            if tc.max_steps and self.step >= tc.max_steps and self.batch < self.steps_per_epoch:
                es.sums = {k: float(v) for k, v in sums.items()}
                return False
            yield
        es.sums = {k: float(v) for k, v in sums.items()}
        return True

    def _log_window(self, win: dict, win_sums: dict, progress: ProgressView) -> None:
        dt = max(time.perf_counter() - win["t0"], 1e-9)
        n = max(win["steps"], 1)
        vals = torch.stack([v for v in win_sums.values()]) / n if win_sums else torch.zeros(0)
        vals = all_reduce_sum(vals.float(), self.dist) / self.dist.world
        terms = {k: float(v) for k, v in zip(win_sums, vals.tolist())}
        self._last_terms = terms
        lr = self.optimizer.param_groups[0]["lr"]
        rec = {
            "kind": "step",
            "epoch": self.epoch + 1,
            "step": self.step,
            "batch": self.batch,
            **terms,
            "lr": lr,
            "clips_per_s": win["clips"] / dt,
            "data_share": win["data"] / dt,
        }
        self.metrics.write(rec)
        if self.epoch_state is not None:
            self.epoch_state.seconds += dt
        info = f"{fmt_terms(terms, list(self.task.terms))} lr={lr:.2e} {rec['clips_per_s']:.1f} clips/s data {100 * rec['data_share']:.0f}%"
        progress.update(self.batch, info)

    # ------------------------------------------------------------ fit
    def fit(self) -> FitResult:
        steps = self.fit_steps()
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def fit_steps(self) -> Generator[None, None, FitResult]:
        """``fit`` as a generator: every ``next`` trains exactly one step (after the epoch ends and
        starts that come before it) or finishes, returning the :class:`FitResult`."""
        tc = self.cfg.train
        self._nonfinite = torch.zeros((), dtype=torch.int32, device=self.device)
        self._last_terms = {}
        t_start = time.perf_counter()
        clips_start = 0
        total_clips = 0
        step_seconds = 0.0  # the logged windows' time (as the epoch lines' clips/s): no validation or saving
        steps0 = self.step
        stopped = False
        history = []
        progress = ProgressView(self.main and tc.progress and self.show_progress, self.cfg.stage)
        try:
            if self.epoch >= tc.epochs:
                self.log(
                    f"{self.cfg.stage}: already finished ({self.epoch} epochs); nothing to do"
                    + (f" (to train longer, resume with --epochs larger than {self.epoch})" if self.finished else "")
                )
            elif self.finished:  # a finished run given more epochs: continue it
                self.log(f"{self.cfg.stage}: extending a finished run from {self.epoch} to {tc.epochs} epochs")
                self.finished = False
            elif tc.max_steps and self.step >= tc.max_steps:
                self.log(f"{self.cfg.stage}: already at --max-steps {tc.max_steps}; nothing to do")
                stopped = True
            while self.epoch < tc.epochs and not self.finished and not stopped:
                clips_start = self.epoch_state.clips if self.epoch_state else 0
                secs_start = self.epoch_state.seconds if self.epoch_state else 0.0
                complete = yield from self.epoch_steps(progress)
                es = self.epoch_state
                total_clips += es.clips - clips_start
                step_seconds += es.seconds - secs_start
                if not complete:
                    stopped = True
                    break
                rec = self._end_epoch(es)
                history.append(rec)
                if tc.max_steps and self.step >= tc.max_steps:
                    stopped = True
                    break
        except BaseException:
            lock.release(self._lock)
            raise
        finally:
            progress.close()
        wall_seconds = time.perf_counter() - t_start
        finished = self.epoch >= tc.epochs
        if stopped and not finished:
            self.log(f"{self.cfg.stage}: stopped after --max-steps {tc.max_steps} (step {self.step})")
        if self.step > steps0 or finished:
            self.save("last.pt", finished=finished)
        if self.main:
            from tbfast.engine.plots import plot_run

            try:
                plot_run(self.run_dir)
            except Exception as exc:  # plots are a convenience, never a failure
                self.log(f"(plots skipped: {exc})")
        self.metrics.close()
        lock.release(self._lock)
        best = self.ckpt_dir / "best.pt"
        last_loss = history[-1]["loss"] if history else None
        return FitResult(
            self.run_dir,
            self.ckpt_dir / "last.pt",
            best if best.exists() else None,
            self.epoch,
            self.step,
            step_seconds,
            total_clips,
            last_loss,
            history,
            wall_seconds,
        )

    def _end_epoch(self, es: EpochState) -> dict:
        tc = self.cfg.train
        self._check_finite()
        names = list(es.sums)
        vals = torch.tensor([es.sums[k] for k in names] + [es.count], dtype=torch.float64)
        vals = all_reduce_sum(vals.to(self.device), self.dist).cpu()
        count = max(float(vals[-1]), 1.0)
        means = {k: float(v) / count for k, v in zip(names, vals[:-1])}
        reduced = self.scheduler.epoch_end(means.get("loss", float("nan")))
        rec = {
            "kind": "epoch",
            "epoch": self.epoch + 1,
            "step": self.step,
            **means,
            "lr": self.optimizer.param_groups[0]["lr"],
            "clips": es.clips,
            "seconds": es.seconds,
            "clips_per_s": es.clips / es.seconds if es.seconds > 0 else None,
        }
        if self.dist.enabled:  # which videos each rank trained on: shards must be disjoint
            seen = all_gather_object(sorted(es.seen), self.dist)
            sets = [set(x) for x in seen]
            overlap = sum(len(x) for x in sets) - len(set().union(*sets))
            rec.update({"world": self.dist.world, "shard_videos": [len(x) for x in sets], "shard_overlap": overlap})
        val = None
        if self.validate is not None and ((self.epoch + 1) % tc.val_every == 0 or self.epoch + 1 == tc.epochs):
            val = self.validate(self.model) if self.main else None
            val = broadcast_object(val, self.dist)
            if val:
                rec.update(
                    {
                        "val_top1": val["video_top1"],
                        "val_top5": val.get("video_top5"),
                        "val_clip_top1": val.get("clip_top1"),
                    }
                )
        self.epoch += 1
        self.batch = 0
        self.epoch_state = None
        if val and val["video_top1"] > self.best:
            self.best = val["video_top1"]
            self.save("best.pt")
        if self.epoch % tc.save_every == 0 or self.epoch >= tc.epochs:
            self.save("last.pt")
        self.metrics.write(rec)
        line = (
            f"{self.cfg.stage} epoch {self.epoch}/{tc.epochs} step {self.step}: "
            f"{fmt_terms(means, list(self.task.terms))} lr={rec['lr']:.2e}"
            + (f" {rec['clips_per_s']:.1f} clips/s" if rec["clips_per_s"] else "")
            + (f" val top-1 {100 * val['video_top1']:.1f}%" if val else "")
            + (" (lr halved: plateau)" if reduced else "")
        )
        self.log(line)
        return rec
