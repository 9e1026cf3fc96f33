"""Small test videos with real-world properties, generated with PyAV at test time.

Every frame carries its own index as a marker, so a prepared frame can be traced to the source
moment it shows. The *display* picture (what a player shows) is::

    +-----------+-----------+   rows 0..H/2: 8 bit blocks (2 rows x 4), bit b of the index at
    | b0 b1 b2 b3             |   row b // 4, column b % 4; bit 7 is the parity of bits 0..6
    | b4 b5 b6 b7             |   (0 = dark 30, 1 = light 225)
    +-----------+-----------+
    |   red     |  dark grey |   rows H/2..H: RED patch on the left, DARK patch on the right
    +-----------+-----------+

A file stores the picture the way the property under test asks (rotated under a display matrix,
squeezed under a sample aspect ratio, full-range YUV, ...), so the prepared video is right only
if it shows the display picture again: marker readable (orientation), patches where they belong
(orientation, flips), the right colours (range, matrix) and the display aspect (SAR).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

RED = (198, 40, 38)
DARK = (18, 18, 18)
BIT = (30, 225)


def display_frame(j: int, w: int = 64, h: int = 48) -> np.ndarray:
    """The display picture of frame ``j`` (0 <= j < 128), uint8 HxWx3."""
    assert 0 <= j < 128
    img = np.zeros((h, w, 3), np.uint8)
    bits = [(j >> b) & 1 for b in range(7)]
    bits.append(sum(bits) % 2)
    bh, bw = h // 4, w // 4
    for b, v in enumerate(bits):
        r, c = b // 4, b % 4
        img[r * bh : (r + 1) * bh, c * bw : (c + 1) * bw] = BIT[v]
    img[h // 2 :, : w // 2] = RED
    img[h // 2 :, w // 2 :] = DARK
    return img


def _center(a: np.ndarray, r0: float, r1: float, c0: float, c1: float) -> np.ndarray:
    """Mean colour of the middle half of the region [r0, r1) x [c0, c1) (fractions of the frame)."""
    h, w = a.shape[:2]
    rr0, rr1 = r0 + (r1 - r0) / 4, r1 - (r1 - r0) / 4
    cc0, cc1 = c0 + (c1 - c0) / 4, c1 - (c1 - c0) / 4
    return (
        a[
            int(round(rr0 * h)) : max(int(round(rr1 * h)), int(round(rr0 * h)) + 1),
            int(round(cc0 * w)) : max(int(round(cc1 * w)), int(round(cc0 * w)) + 1),
        ]
        .reshape(-1, 3)
        .mean(0)
    )


def read_frame(a: np.ndarray) -> tuple[int | None, np.ndarray, np.ndarray]:
    """(index or None if the marker is unreadable, mean RED patch colour, mean DARK patch colour)."""
    bits = []
    for b in range(8):
        r, c = b // 4, b % 4
        v = _center(a, r / 4, (r + 1) / 4, c / 4, (c + 1) / 4).mean()
        bits.append(1 if v > 127 else 0)
    j = sum(v << b for b, v in enumerate(bits[:7]))
    ok = sum(bits[:7]) % 2 == bits[7]
    return (j if ok else None), _center(a, 0.5, 1.0, 0.0, 0.5), _center(a, 0.5, 1.0, 0.5, 1.0)


def coded_from_display(
    d: np.ndarray, rotation: int = 0, hflip: bool = False, vflip: bool = False, sar: Fraction = Fraction(1)
) -> np.ndarray:
    """The stored picture that a player shows as ``d``: it rotates the stored picture ``rotation``
    degrees counter-clockwise, then mirrors it (``hflip``/``vflip``), then stretches it by ``sar``."""
    c = d
    if sar != 1:  # stored width = display width / sar (nearest neighbour: the blocks are large)
        w = int(round(d.shape[1] / sar / 2)) * 2
        c = c[:, np.minimum((np.arange(w) * d.shape[1] / w).astype(int), d.shape[1] - 1)]
    if vflip:
        c = c[::-1]
    if hflip:
        c = c[:, ::-1]
    return np.ascontiguousarray(np.rot90(c, -(rotation // 90)))


def write_video(
    path: Path,
    n: int = 48,
    *,
    w: int = 64,
    h: int = 48,
    fmt: str | None = None,
    codec: str = "libx264",
    rate: Fraction | int = 25,
    times: list[float] | None = None,
    time_base: Fraction | None = None,
    rotation: int = 0,
    hflip: bool = False,
    vflip: bool = False,
    sar: Fraction = Fraction(1),
    pix_fmt: str = "yuv420p",
    full_range: bool = False,
    colorspace: str | None = None,
    thumbnail_first: bool = False,
    start: float = 0.0,
    first: int = 0,
    options: dict | None = None,
) -> Path:
    """Write ``n`` marked frames (indices ``first``.. ``first+n-1``) with the properties asked.

    ``times`` (seconds, relative) gives variable frame times; ``start`` shifts every timestamp;
    ``thumbnail_first`` puts a one-frame, small video stream before the real one.
    """
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(rate)
    tb = time_base or Fraction(1, 90000)
    times = times if times is not None else [i / rate for i in range(n)]
    with av.open(str(path), "w", format=fmt, options={"fflags": "+bitexact"}) as c:
        if thumbnail_first:
            th = c.add_stream("mjpeg" if codec == "mjpeg" else codec, rate=1)
            th.width, th.height, th.pix_fmt = 16, 16, "yuvj420p" if codec == "mjpeg" else "yuv420p"
        st = c.add_stream(codec, rate=rate)
        coded0 = coded_from_display(display_frame(first, w, h), rotation, hflip, vflip, sar)
        st.height, st.width = coded0.shape[:2]
        st.pix_fmt = pix_fmt
        st.time_base = tb
        cc = st.codec_context
        cc.time_base = tb
        if options:
            cc.options = options
        if sar != 1:
            cc.sample_aspect_ratio = sar
        if full_range:
            cc.color_range = 2
        if colorspace:
            cc.colorspace = {"bt709": 1, "bt601": 6, "bt2020": 9}[colorspace]
        if rotation or hflip or vflip:
            st.set_display_rotation(rotation, hflip=hflip, vflip=vflip)
        if thumbnail_first:
            f = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 200, np.uint8), format="rgb24")
            f = f.reformat(format=th.pix_fmt)
            f.pts = 0
            for p in th.encode(f):
                c.mux(p)
            for p in th.encode(None):
                c.mux(p)
        for i in range(n):
            img = coded_from_display(display_frame(first + i, w, h), rotation, hflip, vflip, sar)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            kw = {}
            if full_range:
                kw["dst_color_range"] = 2
            if colorspace:
                kw["dst_colorspace"] = {"bt709": "itu709", "bt601": "itu601", "bt2020": "bt2020"}[colorspace]
            f = f.reformat(format=pix_fmt, **kw)
            if full_range:
                f.color_range = 2
            f.pts = int(round((times[i] + start) / tb))
            f.time_base = tb
            for p in st.encode(f):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)
    return path
