"""A small, valid PNG that looks like a QR code (finder squares, data modules derived from the
content's hash). Not scannable: the simulator's users "scan" through ``/_sim/actions/scan``."""

from __future__ import annotations

import hashlib
import struct
import zlib

SIZE = 25  # modules
SCALE = 6  # pixels per module
BORDER = 4  # quiet zone, modules


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _modules(content: str) -> list[list[bool]]:
    bits = "".join(
        f"{b:08b}" for i in range(8) for b in hashlib.sha256(f"{i}:{content}".encode()).digest()
    )
    grid = [[bits[(r * SIZE + c) % len(bits)] == "1" for c in range(SIZE)] for r in range(SIZE)]
    for top, left in ((0, 0), (0, SIZE - 7), (SIZE - 7, 0)):
        for r in range(-1, 8):
            for c in range(-1, 8):
                rr, cc = top + r, left + c
                if 0 <= rr < SIZE and 0 <= cc < SIZE:
                    edge = r in (0, 6) or c in (0, 6)
                    core = 2 <= r <= 4 and 2 <= c <= 4
                    inside = 0 <= r <= 6 and 0 <= c <= 6
                    grid[rr][cc] = inside and (edge or core)
    return grid


def qr_png(content: str) -> bytes:
    grid = _modules(content)
    side = (SIZE + 2 * BORDER) * SCALE
    rows = []
    for y in range(side):
        r = y // SCALE - BORDER
        line = bytearray([0])  # filter type: none
        for x in range(side):
            c = x // SCALE - BORDER
            dark = 0 <= r < SIZE and 0 <= c < SIZE and grid[r][c]
            line.append(0 if dark else 255)
        rows.append(bytes(line))
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + _chunk(b"IEND", b"")
    )
