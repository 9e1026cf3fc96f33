"""Decode-only ceiling: the same DALI decoder on the same planned frames, nothing else."""

from __future__ import annotations

import time

import numpy as np


def decode_only_rate(loader, max_videos: int | None = None, warmup_batches: int = 1) -> dict:
    """Decode exactly the frames ``loader`` would decode for its current epoch; no cut, no augment.

    Returns videos, frames, wall and CPU seconds, measured after one untimed batch and
    ``warmup_batches`` more.
    """
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    gpu = loader.device == "gpu"

    @pipeline_def(
        batch_size=loader.batch_size,
        num_threads=loader.num_threads,
        device_id=loader.device_id if gpu else None,  # type: ignore[arg-type]  # None: CPU only
        prefetch_queue_depth=1,
    )
    def decode_only():
        enc = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
        fr = fn.external_source(name="decode", dtype=types.INT32, ndim=1)
        return fn.decoders.video(enc, frames=fr, device="mixed" if gpu else "cpu", pad_mode="edge")

    pipe = decode_only()
    pipe.build()
    batches = loader.batches()

    def submit(b):
        pipe.feed_input("encoded", [loader.read_encoded(i) for i in b])
        pipe.feed_input("decode", [loader.plan(i).decode.astype(np.int32) for i in b])
        pipe.schedule_run()

    # one untimed batch so that the decoder allocates outside the timed window, then the warm-ups
    submit(batches[0])
    pipe.outputs()
    timed = batches[warmup_batches:]
    if max_videos is not None:
        timed = timed[: max(1, -(-max_videos // loader.batch_size))]
    for b in batches[:warmup_batches]:
        submit(b)
        pipe.outputs()
    videos = frames = 0
    t0, c0 = time.perf_counter(), time.process_time()
    submit(timed[0])
    for n, b in enumerate(timed):
        (out,) = pipe.outputs()
        if n + 1 < len(timed):
            submit(timed[n + 1])
        videos += len(b)
        frames += sum(int(s[0]) for s in out.shape())
    return {
        "videos": videos,
        "frames": frames,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
    }
