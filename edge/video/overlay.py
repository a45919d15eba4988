"""The burned-in capture-time stamp of the synthetic source (pure numpy): draw it, read it back.

The stamp is machine-readable so a receiver can measure glass-to-glass latency from decoded frames: a
grid of 16 x 5 black/white blocks across the top of the luma plane carries 80 bits, the 64-bit capture
time in milliseconds since the Unix epoch (big-endian) followed by its CRC-16/CCITT (so a block smeared
by the codec is detected, never misread). Blocks are sized in fractions of the frame, so the stamp
survives the quality ladder's downscaling and a VP8/H.264 round trip at the lowest rung's bitrate.
Human-readable seven-segment digits of the same time are drawn below the grid for people watching.
"""

from __future__ import annotations

import binascii
from typing import Any, Final

import numpy as np
import numpy.typing as npt

Luma = npt.NDArray[np.uint8]

COLUMNS: Final = 16
ROWS: Final = 5
BITS: Final = COLUMNS * ROWS  # 64 time bits + 16 CRC bits
# The grid fills the top 5/24 of the frame height (20 px rows at 480 lines) and the full width.
_ROW_FRACTION: Final = 1 / 24
_BLACK: Final = 16  # ITU-R BT.601 studio-swing luma black and white
_WHITE: Final = 235
_THRESHOLD: Final = (_BLACK + _WHITE) // 2

# Seven-segment layout: segments a..g lit per digit.
_SEGMENTS: Final = {
    "0": "abcdef", "1": "bc", "2": "abdeg", "3": "abcdg", "4": "bcfg", "5": "acdfg", "6": "acdefg", "7": "abc",
    "8": "abcdefg", "9": "abcdfg",
}


def _bits(ms: int) -> list[int]:
    if not 0 <= ms < 1 << 64:
        raise ValueError(f"a stamp carries an unsigned 64-bit time, got {ms}")
    payload = ms.to_bytes(8, "big")
    crc = binascii.crc_hqx(payload, 0xFFFF)  # CRC-16/CCITT-FALSE
    word = int.from_bytes(payload + crc.to_bytes(2, "big"), "big")
    return [(word >> (BITS - 1 - i)) & 1 for i in range(BITS)]


def _cell(height: int, width: int, index: int) -> tuple[slice, slice]:
    """The pixel rectangle of block `index` (row-major) in a frame of this size."""
    row, column = divmod(index, COLUMNS)
    row_height = height * _ROW_FRACTION
    top, bottom = round(row * row_height), round((row + 1) * row_height)
    left, right = round(column * width / COLUMNS), round((column + 1) * width / COLUMNS)
    return slice(top, bottom), slice(left, right)


def stamp_height(height: int) -> int:
    """Rows of a frame of `height` lines covered by the block grid."""
    return round(ROWS * height * _ROW_FRACTION)


def draw_stamp(luma: Luma, ms: int) -> None:
    """Burn the capture time `ms` (ms since the epoch) into the top of a luma plane, in place."""
    height, width = luma.shape
    if height < 48 or width < COLUMNS * 4:
        raise ValueError(f"a {width}x{height} frame is too small for the stamp")
    for index, bit in enumerate(_bits(ms)):
        rows, columns = _cell(height, width, index)
        luma[rows, columns] = _WHITE if bit else _BLACK


def read_stamp(luma: npt.NDArray[Any]) -> int | None:
    """The capture time stamped on a (decoded, possibly rescaled) luma plane; None if absent or damaged."""
    height, width = luma.shape
    if height < 48 or width < COLUMNS * 4:
        return None
    word = 0
    for index in range(BITS):
        rows, columns = _cell(height, width, index)
        # Sample the inner half of the block: its edges blur under compression and scaling.
        r0, r1, c0, c1 = rows.start, rows.stop, columns.start, columns.stop
        dr, dc = (r1 - r0) // 4, (c1 - c0) // 4
        level = float(luma[r0 + dr:r1 - dr, c0 + dc:c1 - dc].mean())
        word = word << 1 | (1 if level > _THRESHOLD else 0)
    raw = word.to_bytes(10, "big")
    payload, crc = raw[:8], int.from_bytes(raw[8:], "big")
    if binascii.crc_hqx(payload, 0xFFFF) != crc:
        return None
    return int.from_bytes(payload, "big")


def draw_digits(luma: Luma, text: str, *, top: int, left: int, digit_height: int) -> None:
    """Draw decimal digits (seven-segment, white) for humans; characters other than 0-9 are skipped."""
    h = digit_height
    w = max(3, h // 2)
    t = max(1, h // 8)  # stroke thickness
    half = h // 2
    segments = {
        "a": (0, t, 0, w), "b": (0, half, w - t, w), "c": (half, h, w - t, w), "d": (h - t, h, 0, w),
        "e": (half, h, 0, t), "f": (0, half, 0, t), "g": (half - t // 2, half - t // 2 + t, 0, w),
    }
    x = left
    for char in text:
        for name in _SEGMENTS.get(char, ""):
            r0, r1, c0, c1 = segments[name]
            luma[top + r0:top + r1, x + c0:x + c1] = _WHITE
        x += w + max(2, w // 2)


def digits_width(count: int, digit_height: int) -> int:
    """Pixels `count` digits take at `digit_height`."""
    w = max(3, digit_height // 2)
    return count * (w + max(2, w // 2))
