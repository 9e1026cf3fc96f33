"""DALI clip pipelines: the only package of tbfast that imports nvidia.dali.

``build_loader(prepared, mode, ...)`` is the entry point (docs/ARCHITECTURE.md "Loaders").
"""

from __future__ import annotations


def build_loader(prepared, mode, **kwargs):
    """See :func:`dali_pipelines.loader.build_loader` (imported lazily: DALI loads only when used)."""
    from dali_pipelines.loader import build_loader as _build

    return _build(prepared, mode, **kwargs)


__all__ = ["build_loader"]
