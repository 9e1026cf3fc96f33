"""tbfast.models: backbones returning (N, D, T') features, projection head, classifier."""
from tbfast.models.backbones import BACKBONES, build_backbone
from tbfast.models.heads import Classifier, ProjectionHead, pool_time

__all__ = ["BACKBONES", "build_backbone", "Classifier", "ProjectionHead", "pool_time"]
