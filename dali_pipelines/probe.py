"""Decode one video alone (batch of 1) to tell whether it is the broken one of a failed batch."""

from __future__ import annotations

import numpy as np


def probe_decode(encoded: np.ndarray, frames: np.ndarray) -> str | None:
    """None if DALI's CPU decoder returns ``frames`` of ``encoded``, else the error's first line."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    @pipeline_def(batch_size=1, num_threads=1, device_id=None, prefetch_queue_depth=1)  # type: ignore[call-overload]  # DALI's stubs lack device_id=None (CPU only)
    def one():
        enc = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
        fr = fn.external_source(name="decode", dtype=types.INT32, ndim=1)
        return fn.decoders.video(enc, frames=fr)

    try:
        pipe = one()
        pipe.build()
        pipe.feed_input("encoded", [encoded])
        pipe.feed_input("decode", [np.asarray(frames, np.int32)])
        (out,) = pipe.run()
        if out.shape()[0][0] != len(frames):
            return f"decoded {out.shape()[0][0]} of {len(frames)} frames"
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "this file is broken"
        return dali_reason(exc)
    return None


def dali_reason(exc: BaseException) -> str:
    """The informative line of a DALI pipeline error (not "Critical error in pipeline")."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith(("Assert on", "Error", "[")) and "pipeline definition" not in ln:
            if ln.startswith("Assert on") and "failed:" in ln:
                return ln.split("failed:", 1)[1].strip()
    for ln in lines:
        if "Critical error" not in ln and "no longer valid" not in ln and not ln.startswith("File "):
            return ln
    return type(exc).__name__
