"""tbfast: fast semi-supervised video action recognition with TimeBalance (CVPR 2023)."""

__version__ = "0.1.0"
