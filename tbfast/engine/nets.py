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
        from tbfast.models import ProjectionHead, build_backbone, convert_group_bn

        self.backbone = convert_group_bn(build_backbone(mc.backbone, tclr=mc.tclr, width=mc.width))
        self.head = convert_group_bn(ProjectionHead(self.backbone.feature_dim, hidden=mc.proj_hidden, out=mc.proj_out))

    def forward(self, long: torch.Tensor, short: torch.Tensor, slices: bool = True, bn: str = "mixed"):
        """long (2B,3,T,S,S) = [view 0; view 1]; short (8B,3,T,S,S) = [view 0 (b*4+j); view 1].

        Returns z_long (B,2,d), z_short (B,2,4,d), z_long_slices (B,2,4,d) or None.
        ``bn`` (METHOD.md §4, BatchNorm statistics):
        * ``mixed``: one backbone pass over all 10B clips with one set of BatchNorm statistics;
        * ``calls``: the reference's sequence of calls, each normalised by its own statistics:
          the backbone on G (view 0), G' (view 1), L_0..L_3 of view 0, of view 1 (10 calls of B
          clips); the head on G's pooled feature, then each of G's 4 temporal slices, the same for
          G', then each short clip's pooled feature (18 calls of B rows). The slices always go
          through the head, as in the reference, so its running statistics match;
        * ``pass``: the same numbers from one backbone pass over all 10B clips whose BatchNorms take
          statistics per group of B clips in that order (``tbfast.models.group_bn``); the head
          as in ``calls``.
        """
        from tbfast.models import grouped_call, pool_time

        n_long = long.shape[0]
        b = n_long // 2
        if bn == "mixed":
            feats = self.backbone(torch.cat([long, short]))  # (10B, D, T')
            z = self.head(pool_time(feats))
            z_long = z[:n_long].view(2, b, -1).transpose(0, 1)
            z_short = z[n_long:].view(2, b, 4, -1).transpose(0, 1)
            z_slices = None
            if slices:
                zs = self.head(feats[:n_long].transpose(1, 2))  # (2B, T', d)
                z_slices = zs.view(2, b, zs.shape[1], -1).transpose(0, 1)
            return z_long, z_short, z_slices
        # group order of the reference: G, G', then (view a, clip j) with the B videos of a group together
        nt = short.shape[0] // n_long
        short_g = short.view(2, b, nt, *short.shape[1:]).transpose(1, 2).reshape(short.shape)
        feats = grouped_call(self.backbone, self.backbone, torch.cat([long, short_g]), [b] * (2 + 2 * nt), bn)
        pooled = pool_time(feats)  # (10B, D)
        tp = feats.shape[-1]
        # head rows: [G pooled, G slice 0..T'-1, G' pooled, G' slices, short groups], B rows each
        lg = torch.cat(
            [pooled[:n_long].view(2, 1, b, -1), feats[:n_long].permute(2, 0, 1).reshape(tp, 2, b, -1).transpose(0, 1)],
            dim=1,
        )  # (2, 1 + T', B, D)
        rows = torch.cat([lg.reshape(-1, pooled.shape[1]), pooled[n_long:]])
        # the head is called per group in both executions: it is cheap, and one matmul over all rows
        # rounds differently from the reference's per-call ones, which BatchNorm over a few rows
        # (B = 2 to 4 per rank) amplifies; so the head is bit-identical to the reference's calls
        z = grouped_call(self.head, self.head, rows, [b] * (2 * (1 + tp) + 2 * nt), "calls")
        zg = z[: 2 * (1 + tp) * b].view(2, 1 + tp, b, -1)
        z_long = zg[:, 0].transpose(0, 1)  # (B, 2, d)
        z_slices = zg[:, 1:].permute(2, 0, 1, 3) if slices else None  # (B, 2, T', d)
        z_short = z[2 * (1 + tp) * b :].view(2, nt, b, -1).permute(2, 0, 1, 3)  # (B, 2, nt, d)
        return z_long, z_short, z_slices

    @torch.no_grad()
    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        """(N,3,T,S,S) -> (N,d) unit vectors (eval mode expected)."""
        from tbfast.models import pool_time

        return self.head(pool_time(self.backbone(clips)))


class ClassNet(nn.Module):
    def __init__(self, mc: ModelConfig, num_classes: int):
        super().__init__()
        from tbfast.models import Classifier, build_backbone, convert_group_bn

        self.backbone = convert_group_bn(build_backbone(mc.backbone, tclr=mc.tclr, width=mc.width))
        self.classifier = Classifier(self.backbone.feature_dim, num_classes, dropout=mc.dropout)

    def forward(self, x: torch.Tensor, groups: list[int] | None = None, bn: str = "mixed") -> torch.Tensor:
        """x (N,3,T,S,S) -> logits (N,C). ``groups`` (sizes adding up to N) with ``bn`` ``calls`` or
        ``pass``: BatchNorm statistics per group, as separate calls of the network would take them
        (the student: labeled, then unlabeled clips)."""
        from tbfast.models import grouped_call, pool_time

        sizes = None if bn == "mixed" else groups
        return self.classifier(pool_time(grouped_call(self.backbone, self.backbone, x, sizes, bn)))


def backbone_state(state: dict) -> dict:
    return {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}


def load_backbone(net: nn.Module, ckpt: dict, path) -> None:
    from tbfast.errors import UserError

    state = backbone_state(ckpt["model"])
    own = net.backbone.state_dict()
    wrong = [k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise UserError(
            f"{path}: backbone weights have other shapes than this run's model ({len(wrong)} tensors, e.g. "
            f"{k} {tuple(state[k].shape)} against {tuple(own[k].shape)}); was it trained with another "
            "model.width or backbone? Use the preset it was trained with (or --set model.width=...)"
        )
    missing, unexpected = net.backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(
            f"{path}: backbone weights do not fit ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, e.g. {(missing or unexpected)[:3]}); was it trained with another "
            "backbone or --set model.tclr=...?"
        )


def load_external_backbone(net: nn.Module, obj, path) -> str:
    """Load a state dict that is not a tbfast checkpoint (torchvision's ``r3d_18``, pytorchvideo's
    ``slow_r50``, or such a dict under ``state_dict``/``model``, with or without DDP's ``module.``)
    (``obj``, read from ``path``) into ``net.backbone``, key by key: a tensor is loaded where the name and shape match; the
    classification head and anything else of another shape or name is skipped; backbone tensors the
    file lacks keep their initialisation. Returns a one-line report; refuses a file that fits less
    than half of the backbone."""
    from tbfast.errors import UserError

    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise UserError(f"{path} is neither a tbfast checkpoint nor a state dict of tensors")
    src = {}
    for k, v in obj.items():
        for prefix in ("module.", "backbone."):
            k = k[len(prefix) :] if k.startswith(prefix) else k
        src[k] = v
    own = net.backbone.state_dict()
    fit = {k: v for k, v in src.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    weights = [k for k in own if not k.endswith("num_batches_tracked")]
    loaded = [k for k in weights if k in fit]
    if len(loaded) < len(weights) / 2:
        bad = [k for k in src if k in own and k not in fit][:3]
        raise UserError(
            f"{path}: only {len(loaded)} of the backbone's {len(weights)} tensors match it by name "
            f"and shape{f' (other shapes: {bad})' if bad else ''}; is it a state dict of the same "
            "architecture (torchvision r3d_18 for r3d18, pytorchvideo slow_r50 for r50)?"
        )
    net.backbone.load_state_dict({**own, **fit})
    new = [k for k in weights if k not in fit]
    skipped = [k for k in src if k not in fit]
    return (
        f"{path}: loaded {len(loaded)} of the backbone's {len(weights)} tensors"
        + (
            f"; {len(new)} kept their initialisation ({', '.join(new[:3])}{', ...' if len(new) > 3 else ''})"
            if new
            else ""
        )
        + (
            f"; {len(skipped)} of the file's tensors skipped ({', '.join(skipped[:3])}"
            f"{', ...' if len(skipped) > 3 else ''})"
            if skipped
            else ""
        )
    )
