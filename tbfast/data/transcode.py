"""Transcode one video with PyAV: constant frame rate, even size, short GOP, no audio; then verify.

Run in worker processes by tbfast.data.prep. Every problem with an input becomes a
:class:`BadVideo` with a one-line reason (the report's wording).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from tbfast.data.manifest import SHORT_FRAMES

# errors writing an output that stop the whole run (the disk, not the video)
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}
CODECS = {"vp9": ("libvpx-vp9", "webm", ".webm"), "h264": ("libx264", "mp4", ".mp4")}
# what an output means; a re-run re-transcodes outputs of another version. 2: display matrix, SAR,
# colour range/matrix, measured rate and frame k = source frame current at k/fps (issue 17)
PREP_VERSION = 2


class BadVideo(Exception):
    """An input that cannot be prepared; str() is the reason shown to the user."""


@dataclass
class Settings:
    codec: str = "vp9"
    fps: float | None = None  # None = the source's average rate
    gop: int = 16
    short_side: int = 128
    threads: int = 1
    crf: int | None = None  # None = codec default below

    def key(self) -> str:
        return f"v{PREP_VERSION}|{self.codec}|{self.fps}|{self.gop}|{self.short_side}|{self.crf}"


@dataclass
class Result:
    frames: int
    fps: float
    width: int
    height: int
    src_width: int
    src_height: int
    src_frames: int
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


def out_size(w: float, h: float, short_side: int) -> tuple[int, int]:
    """Scale so the short side is ``short_side`` (aspect kept), both sides rounded to even.

    ``short_side`` 0 keeps the source size (rounded to even).
    """

    def even(x: float) -> int:
        return max(2, int(round(x / 2.0)) * 2)

    if short_side == 0:
        return even(w), even(h)
    if w <= h:
        return even(short_side), even(h * short_side / w)
    return even(w * short_side / h), even(short_side)


def _check_input(src: Path) -> None:
    if not os.path.lexists(src):
        raise BadVideo("missing: listed but not found")
    if not src.exists():
        raise BadVideo("missing: broken link")
    if src.is_dir():
        raise BadVideo("unreadable: is a folder, not a file")
    try:
        size = src.stat().st_size
        with open(src, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise BadVideo(f"unreadable: {exc.strerror or exc}") from None
    if size == 0:
        raise BadVideo("empty file (0 bytes)")


# frame rates a measured average snaps to when it is within 0.5% of one (a VFR phone clip at 29.95 -> 30000/1001)
STANDARD_RATES = [
    Fraction(24000, 1001),
    Fraction(24),
    Fraction(25),
    Fraction(30000, 1001),
    Fraction(30),
    Fraction(48),
    Fraction(50),
    Fraction(60000, 1001),
    Fraction(60),
    Fraction(12),
    Fraction(15),
    Fraction(10),
    Fraction(100),
    Fraction(120),
    Fraction(240),
]
RATE_RANGE = (1.0, 240.0)  # plausible source rates; outside it prep asks for --fps
# swscale names of the YUV matrices (AVColorSpace numbers as PyAV reports them)
MATRICES = {1: "itu709", 4: "fcc", 5: "itu601", 6: "itu601", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}
MATRIX_FLAGS = {"itu709": "bt709", "fcc": "fcc", "smpte240m": "smpte240m", "bt2020": "bt2020"}


def _declared_rate(stream) -> Fraction | None:
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if r and float(r) > 0:
            return Fraction(r).limit_denominator(1001)
    return None


@dataclass
class StreamProbe:
    """What the demuxer delivers for one video stream (no decoding): packet times and counts."""

    index: int
    times: list[float] = field(default_factory=list)  # presentation times (s) of the packets, sorted
    packets: int = 0
    discarded: int = 0  # packets an edit list tells the decoder to drop (before the edit's start)

    def gaps(self) -> list[tuple[float, float]]:
        """(time, length) of the pauses in the recording: intervals over 1 s and 10 median intervals."""
        t = self.times
        d = [b - a for a, b in zip(t, t[1:])]
        if not d:
            return []
        med = sorted(d)[len(d) // 2]
        return [(a, g) for a, g in zip(t, d) if g > max(1.0, 10 * med)]

    def rate(self) -> float | None:
        """Frames over the span of their timestamps (a pause in the recording not counted)."""
        t = self.times
        if len(t) < 2 or t[-1] <= t[0]:
            return None
        gaps = self.gaps()
        return (len(t) - 1 - len(gaps)) / (t[-1] - t[0] - sum(g for _, g in gaps))


def probe_streams(path: Path) -> dict[int, StreamProbe]:
    """Demux ``path`` once (packets only) and collect each video stream's packet timestamps."""
    import av

    out: dict[int, StreamProbe] = {}
    with av.open(str(path), metadata_errors="ignore") as c:
        streams = list(c.streams.video)
        for st in streams:
            out[st.index] = StreamProbe(st.index)
        try:
            for pkt in c.demux(*streams):
                pr = out.get(pkt.stream_index)
                if pr is None or (pkt.size == 0 and pkt.pts is None and pkt.dts is None):
                    continue  # the flush packet at the end
                pr.packets += 1
                if pkt.is_discard:
                    pr.discarded += 1
                    continue
                ts = pkt.pts if pkt.pts is not None else pkt.dts
                if ts is not None and pkt.time_base:
                    pr.times.append(float(ts * pkt.time_base))
        except av.error.FFmpegError:
            pass  # a damaged file: the times up to the damage; decoding reports it with its reason
    for pr in out.values():
        pr.times = sorted(set(pr.times))
    return out


def choose_stream(container, probes: dict[int, StreamProbe]):
    """The main video stream, as a player picks it: not a cover picture (attached_pic), not a
    one-frame thumbnail track; then the largest picture; then the most frames."""
    import av

    attached = int(av.stream.Disposition.attached_pic)

    def key(st):
        pr = probes.get(st.index) or StreamProbe(st.index)
        cc = st.codec_context
        return (
            not (int(st.disposition) & attached),
            pr.packets > 1,
            (cc.width or 0) * (cc.height or 0),
            pr.packets,
            -st.index,
        )

    return max(container.streams.video, key=key)


def choose_rate(settings: "Settings", stream, probe: StreamProbe) -> tuple[Fraction, list[str], list[str]]:
    """(output rate, flags, notes). ``--fps`` wins; otherwise the source's real average rate: the
    declared rate if the timestamps agree with it (within 1%), else the timestamps' average rate."""
    flags: list[str] = []
    notes: list[str] = []
    declared = _declared_rate(stream)
    measured = probe.rate()
    if measured:
        gaps = [b - a for a, b in zip(probe.times, probe.times[1:])]
        if max(gaps) > 1.5 * min(gaps) + 1e-3 and max(gaps) - min(gaps) > 2e-3:
            flags.append("vfr")
        for t, g in probe.gaps()[:3]:
            notes.append(f"timestamp gap of {g:.2f} s at {t - probe.times[0]:.2f} s: the frame before it is held")
    if settings.fps:
        return Fraction(settings.fps).limit_denominator(1001), flags, notes
    if measured and declared and abs(float(declared) / measured - 1) <= 0.01:
        rate = declared
    elif measured:
        standard = next((r for r in STANDARD_RATES if abs(float(r) / measured - 1) <= 0.005), None)
        rate = standard or Fraction(round(measured * 100), 100)
        flags.append("rate_from_timestamps")
        said = f"declares {float(declared):.6g} fps but its timestamps" if declared else "timestamps"
        notes.append(f"the stream {said} average {measured:.4g} fps: prepared at {float(rate):.6g} fps")
    elif declared:
        rate = declared
    else:
        rate = Fraction(25)
        notes.append("no frame rate in the source: assumed 25 fps")
    lo, hi = RATE_RANGE
    if not lo <= float(rate) <= hi:
        raise BadVideo(
            f"implausible frame rate {float(rate):.4g} fps (outside {lo:g}-{hi:g} fps); "
            "pass --fps to resample it to a rate you choose"
        )
    return rate, flags, notes


def _cfr_frames(frames_with_time, fps: Fraction, tick: float = 0.0):
    """Resample (frame, seconds-or-None) pairs to constant rate by timestamps.

    Output frame k shows the source frame current at time k/fps (the last one whose timestamp is
    at or before it, times relative to the first frame), up to one average frame after the last.
    ``tick`` is the timestamp resolution: a stored time up to half a tick (at most 0.5 ms) late
    still counts as on time. Frames without a timestamp are taken as already constant-rate.
    """
    import math

    eps = min(tick / 2, 5e-4) + 1e-9
    held, k, t0, t_prev, n = None, 0, None, None, 0
    for i, (frame, t) in enumerate(frames_with_time):
        if t is None:
            slot = i
        else:
            if t0 is None:
                t0 = t
            slot = max(0, math.ceil((t - t0 - eps) * fps))
            t_prev = t
        if held is not None:
            while k < slot:
                yield held
                k += 1
        held, n = frame, i + 1
    if held is None:
        return
    if t_prev is not None and n > 1:
        end = (t_prev - t0) * n / (n - 1)  # one average frame after the last
    else:
        end = n / float(fps) if t_prev is None else 1 / float(fps)
    last = max(k, 1, math.ceil((end - eps) * fps))
    while k < last:
        yield held
        k += 1


def display_matrix(frame) -> list[int] | None:
    """The frame's display matrix (9 int32 in FFmpeg's layout), or None."""
    import numpy as np

    for sd in frame.side_data:
        if "DISPLAYMATRIX" in str(sd.type):
            return np.frombuffer(bytes(sd), "<i4").tolist()
    return None


def orientation(matrix: list[int] | None) -> tuple[str, ...]:
    """The operations a player applies to show the stored picture upright, as FFmpeg's ``autorotate``
    does: ``()`` or a tuple of 'clock', 'cclock', 'transpose' (= cclock_flip), 'antitranspose'
    (= clock_flip), 'hflip', 'vflip'. Rotations that are not a multiple of 90 degrees are 'odd'."""
    import math

    if not matrix:
        return ()
    m = matrix
    s0, s1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if not s0 or not s1:
        return ()
    theta = round(math.degrees(math.atan2(m[1] / s1, m[0] / s0)))  # clockwise degrees to display
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return ("transpose",) if m[3] > 0 else ("clock",)
    if abs(theta - 180) < 1:
        return tuple(op for op, neg in (("hflip", m[0] < 0), ("vflip", m[4] < 0)) if neg)
    if abs(theta - 270) < 1:
        return ("antitranspose",) if m[3] < 0 else ("cclock",)
    if abs(theta) < 1:
        return ("vflip",) if m[4] < 0 else ()
    return ("odd",)


def _orient_plane(a, ops):
    import numpy as np

    for op in ops:
        if op == "clock":
            a = np.rot90(a, -1)
        elif op == "cclock":
            a = np.rot90(a, 1)
        elif op == "transpose":
            a = a.T
        elif op == "antitranspose":
            a = a[::-1, ::-1].T
        elif op == "hflip":
            a = a[:, ::-1]
        elif op == "vflip":
            a = a[::-1]
    return a


def _orient(vf, ops):
    """Apply ``ops`` to a yuv420p frame (each plane; 4:2:0 chroma turns with its luma)."""
    import av
    import numpy as np

    a = vf.to_ndarray()
    h, w = vf.height, vf.width
    y = a[:h]
    uv = a[h:].reshape(2, h // 2, w // 2)
    y, u, v = (_orient_plane(p, ops) for p in (y, uv[0], uv[1]))
    nh, nw = y.shape
    out = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(nh * 3 // 2, nw)
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(out), format="yuv420p")


def _swaps(ops) -> bool:
    return any(op in ("clock", "cclock", "transpose", "antitranspose") for op in ops)


def colour_args(frame, coded_height: int) -> tuple[dict, list[str]]:
    """swscale arguments that turn ``frame`` into limited-range BT.601 YUV, and the flags saying
    what was converted (and, for information, an HDR transfer or interlaced frames). An unspecified matrix is BT.709 for HD (720 lines and more) and BT.601
    below, as players assume."""
    fmt = frame.format.name
    full = frame.color_range == 2 or fmt.startswith("yuvj")
    flags = ["full_range"] if full and not fmt.startswith(("rgb", "bgr", "gbr", "gray")) else []
    src_cs = MATRICES.get(int(frame.colorspace))
    if src_cs is None:
        src_cs = "itu709" if coded_height >= 720 else "itu601"
    elif src_cs in MATRIX_FLAGS and not fmt.startswith(("rgb", "bgr", "gbr", "gray")):
        flags.append(f"matrix:{MATRIX_FLAGS[src_cs]}")
    trc = {16: "hdr:pq", 18: "hdr:hlg"}.get(int(frame.color_trc or 0))
    if trc:
        flags.append(trc)
    if frame.interlaced_frame:
        flags.append("interlaced")
    args = {
        "src_colorspace": src_cs,
        "dst_colorspace": "itu601",
        "src_color_range": "JPEG" if full else "MPEG",
        "dst_color_range": "MPEG",
    }
    return args, flags


def _decode(container, stream):
    tb = stream.time_base
    for frame in container.decode(stream):
        t = float(frame.pts * tb) if frame.pts is not None and tb else None
        yield frame, t


def _header_end(inp, ist) -> tuple[float | None, float | None]:
    """(start, end) of the stream in its own timeline as the header states it, or (None, None).

    A stream duration runs from the stream's start. A Matroska/WebM container's duration is the
    end time of its timeline (a stream starting at 5 s in a 9 s file lasts 4 s); other containers'
    durations run from the container's start time."""
    tb = ist.time_base
    if ist.duration and tb:
        start = float(ist.start_time * tb) if ist.start_time is not None else 0.0
        return start, start + float(ist.duration * tb)
    if inp.duration and len(inp.streams) == len(inp.streams.video):
        # a video-only container's duration is the video's (an audio track could be longer)
        start = inp.start_time / 1e6 if inp.start_time else 0.0
        if "matroska" in (inp.format.name or "") or "webm" in (inp.format.name or ""):
            return start, inp.duration / 1e6
        return start, start + inp.duration / 1e6
    return None, None


def transcode(src: str | Path, dst: str | Path, settings: Settings) -> Result:
    """Encode ``src`` to ``dst`` (a temporary name; the caller renames it) and verify it by decoding.

    What a player shows is what is prepared: the main video stream, upright (display matrix),
    at its display aspect (sample aspect ratio), in limited-range BT.601 colours, at the source's
    real average rate (or ``--fps``), resampled to constant rate by timestamps."""
    import av
    from av.video.reformatter import VideoReformatter

    src, dst = Path(src), Path(dst)
    _check_input(src)
    codec_name, fmt, _ = CODECS[settings.codec]
    try:
        probes = probe_streams(src)
        inp = av.open(str(src), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise BadVideo(f"not a video: {type(exc).__name__}: {exc.strerror or exc}") from None
    notes: list[str] = []
    flags: list[str] = []
    try:
        if not inp.streams.video:
            raise BadVideo("not a video: no video stream")
        ist = choose_stream(inp, probes)
        probe = probes.get(ist.index) or StreamProbe(ist.index)
        if len(inp.streams.video) > 1:
            flags.append(f"video_stream:{ist.index}")
            notes.append(
                f"{len(inp.streams.video)} video streams: prepared stream {ist.index} "
                f"({ist.codec_context.width}x{ist.codec_context.height}, {probe.packets} frames)"
            )
        ist.thread_type = "AUTO"
        ist.thread_count = max(1, settings.threads)
        src_w, src_h = ist.codec_context.width, ist.codec_context.height
        if not src_w or not src_h:
            raise BadVideo("not a video: no frame size in the stream")
        if src_w % 2 or src_h % 2:
            notes.append(f"odd frame size {src_w}x{src_h}: scaled to even dimensions")
        rate, rate_flags, rate_notes = choose_rate(settings, ist, probe)
        flags += rate_flags
        notes += rate_notes
        header_frames = int(ist.frames or 0)
        h_start, h_end = _header_end(inp, ist)
        tick = float(ist.time_base) if ist.time_base else 0.0
        sar = ist.codec_context.sample_aspect_ratio or ist.sample_aspect_ratio
        sar = Fraction(sar) if sar and float(sar) > 0 else Fraction(1)
        if sar != 1:
            flags.append(f"sar:{sar.numerator}/{sar.denominator}")

        out: Any = None  # the output container and stream, opened at the first frame
        ost: Any = None
        ops: tuple[str, ...] = ()
        w = h = cw = ch = 0
        n_src = n_out = 0
        t_first = t_last = None
        try:

            def counted():
                nonlocal n_src, t_first, t_last
                for item in _decode(inp, ist):
                    n_src += 1
                    if item[1] is not None:
                        t_first = item[1] if t_first is None else t_first
                        t_last = item[1]
                    yield item

            colour_flags: set[str] = set()
            # one swscale context for the video: PyAV's frame.reformat sets up a new one for every
            # frame (the area filter's set-up cost about as much as encoding the frame), on this
            # thread (PyAV's default starts a pool of swscale threads per context; prep's
            # parallelism is its worker processes); the bytes are the same
            # (tests/test_prep_conformance.py)
            reformatter = VideoReformatter()
            for frame in _cfr_frames(counted(), rate, tick=tick):
                if out is None:  # the first frame tells the orientation
                    ops = orientation(display_matrix(frame))
                    if ops == ("odd",):
                        notes.append(
                            f"display matrix rotates by {frame.rotation} degrees (not a multiple of 90): ignored"
                        )
                        ops = ()
                    if ops:
                        flags.append("orient:" + "+".join(ops))
                    disp_w, disp_h = float(src_w * sar), float(src_h)
                    if _swaps(ops):
                        disp_w, disp_h = disp_h, disp_w
                    w, h = out_size(disp_w, disp_h, settings.short_side)
                    cw, ch = (h, w) if _swaps(ops) else (w, h)
                    out, ost = _open_output(dst, fmt, codec_name, rate, w, h, settings)
                cargs, cflags = colour_args(frame, src_h)
                colour_flags.update(cflags)
                vf = reformatter.reformat(
                    frame, width=cw, height=ch, format="yuv420p", interpolation="AREA", threads=1, **cargs
                )
                if ops:
                    vf = _orient(vf, ops)
                vf.pts = n_out
                vf.time_base = Fraction(1) / rate
                # a keyframe every `gop` frames exactly: the loaders seek to them
                vf.pict_type = (
                    av.video.frame.PictureType.I if n_out % settings.gop == 0 else av.video.frame.PictureType.NONE
                )
                out.mux(ost.encode(vf))
                n_out += 1
            flags += sorted(colour_flags)
            if any(f.startswith("hdr:") for f in colour_flags):
                notes.append(
                    "HDR transfer (PQ/HLG): the matrix and range are converted, the picture is not "
                    "tone-mapped (it looks flat)"
                )
            if "interlaced" in colour_flags:
                notes.append("interlaced frames: prepared as they are (not deinterlaced)")
        except av.error.FFmpegError as exc:
            if exc.errno in WRITE_ERRNOS:  # writing the output failed (a full disk): not the video's fault
                raise OSError(exc.errno, os.strerror(exc.errno), str(dst)) from None
            raise BadVideo(
                f"truncated or corrupt: decoding stopped after {n_src} frames "
                f"({type(exc).__name__}: {exc.strerror or exc})"
            ) from None
        finally:
            if out is not None:
                try:
                    if n_out:
                        out.mux(ost.encode(None))
                finally:
                    out.close()
        if n_out == 0:
            raise BadVideo("no frames could be decoded (truncated or corrupt)")
        # truncation: like with like. A header duration spans the stream's own timeline (an edit
        # list, a start offset or a gap is inside it); only without one, the header's frame count,
        # which counts every stored frame including those an edit list drops.
        if h_end is not None and t_first is not None and t_last is not None:
            dt = 1.0 / (probe.rate() or float(_declared_rate(ist) or rate))
            start = min(t_first, h_start if h_start is not None else t_first)
            expected, covered = h_end - start, t_last + dt - start
            if expected > 0 and covered < 0.9 * expected - 0.05:
                raise BadVideo(f"truncated: decoded {covered:.2f} s of the {expected:.2f} s its header lists")
        elif header_frames > 0 and n_src + probe.discarded < 0.9 * header_frames:
            raise BadVideo(f"truncated: decoded {n_src} of the {header_frames} frames its header lists")
    finally:
        inp.close()

    frames, (vw, vh) = verify(dst)
    if frames != n_out or (vw, vh) != (w, h):
        raise BadVideo(f"verification failed: wrote {n_out} frames {w}x{h}, read back {frames} frames {vw}x{vh}")
    if frames < SHORT_FRAMES:
        notes.append(f"short: {frames} frames < {SHORT_FRAMES} (kept; loaders pad it)")
    return Result(frames, float(rate), w, h, src_w, src_h, n_src, notes, flags)


def _open_output(dst: Path, fmt: str, codec_name: str, rate: Fraction, w: int, h: int, settings: "Settings"):
    import av

    # bitexact: no random segment UID or encoder string, so identical inputs give identical files
    out = av.open(str(dst), mode="w", format=fmt, options={"fflags": "+bitexact"})
    ost: Any = out.add_stream(codec_name, rate=rate)  # a video stream (PyAV's stubs: a union)
    ost.width, ost.height, ost.pix_fmt = w, h, "yuv420p"
    cc = ost.codec_context
    cc.gop_size = settings.gop
    cc.thread_count = max(1, settings.threads)
    cc.color_range = 1  # limited ("MPEG") range
    cc.colorspace = 6  # BT.601 (SMPTE 170M) matrix
    if settings.codec == "vp9":
        crf = 32 if settings.crf is None else settings.crf
        cc.bit_rate = 0
        cc.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "row-mt": "1",
            "crf": str(crf),
            "lag-in-frames": "0",
            "auto-alt-ref": "0",
            "keyint_min": str(settings.gop),
            "tile-columns": "0",
        }
    else:
        crf = 23 if settings.crf is None else settings.crf
        cc.options = {
            "preset": "veryfast",
            "crf": str(crf),
            "bf": "0",
            "sc_threshold": "0",
            "keyint_min": str(settings.gop),
            "forced-idr": "1",
        }
    return out, ost


def verify(path: str | Path) -> tuple[int, tuple[int, int]]:
    """Decode every frame of ``path``; return (frame count, (width, height))."""
    import av

    try:
        with av.open(str(path)) as c:
            st = c.streams.video[0]
            st.thread_type = "AUTO"
            n = sum(1 for _ in c.decode(st))
            return n, (st.codec_context.width, st.codec_context.height)
    except (av.error.FFmpegError, IndexError) as exc:
        raise BadVideo(f"verification failed: output does not decode ({exc})") from None


def keyframe_indices(path: str | Path) -> list[int]:
    """0-based indices of the key frames of ``path`` (for tests and checks)."""
    import av

    with av.open(str(path)) as c:
        return [i for i, p in enumerate(c.demux(c.streams.video[0])) if p.size and p.is_keyframe]
