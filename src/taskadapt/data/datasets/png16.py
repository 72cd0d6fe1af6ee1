"""A small PNG decoder for the files Pillow cannot read exactly: 16-bit colour / grey+alpha PNGs.

Pillow keeps only the high byte of each sample of a 16-bit RGB(A) PNG (it has no 16-bit
multi-channel mode), which turns SYNTHIA's ``GT/LABELS`` class ids (stored in the low byte of the
first channel) into zeros. This module decodes such files exactly with ``zlib`` + NumPy.

Supported: bit depth 8 or 16; colour types grey (0), RGB (2), grey+alpha (4), RGBA (6); no
interlacing. All five PNG row filters are undone. Rows using only None/Sub/Up are undone row by
row (each row vectorised); Average and Paeth depend on the already-decoded left neighbour, so
files using them are undone along anti-diagonals ("wavefront", H + W - 1 vectorised steps).

Errors (not a PNG, corrupt or truncated data, unsupported variant) raise ``ValueError`` with a
short reason; dataset readers turn that into a :class:`~taskadapt.errors.DatasetError`.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import NamedTuple

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


class PngHeader(NamedTuple):
    width: int
    height: int
    bit_depth: int
    color_type: int
    interlace: int

    @property
    def channels(self) -> int:
        return _CHANNELS.get(self.color_type, 1)


def read_header(path: str | os.PathLike) -> PngHeader:
    """Parse the IHDR chunk (the first 33 bytes) of a PNG file."""
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 33 or head[:8] != SIGNATURE or head[12:16] != b"IHDR":
        raise ValueError("not a PNG file (bad signature or missing IHDR)")
    width, height, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", head[16:29])
    return PngHeader(width, height, depth, ctype, interlace)


def needs_png16(path: str | os.PathLike) -> bool:
    """True for 16-bit PNGs with more than one channel (the ones Pillow truncates to 8 bits)."""
    h = read_header(path)
    return h.bit_depth == 16 and h.color_type in (2, 4, 6)


def _chunks(data: bytes):
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        crc = data[pos + 8 + length : pos + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise ValueError("file is truncated (chunk runs past the end)")
        if zlib.crc32(ctype + body) != struct.unpack(">I", crc)[0]:
            raise ValueError(f"CRC mismatch in {ctype.decode('latin-1')} chunk (corrupt file)")
        yield ctype, body
        pos += 12 + length
        if ctype == b"IEND":
            return
    raise ValueError("file is truncated (no IEND chunk)")


def decode_png(path: str | os.PathLike) -> np.ndarray:
    """Decode a PNG to its raw samples: (H, W, C) ``uint16`` (16-bit) or ``uint8`` (8-bit)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != SIGNATURE:
        raise ValueError("not a PNG file (bad signature)")
    header = None
    idat = []
    for ctype, body in _chunks(data):
        if ctype == b"IHDR":
            if len(body) != 13:
                raise ValueError("malformed IHDR chunk")
            width, height, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", body)
            header = PngHeader(width, height, depth, ctype, interlace)
        elif ctype == b"IDAT":
            idat.append(body)
    if header is None:
        raise ValueError("missing IHDR chunk")
    if header.color_type not in _CHANNELS or header.bit_depth not in (8, 16):
        raise ValueError(f"unsupported PNG variant (colour type {header.color_type}, "
                         f"bit depth {header.bit_depth})")
    if header.interlace:
        raise ValueError("interlaced PNGs are not supported")
    h, w, c = header.height, header.width, header.channels
    bpp = c * header.bit_depth // 8  # bytes per pixel, the filters' "left neighbour" distance
    stride = w * bpp
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as err:
        raise ValueError(f"corrupt image data ({err})") from None
    if len(raw) != h * (stride + 1):
        raise ValueError(f"image data has {len(raw)} bytes, expected {h * (stride + 1)} (truncated?)")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(h, stride + 1)
    filters = rows[:, 0]
    if filters.max(initial=0) > 4:
        raise ValueError(f"unknown row filter type {int(filters.max())} (corrupt file)")
    body = rows[:, 1:].reshape(h, w, bpp)
    simple = bool(np.all(filters <= 2))  # None/Sub/Up only: no left-to-right dependency across rows
    pix = _unfilter_rows(body, filters) if simple else _unfilter_wavefront(body, filters)
    if header.bit_depth == 16:
        return pix.reshape(h, w * bpp).view(">u2").reshape(h, w, c).astype(np.uint16)
    return pix.reshape(h, w, c)


def _unfilter_rows(body: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """Undo None (0), Sub (1) and Up (2) filters row by row. body: (H, W, bpp) uint8."""
    out = np.empty_like(body)
    prev = np.zeros_like(body[0])
    for r, f in enumerate(filters):
        line = body[r]
        if f == 0:
            cur = line
        elif f == 1:  # each byte adds the decoded byte one pixel to the left: a running sum mod 256
            cur = np.cumsum(line, axis=0, dtype=np.uint8)
        else:  # f == 2: adds the decoded byte above (uint8 arithmetic wraps mod 256)
            cur = line + prev
        out[r] = cur
        prev = out[r]
    return out


def _unfilter_wavefront(body: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """Undo any mix of the five filters. Pixel (r, x) depends on (r, x-1), (r-1, x) and (r-1, x-1),
    so all pixels on one anti-diagonal d = r + x can be decoded together. The image is stored
    skewed, ``diag[d, r]`` = pixel (r, d - r), so every neighbour of a diagonal is a plain slice of
    the previous one or two diagonals (no gather per step)."""
    h, w, bpp = body.shape
    nd = h + w - 1
    rows = np.arange(h)[:, None]
    diag_of = rows + np.arange(w)[None, :]  # (h, w) diagonal index of each pixel
    src = np.zeros((nd, h + 1, bpp), dtype=np.int16)
    src[diag_of, rows + 1] = body  # row slot 0 is the zero row "above the image"
    rec = np.zeros((nd + 2, h + 1, bpp), dtype=np.int16)  # rec[d + 2]: decoded diagonal d
    # one 0/1 weight per row and filter type, so the predictor is a sum instead of a select
    onehot = (filters[:, None] == np.arange(1, 5)[None, :]).astype(np.int16)[:, :, None]  # (h, 4, 1)
    for d in range(nd):
        lo, hi = max(0, d - w + 1), min(h, d + 1)
        a = rec[d + 1, lo + 1 : hi + 1]  # left (r, x-1): previous diagonal, same row
        b = rec[d + 1, lo:hi]  # up (r-1, x): previous diagonal, row above
        c = rec[d, lo:hi]  # up-left (r-1, x-1): two diagonals back, row above
        m = onehot[lo:hi]
        bc, ac = b - c, a - c  # Paeth: p = a + b - c, |p-a| = |b-c|, |p-b| = |a-c|, |p-c| = |bc+ac|
        pa, pb, pc = np.abs(bc), np.abs(ac), np.abs(bc + ac)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        pred = m[:, 0] * a + m[:, 1] * b + m[:, 2] * ((a + b) >> 1) + m[:, 3] * paeth
        rec[d + 2, lo + 1 : hi + 1] = (src[d, lo + 1 : hi + 1] + pred) & 0xFF
    return rec[diag_of + 2, rows + 1].astype(np.uint8)
