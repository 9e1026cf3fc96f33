"""Learning-rate schedule of METHOD.md §6: linear warmup, then halve on a plateau.

Warmup is per optimiser step from ``warmup_start`` x lr to lr over ``warmup_epochs`` epochs
(the reference warms up only during epoch 0, METHOD.md §9). After warmup the epoch's mean
training loss is monitored; ``patience`` epochs without a relative improvement of
``threshold`` multiply the lr by ``factor``.
"""

from __future__ import annotations

import math

import torch


class WarmupPlateau:
    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        base_lr: float,
        steps_per_epoch: int,
        warmup_epochs: float = 10.0,
        warmup_start: float = 0.01,
        patience: int = 5,
        factor: float = 0.5,
        threshold: float = 1e-4,
        min_lr: float = 1e-7,
    ):
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.warmup_steps = max(0, int(round(warmup_epochs * steps_per_epoch)))
        self.warmup_start = warmup_start
        self.patience = patience
        self.factor = factor
        self.threshold = threshold
        self.min_lr = min_lr
        self.scale = 1.0  # product of plateau reductions
        self.best = math.inf
        self.bad_epochs = 0
        self.step_count = 0
        self._apply()

    def lr(self) -> float:
        warm = 1.0
        if self.step_count < self.warmup_steps:
            warm = self.warmup_start + (1.0 - self.warmup_start) * self.step_count / self.warmup_steps
        return max(self.base_lr * warm * self.scale, self.min_lr if self.step_count >= self.warmup_steps else 0.0)

    def _apply(self) -> None:
        lr = self.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self) -> None:
        """After each optimiser step."""
        self.step_count += 1
        self._apply()

    def epoch_end(self, monitored: float) -> bool:
        """After each epoch with its mean loss; returns True when the lr was reduced."""
        if self.step_count < self.warmup_steps or not math.isfinite(monitored):
            return False
        if monitored < self.best * (1.0 - self.threshold) if self.best > 0 else monitored < self.best:
            self.best = monitored
            self.bad_epochs = 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.scale *= self.factor
            self.bad_epochs = 0
            self._apply()
            return True
        return False

    def state_dict(self) -> dict:
        return {
            "scale": self.scale,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "step_count": self.step_count,
            "warmup_steps": self.warmup_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        self.scale = float(state["scale"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self.step_count = int(state["step_count"])
        self.warmup_steps = int(state["warmup_steps"])
        self._apply()
