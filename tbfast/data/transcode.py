"""Transcode one video with PyAV: constant frame rate, even size, short GOP, no audio; then verify.

Run in worker processes by tbfast.data.prep. Every problem with an input becomes a
:class:`BadVideo` with a one-line reason (the report's wording).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

CODECS = {"vp9": ("libvpx-vp9", "webm", ".webm"), "h264": ("libx264", "mp4", ".mp4")}
SHORT_FRAMES = 64


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
        return f"{self.codec}|{self.fps}|{self.gop}|{self.short_side}|{self.crf}"


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


def out_size(w: int, h: int, short_side: int) -> tuple[int, int]:
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


def _rate(stream) -> Fraction | None:
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if r and float(r) > 0:
            return Fraction(r).limit_denominator(1001)
    return None


def _cfr_frames(frames_with_time, fps: Fraction):
    """Resample (frame, seconds-or-None) pairs to constant rate by timestamps (like ffmpeg's fps filter).

    Output frame k shows the last source frame whose time rounds to slot <= k; frames without a
    timestamp are taken as already constant-rate.
    """
    held, k, t0, last_slot = None, 0, None, -1
    for i, (frame, t) in enumerate(frames_with_time):
        if t is None:
            slot = i
        else:
            if t0 is None:
                t0 = t
            slot = int(round((t - t0) * fps))
        if held is not None:
            while k < slot:
                yield held
                k += 1
        held, last_slot = frame, max(last_slot, slot)
    if held is not None:
        while k <= last_slot:
            yield held
            k += 1


def _decode(container, stream):
    tb = stream.time_base
    for frame in container.decode(stream):
        t = float(frame.pts * tb) if frame.pts is not None and tb else None
        yield frame, t


def transcode(src: str | Path, dst: str | Path, settings: Settings) -> Result:
    """Encode ``src`` to ``dst`` (a temporary name; the caller renames it) and verify it by decoding."""
    import av

    src, dst = Path(src), Path(dst)
    _check_input(src)
    codec_name, fmt, _ = CODECS[settings.codec]
    try:
        inp = av.open(str(src), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise BadVideo(f"not a video: {type(exc).__name__}: {exc.strerror or exc}") from None
    notes: list[str] = []
    try:
        if not inp.streams.video:
            raise BadVideo("not a video: no video stream")
        ist = inp.streams.video[0]
        ist.thread_type = "AUTO"
        ist.thread_count = max(1, settings.threads)
        src_w, src_h = ist.codec_context.width, ist.codec_context.height
        if not src_w or not src_h:
            raise BadVideo("not a video: no frame size in the stream")
        if src_w % 2 or src_h % 2:
            notes.append(f"odd frame size {src_w}x{src_h}: scaled to even dimensions")
        src_rate = _rate(ist)
        if settings.fps:
            rate = Fraction(settings.fps).limit_denominator(1001)
        elif src_rate:
            rate = src_rate
        else:
            rate = Fraction(25)
            notes.append("no frame rate in the source: assumed 25 fps")
        header_frames = int(ist.frames or 0)
        header_seconds = 0.0  # for containers without a frame count (e.g. Matroska)
        if ist.duration and ist.time_base:
            header_seconds = float(ist.duration * ist.time_base)
        elif inp.duration and len(inp.streams) == len(inp.streams.video):
            # a video-only container's duration is the video's (an audio track could be longer)
            header_seconds = inp.duration / 1e6
        w, h = out_size(src_w, src_h, settings.short_side)

        # bitexact: no random segment UID or encoder string, so identical inputs give identical files
        out = av.open(str(dst), mode="w", format=fmt, options={"fflags": "+bitexact"})
        try:
            ost = out.add_stream(codec_name, rate=rate)
            ost.width, ost.height, ost.pix_fmt = w, h, "yuv420p"
            cc = ost.codec_context
            cc.gop_size = settings.gop
            cc.thread_count = max(1, settings.threads)
            if settings.codec == "vp9":
                crf = 32 if settings.crf is None else settings.crf
                cc.bit_rate = 0
                cc.options = {"deadline": "realtime", "cpu-used": "8", "row-mt": "1", "crf": str(crf),
                              "lag-in-frames": "0", "auto-alt-ref": "0", "keyint_min": str(settings.gop),
                              "tile-columns": "0"}
            else:
                crf = 23 if settings.crf is None else settings.crf
                cc.options = {"preset": "veryfast", "crf": str(crf), "bf": "0", "sc_threshold": "0",
                              "keyint_min": str(settings.gop), "forced-idr": "1"}
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
                for frame in _cfr_frames(counted(), rate):
                    vf = frame.reformat(width=w, height=h, format="yuv420p", interpolation="AREA")
                    vf.pts = n_out
                    vf.time_base = Fraction(1) / rate
                    # a keyframe every `gop` frames exactly: the loaders seek to them
                    vf.pict_type = av.video.frame.PictureType.I if n_out % settings.gop == 0 else av.video.frame.PictureType.NONE
                    out.mux(ost.encode(vf))
                    n_out += 1
            except av.error.FFmpegError as exc:
                raise BadVideo(f"truncated or corrupt: decoding stopped after {n_src} frames "
                               f"({type(exc).__name__}: {exc.strerror or exc})") from None
            if n_out == 0:
                raise BadVideo("no frames could be decoded (truncated or corrupt)")
            out.mux(ost.encode(None))
        finally:
            out.close()
        if header_frames > 0 and n_src < 0.9 * header_frames:
            raise BadVideo(f"truncated: decoded {n_src} of the {header_frames} frames its header lists")
        if not header_frames and header_seconds > 0 and t_last is not None:
            covered = t_last - t_first + 1.0 / float(src_rate or rate)
            if covered < 0.9 * header_seconds - 0.05:
                raise BadVideo(f"truncated: decoded {covered:.2f} s of the {header_seconds:.2f} s its header lists")
    finally:
        inp.close()

    frames, (vw, vh) = verify(dst)
    if frames != n_out or (vw, vh) != (w, h):
        raise BadVideo(f"verification failed: wrote {n_out} frames {w}x{h}, read back {frames} frames {vw}x{vh}")
    if frames < SHORT_FRAMES:
        notes.append(f"short: {frames} frames < {SHORT_FRAMES} (kept; loaders pad it)")
    return Result(frames, float(rate), w, h, src_w, src_h, n_src, notes)


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
