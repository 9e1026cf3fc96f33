"""Projection head, classifier and temporal pooling (METHOD.md §1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ProjectionHead", "Classifier", "pool_time"]


def pool_time(feats: torch.Tensor) -> torch.Tensor:
    """(N, D, T') -> (N, D): mean over the unpooled time axis."""
    return feats.mean(dim=-1)


class ProjectionHead(nn.Module):
    """g: Linear(D,hidden) -> BN -> ReLU -> Linear(hidden,out,no bias) -> BN -> L2-normalise.

    Maps (..., D) -> (..., out); BatchNorm statistics are taken over all leading dims flattened,
    so the same head serves pooled features (N, D) and temporal slices (N, T', D).
    Hidden width 512 as in the TimeBalance supplement (METHOD.md §1 decision).
    """

    def __init__(self, in_dim: int, hidden: int = 512, out: int = 128):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden, bias=True)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, out, bias=False)
        self.bn2 = nn.BatchNorm1d(out)
        self.out_dim = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        h = x.reshape(-1, x.shape[-1])
        h = F.relu(self.bn1(self.fc1(h)), inplace=True)
        h = self.bn2(self.fc2(h))
        return F.normalize(h, dim=-1).reshape(*lead, self.out_dim)


class Classifier(nn.Module):
    """Pooled features (N, D) -> logits (N, C): Dropout(p) + Linear."""

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x))
