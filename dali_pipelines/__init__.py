"""DALI clip pipelines: the only package of tbfast that imports nvidia.dali."""
