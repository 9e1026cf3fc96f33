"""The clip views' colour on the host: uint8 RGB -> float32 in [0, 1] through one 3x3 matrix + offset.

The host path (``resize "host"``: a host decoder on the CPU, docs/PIPELINES.md) cuts, crops and
resizes every clip view to uint8 in the reader threads; this module then writes each view's
colour jitter (:func:`tbfast.data.plans.colour_affine`, the map of DALI's ``color_twist`` /
``brightness_contrast``) and the clamp to [0, 1] straight into the batch's output buffer, in one
pass over the pixels. Unaugmented views take the identity (x / 255).

The kernel is compiled by numba (``nogil``: the reader threads run it side by side); one ssl
video's 160 output frames at 112 px take about 1 ms of CPU, against ~30 ms for DALI's colour
operators and float hand-over. Without numba a numpy version computes the same (to float32
rounding) several times slower.
"""

from __future__ import annotations

import numpy as np

_KERNEL = None


def affine_row(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(12,) float32: the 3x3 matrix ``a`` (applied to rgb in [0, 1]) premultiplied by 1/255, then ``b``."""
    row = np.empty(12, np.float32)
    row[:9] = (np.asarray(a, np.float64) / 255.0).reshape(-1)
    row[9:] = np.asarray(b, np.float64)
    return row


IDENTITY = affine_row(np.eye(3), np.zeros(3))


def _numpy_colour(src: np.ndarray, row: np.ndarray, out: np.ndarray) -> None:
    x = src.reshape(-1, 3).astype(np.float32)
    y = x @ row[:9].reshape(3, 3).T + row[9:]
    np.clip(y, 0.0, 1.0, out=y)
    out.reshape(-1, 3)[:] = y


def _compile():
    import numba

    @numba.njit("void(uint8[::1], float32[::1], float32[::1])", nogil=True, cache=True)
    def colour(src, m, out):  # pragma: no cover - compiled
        a00, a01, a02, a10, a11, a12, a20, a21, a22 = m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8]
        b0, b1, b2 = m[9], m[10], m[11]
        zero, one = np.float32(0.0), np.float32(1.0)
        for i in range(src.shape[0] // 3):  # (one flat loop over the pixels: it vectorises)
            r = np.float32(src[3 * i])
            g = np.float32(src[3 * i + 1])
            b = np.float32(src[3 * i + 2])
            out[3 * i] = min(max(a00 * r + a01 * g + a02 * b + b0, zero), one)
            out[3 * i + 1] = min(max(a10 * r + a11 * g + a12 * b + b1, zero), one)
            out[3 * i + 2] = min(max(a20 * r + a21 * g + a22 * b + b2, zero), one)

    return colour


def kernel():
    """The compiled colour kernel, or None without numba (compiled on first use, cached on disk by numba)."""
    global _KERNEL
    if _KERNEL is None:
        try:
            _KERNEL = _compile()
        except ImportError:
            _KERNEL = False
    return _KERNEL or None


def colour_into(src: np.ndarray, row: np.ndarray, out: np.ndarray, *, use_numba: bool = True) -> None:
    """``out`` (float32, C-contiguous, shape of ``src``) = clamp(A @ src / 255 + b, 0, 1) per pixel,
    ``src`` uint8 (..., 3) C-contiguous, ``row`` from :func:`affine_row`."""
    if src.shape != out.shape or src.dtype != np.uint8 or out.dtype != np.float32 or src.shape[-1] != 3:
        raise ValueError(
            f"colour_into: uint8 source {src.shape} {src.dtype} and float32 output {out.shape} {out.dtype}"
        )
    if not (src.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError("colour_into: source and output must be C-contiguous")
    k = kernel() if use_numba else None
    if k is None:
        _numpy_colour(src, row, out)
    else:
        k(src.reshape(-1), np.ascontiguousarray(row, dtype=np.float32), out.reshape(-1))
