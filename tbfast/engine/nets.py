"""The two trainable networks of the recipe, built from ``tbfast.models``.

``SSLNet`` = backbone + projection head (state keys ``backbone.*``, ``head.*``);
``ClassNet`` = backbone + classifier (``backbone.*``, ``classifier.*``). Fine-tuning and the
student take the ``backbone.*`` part of any checkpoint; the projection head is dropped.
"""
from __future__ import annotations

import torch
from torch import nn

from tbfast.engine.config import ModelConfig


class SSLNet(nn.Module):
    def __init__(self, mc: ModelConfig):
        super().__init__()
        from tbfast.models import ProjectionHead, build_backbone

        self.backbone = build_backbone(mc.backbone, tclr=mc.tclr)
        self.head = ProjectionHead(self.backbone.feature_dim, hidden=mc.proj_hidden, out=mc.proj_out)

    def forward(self, long: torch.Tensor, short: torch.Tensor, slices: bool = True):
        """long (2B,3,T,S,S) = [view 0; view 1]; short (8B,3,T,S,S) = [view 0 (b*4+j); view 1].

        Returns z_long (B,2,d), z_short (B,2,4,d), z_long_slices (B,2,4,d) or None.
        One backbone pass over all 10B clips (one DDP forward, one BatchNorm batch).
        """
        from tbfast.models import pool_time

        n_long = long.shape[0]
        b = n_long // 2
        feats = self.backbone(torch.cat([long, short]))  # (10B, D, T')
        z = self.head(pool_time(feats))
        z_long = z[:n_long].view(2, b, -1).transpose(0, 1)
        z_short = z[n_long:].view(2, b, 4, -1).transpose(0, 1)
        z_slices = None
        if slices:
            zs = self.head(feats[:n_long].transpose(1, 2))  # (2B, T', d)
            z_slices = zs.view(2, b, zs.shape[1], -1).transpose(0, 1)
        return z_long, z_short, z_slices

    @torch.no_grad()
    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        """(N,3,T,S,S) -> (N,d) unit vectors (eval mode expected)."""
        from tbfast.models import pool_time

        return self.head(pool_time(self.backbone(clips)))


class ClassNet(nn.Module):
    def __init__(self, mc: ModelConfig, num_classes: int):
        super().__init__()
        from tbfast.models import Classifier, build_backbone

        self.backbone = build_backbone(mc.backbone, tclr=mc.tclr)
        self.classifier = Classifier(self.backbone.feature_dim, num_classes, dropout=mc.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from tbfast.models import pool_time

        return self.classifier(pool_time(self.backbone(x)))


def backbone_state(state: dict) -> dict:
    return {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}


def load_backbone(net: nn.Module, ckpt: dict, path) -> None:
    from tbfast.errors import UserError

    state = backbone_state(ckpt["model"])
    missing, unexpected = net.backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{path}: backbone weights do not fit ({len(missing)} missing, {len(unexpected)} "
                        f"unexpected, e.g. {(missing or unexpected)[:3]}); was it trained with another "
                        "backbone or --set model.tclr=...?")
