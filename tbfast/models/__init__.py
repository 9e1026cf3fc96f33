"""tbfast.models: backbones returning (N, D, T') features, projection head, classifier."""

from tbfast.models.backbones import BACKBONES, build_backbone
from tbfast.models.group_bn import (
    BN_EXECS,
    GroupedBatchNorm,
    bn_groups,
    convert_group_bn,
    grouped_call,
    set_sync_bn,
    sync_bn_paused,
)
from tbfast.models.heads import Classifier, ProjectionHead, pool_time

__all__ = [
    "BACKBONES",
    "build_backbone",
    "Classifier",
    "ProjectionHead",
    "pool_time",
    "BN_EXECS",
    "GroupedBatchNorm",
    "bn_groups",
    "convert_group_bn",
    "grouped_call",
    "set_sync_bn",
    "sync_bn_paused",
]
