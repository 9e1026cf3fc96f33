"""Decoders that run on the host and hand DALI decoded frames instead of encoded bytes.

On the CPU, DALI's video decoder costs about 1.6x the CPU time of FFmpeg driven by torchcodec for
the same frames (``benchmarks/RESULTS.md``). With ``decoder="pyav"`` or ``"torchcodec"`` the loader
decodes each sample's planned frames (the plan's ``decode``: sorted, clamped to the last frame) in
its reader threads from the bytes it has already checked against the manifest. On the CPU the
reader threads then also cut, crop and resize the clip views (:func:`crop_resize`) and colour them
(:mod:`dali_pipelines.host_pixels`): the host path, no DALI; with ``resize="dali"`` (or on a GPU)
the DALI graph starts from the decoded frames (``GraphLayout.decoder``).

Frames are those of FFmpeg's own YUV -> RGB conversion (libswscale); DALI's decoder converts
differently, by about 1-2 levels of 255 on average (measured: ``tests/test_dali_pipelines.py``), so
the same plan gives the same frames and crops with slightly different pixel values.
"""

from __future__ import annotations

import io
import os
import threading

import numpy as np

HOST_DECODERS = ("pyav", "torchcodec")
DECODERS = ("dali", *HOST_DECODERS)


class HostDecodeError(Exception):
    """A host decoder failed on a video (the loader turns it into a CorruptVideoError naming it)."""


def available(decoder: str) -> str | None:
    """None when ``decoder`` can be used here, else why not (one line, with what to do)."""
    if decoder == "dali":
        return None
    if decoder == "pyav":
        try:
            import av  # noqa: F401
        except ImportError as exc:
            return f"PyAV is not installed ({exc}); pip install av"
        return None
    if decoder == "torchcodec":
        try:
            from torchcodec.decoders import VideoDecoder  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - a missing FFmpeg library raises RuntimeError/OSError
            return (
                f"torchcodec cannot be used ({type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]}); "
                "pip install torchcodec, and install FFmpeg's shared libraries (Debian/Ubuntu: "
                "apt-get install ffmpeg)"
            )
        return None
    return f"unknown decoder {decoder!r}; choose from {', '.join(DECODERS)}"


def decode_frames(decoder: str, data: np.ndarray, wanted: np.ndarray, num_frames: int) -> np.ndarray:
    """(len(wanted), H, W, 3) uint8 RGB frames ``wanted`` (sorted, ascending) of the encoded video
    ``data``; frames past the end of the stream repeat its last frame (as DALI's ``pad_mode="edge"``)."""
    try:
        if decoder == "pyav":  # (contiguous: the loader hands the memory to DALI without a copy)
            return np.ascontiguousarray(_pyav(data, wanted))
        if decoder == "torchcodec":
            return np.ascontiguousarray(_torchcodec(data, wanted, num_frames))
    except HostDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "this file is broken"
        raise HostDecodeError(f"{decoder}: {type(exc).__name__}: {str(exc).strip()[:200]}") from exc
    raise ValueError(f"unknown host decoder {decoder!r}; choose from {', '.join(HOST_DECODERS)}")


def _pad(got: list[np.ndarray], wanted_count: int, decoder: str) -> np.ndarray:
    if not got:
        raise HostDecodeError(f"{decoder}: no frame could be decoded")
    while len(got) < wanted_count:
        got.append(got[-1])
    return np.stack(got)


_LOCAL = threading.local()


def pyav_rgb24(frame) -> np.ndarray:
    """(H, W, 3) uint8 of a PyAV frame, as ``frame.to_ndarray(format="rgb24")`` (the same swscale
    conversion, bit for bit: tests/test_dali_pipelines.py) but through one reformatter per thread
    and process: PyAV's ``to_ndarray`` sets up a new swscale context for every frame, which cost
    more than decoding the frame (0.28 ms per 170x128 frame against 0.18 for the decoding). The
    context runs on the calling thread (``threads=1``; PyAV's default starts a pool of swscale
    threads per context, which a forked DataLoader worker would inherit without its threads and
    wait on forever), and a forked process makes its own."""
    pid = os.getpid()
    cached = _LOCAL.__dict__.get("reformatter")
    if cached is None or cached[0] != pid:
        from av.video.reformatter import VideoReformatter

        cached = _LOCAL.reformatter = (pid, VideoReformatter())
    return cached[1].reformat(frame, format="rgb24", threads=1).to_ndarray()


def _pyav(data: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Seek to the key frame at or before the first wanted frame, decode to the last one."""
    import av

    want = wanted.tolist()
    first, last = want[0], want[-1]
    with av.open(io.BytesIO(data.tobytes()), mode="r") as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1  # the loader's reader threads are the parallelism
        rate = stream.average_rate or stream.guessed_rate
        tb = stream.time_base
        if rate is None or tb is None:
            raise HostDecodeError("pyav: the stream has no frame rate or time base")
        fps, tbf = float(rate), float(tb)
        start_pts = stream.start_time or 0
        if first > 0:
            container.seek(start_pts + int(first / fps / tbf), stream=stream, backward=True, any_frame=False)
        got: list[np.ndarray] = []
        j = 0  # next position in ``want``
        count = None  # frame index of the decoder's position when the stream has no timestamps
        for frame in container.decode(stream):
            if frame.pts is not None:
                i = int(round((frame.pts - start_pts) * tbf * fps))
            else:
                if first > 0:
                    raise HostDecodeError("pyav: frames without timestamps after a seek")
                count = 0 if count is None else count + 1
                i = count
            if i < want[j]:
                continue
            rgb = pyav_rgb24(frame)
            while j < len(want) and want[j] <= i:  # a frame missing from the stream repeats the next
                got.append(rgb)
                j += 1
            if j == len(want) or i >= last:
                break
    return _pad(got, len(want), "pyav")


def _torchcodec(data: np.ndarray, wanted: np.ndarray, num_frames: int) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder

    dec = VideoDecoder(data.tobytes(), seek_mode="exact", num_ffmpeg_threads=1, dimension_order="NHWC")
    n = dec.metadata.num_frames or num_frames
    idx = [min(int(i), n - 1) for i in wanted.tolist()]
    return dec.get_frames_at(indices=idx).data.numpy()


RESIZES = ("auto", "dali", "host")


def resolve_resize(resize: str, decoder: str, device: str) -> str:
    """ "dali" or "host": where the clip views are cut, resized and coloured. "host" (the reader
    threads: torch's uint8 bilinear kernel and host_pixels' colour kernel, no DALI) needs a host
    decoder on the CPU; "auto" picks it there (about 4x cheaper than the DALI graph on an ssl
    video) and "dali" elsewhere."""
    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {', '.join(RESIZES)}, not {resize!r}")
    host_ok = decoder in HOST_DECODERS and device == "cpu"
    if resize == "host" and not host_ok:
        raise ValueError(
            "resize 'host' cuts and resizes host-decoded frames on the CPU: it needs decoder pyav or torchcodec "
            f"and device cpu (got decoder {decoder!r}, device {device!r}); use resize 'auto' or 'dali'"
        )
    if resize == "auto":
        return "host" if host_ok else "dali"
    return resize


def _window(a: float, b: float, limit: int) -> tuple[int, int]:
    """The plan's fractional crop edges rounded to whole pixels inside [0, limit], at least 1 wide."""
    lo = min(max(int(round(a)), 0), limit - 1)
    hi = min(max(int(round(b)), lo + 1), limit)
    return lo, hi


def crop_window(roi, height: int, width: int) -> tuple[int, int, int, int, bool]:
    """(ya, yb, xa, xb, flip): the plan's window ``roi`` = (y0, x0, y1, x1) in whole pixels of a
    ``height`` x ``width`` frame (x0 > x1: flipped horizontally, as DALI's resize reads it)."""
    y0, x0, y1, x1 = (float(v) for v in roi)
    flip = x0 > x1
    if flip:
        x0, x1 = x1, x0
    ya, yb = _window(y0, y1, height)
    xa, xb = _window(x0, x1, width)
    return ya, yb, xa, xb, flip


def crop_resize(frames: np.ndarray, order: np.ndarray, roi, size: int) -> np.ndarray:
    """(len(order), size, size, 3) uint8: frames ``order`` of the decoded (N, H, W, 3) ``frames``,
    cropped to ``roi`` = (y0, x0, y1, x1) (x0 > x1: flipped horizontally, as DALI's resize reads it)
    and resized with torch's bilinear uint8 kernel (no antialiasing, as the graph's ``fn.resize``).
    The crop edges are rounded to whole pixels: against DALI's resize of the fractional window the
    pixels differ by a fraction of a source pixel's shift (docs/PIPELINES.md, "Decoders"). A flipped
    view is mirrored while the crop is copied (one pass; bilinear sampling is symmetric, so this
    equals flipping the resized crop: tests/test_dali_pipelines.py)."""
    import torch
    import torch.nn.functional as F

    ya, yb, xa, xb, flip = crop_window(roi, frames.shape[1], frames.shape[2])
    o = np.asarray(order).tolist()
    first = o[0]
    if o == list(range(first, first + len(o))):  # consecutive frames: a view, one copy below
        crop = torch.from_numpy(frames)[first : first + len(o), ya:yb, xa:xb]
    else:  # numpy's fancy index copies just the window
        crop = torch.from_numpy(frames[o, ya:yb, xa:xb])
    crop = crop.flip(2) if flip else crop.contiguous()  # (T, h, w, 3), contiguous
    x = crop.permute(0, 3, 1, 2)  # NCHW, channels-last memory
    out = F.interpolate(x, size=(size, size), mode="bilinear", antialias=False, align_corners=False)
    return np.ascontiguousarray(out.permute(0, 2, 3, 1).numpy())  # (T, S, S, 3); no copy: out is channels-last
