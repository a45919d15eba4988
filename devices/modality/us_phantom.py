"""A synthetic abdominal ultrasound cine loop: a sector scan of liver with moving speckle.

The scene is computed on a polar (beam x depth) grid as a real scanner does: tissue echogenicity
times a Rayleigh-distributed speckle envelope that moves with breathing and slowly decorrelates,
then log-compressed and scan-converted to the display. A pulsating vessel, a cyst with posterior
acoustic enhancement and the diaphragm give a viewer something that moves; in colour mode a colour
Doppler box paints arterial flow red and venous flow blue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

HALF_ANGLE_DEG = 37.5  # a 75 degree curvilinear abdominal probe sector
DEPTH_MM = 160.0
DYNAMIC_RANGE_DB = 50.0
BREATH_PERIOD_S = 4.0
HEART_PERIOD_S = 0.85
_BEAMS = 160
_SAMPLES = 420


@dataclass(frozen=True)
class SectorGeometry:
    """Where the sector sits in the frame, for the US Region Calibration module (PS3.3 C.8.5.5)."""

    apex_row: int
    apex_column: int
    mm_per_pixel: float
    min_row: int
    max_row: int
    min_column: int
    max_column: int


@dataclass(frozen=True)
class CineLoop:
    """Frames (uint8, grey (n, rows, cols) or RGB (n, rows, cols, 3)) and their sector geometry."""

    frames: NDArray[np.uint8]
    geometry: SectorGeometry
    color_box: tuple[int, int, int, int] | None  # min_row, max_row, min_column, max_column


def _geometry(rows: int, columns: int) -> SectorGeometry:
    apex_row = round(rows * 0.04)
    depth_px = rows - apex_row - round(rows * 0.04)
    half = math.radians(HALF_ANGLE_DEG)
    half_width = min(columns / 2 - 2, depth_px * math.sin(half))
    return SectorGeometry(
        apex_row=apex_row,
        apex_column=columns // 2,
        mm_per_pixel=DEPTH_MM / depth_px,
        min_row=apex_row,
        max_row=apex_row + depth_px,
        min_column=round(columns / 2 - half_width),
        max_column=round(columns / 2 + half_width),
    )


def _scan_conversion(rows: int, columns: int, g: SectorGeometry) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
    """For each display pixel: the flat index of its polar sample, and whether it lies in the sector."""
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float64)
    dy = yy - g.apex_row
    dx = xx - g.apex_column
    radius = np.hypot(dx, dy) * g.mm_per_pixel
    theta = np.arctan2(dx, dy)
    half = math.radians(HALF_ANGLE_DEG)
    inside = (radius < DEPTH_MM) & (np.abs(theta) <= half) & (dy >= 0)
    beam = np.clip(np.rint((theta + half) / (2 * half) * (_BEAMS - 1)), 0, _BEAMS - 1).astype(np.intp)
    sample = np.clip(np.rint(radius / DEPTH_MM * (_SAMPLES - 1)), 0, _SAMPLES - 1).astype(np.intp)
    return beam * _SAMPLES + sample, inside


def _polar_coordinates() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Lateral x and depth z in mm of every polar sample (beam-major)."""
    half = math.radians(HALF_ANGLE_DEG)
    theta = np.linspace(-half, half, _BEAMS)[:, None]
    radius = np.linspace(0.0, DEPTH_MM, _SAMPLES)[None, :]
    return radius * np.sin(theta), radius * np.cos(theta)


def _echogenicity(x: NDArray[np.float64], z: NDArray[np.float64], t: float) -> NDArray[np.float64]:
    """Backscatter amplitude of the scene at time t (seconds), tissue moving with breathing."""
    z = z - 5.0 * math.sin(2 * math.pi * t / BREATH_PERIOD_S)
    echo = np.full(x.shape, 1.0)
    echo[z < 12.0] = 0.55  # subcutaneous fat and muscle: darker
    capsule = 14.0 + 0.004 * x * x
    echo += 2.5 * np.exp(-(((z - capsule) / 1.2) ** 2))  # liver capsule: a bright curved line
    diaphragm = 138.0 - 0.003 * x * x
    echo += 3.0 * np.exp(-(((z - diaphragm) / 2.0) ** 2))
    echo[z > diaphragm + 3.0] *= 0.35
    beat = 1.0 + 0.1 * math.sin(2 * math.pi * t / HEART_PERIOD_S)
    artery = np.hypot(x - 12.0, z - 68.0) < 7.0 * beat
    vein = np.hypot(x + 6.0, z - 92.0) < 9.0
    cyst_distance = np.hypot(x + 28.0, z - 105.0)
    behind_cyst = (np.abs(x + 28.0) < 12.0) & (z > 105.0)
    echo[behind_cyst] *= 1.6  # posterior acoustic enhancement behind fluid
    echo[artery | vein | (cyst_distance < 12.0)] = 0.04
    return echo


def _flow(x: NDArray[np.float64], z: NDArray[np.float64], t: float) -> NDArray[np.float64]:
    """Doppler velocity, -1..1: + towards the probe (artery, pulsatile), - away (vein, steady)."""
    z = z - 5.0 * math.sin(2 * math.pi * t / BREATH_PERIOD_S)
    phase = (t % HEART_PERIOD_S) / HEART_PERIOD_S
    systole = math.exp(-(((phase - 0.15) / 0.08) ** 2))
    beat = 1.0 + 0.1 * math.sin(2 * math.pi * t / HEART_PERIOD_S)
    velocity = np.zeros(x.shape)
    artery = np.hypot(x - 12.0, z - 68.0)
    radius = 7.0 * beat
    velocity[artery < radius] = (0.25 + 0.75 * systole) * (1 - (artery[artery < radius] / radius) ** 2)
    vein = np.hypot(x + 6.0, z - 92.0)
    velocity[vein < 9.0] = -0.35 * (1 - (vein[vein < 9.0] / 9.0) ** 2)
    return velocity


def ultrasound_loop(
    rows: int, columns: int, frames: int, frame_time_ms: float, rng: np.random.Generator, *, color: bool
) -> CineLoop:
    """A cine loop of `frames` frames, `frame_time_ms` apart; RGB with colour Doppler when `color`."""
    geometry = _geometry(rows, columns)
    index, inside = _scan_conversion(rows, columns, geometry)
    x, z = _polar_coordinates()
    mm_per_sample = DEPTH_MM / (_SAMPLES - 1)
    margin = int(12.0 / mm_per_sample) + 2  # room for the breathing excursion
    shape = (_BEAMS, _SAMPLES + 2 * margin)
    speckle = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    # Time-gain compensation leaves a little depth fall-off and a bright near field, as on real scanners.
    gain = 1.2 * np.exp(-z / 25.0) + np.exp(-z / 400.0)
    out_shape = (frames, rows, columns, 3) if color else (frames, rows, columns)
    out = np.zeros(out_shape, dtype=np.uint8)
    box = (
        geometry.apex_row + round(50.0 / geometry.mm_per_pixel),
        geometry.apex_row + round(108.0 / geometry.mm_per_pixel),
        geometry.apex_column - round(30.0 / geometry.mm_per_pixel),
        geometry.apex_column + round(35.0 / geometry.mm_per_pixel),
    )
    for n in range(frames):
        t = n * frame_time_ms / 1000.0
        # Speckle rides with the tissue (integer-sample shift) and decorrelates ~5% a frame.
        fresh = rng.normal(size=shape) + 1j * rng.normal(size=shape)
        speckle = math.sqrt(0.95) * speckle + math.sqrt(0.05) * fresh
        shift = round(5.0 * math.sin(2 * math.pi * t / BREATH_PERIOD_S) / mm_per_sample)
        envelope = np.abs(speckle[:, margin - shift : margin - shift + _SAMPLES]) * _echogenicity(x, z, t) * gain
        decibels = 20.0 * np.log10(envelope / 20.0 + 1e-6)
        grey = np.clip((decibels + DYNAMIC_RANGE_DB) / DYNAMIC_RANGE_DB * 255.0, 0, 255).astype(np.uint8)
        frame = np.where(inside, grey.reshape(-1)[index], 0).astype(np.uint8)
        if not color:
            out[n] = frame
            continue
        out[n] = frame[..., None]
        velocity = _flow(x, z, t).reshape(-1)[index]
        in_box = np.zeros((rows, columns), dtype=bool)
        in_box[box[0] : box[1], box[2] : box[3]] = True
        towards = inside & in_box & (velocity > 0.05)
        away = inside & in_box & (velocity < -0.05)
        out[n][towards] = np.stack(
            [120 + 135 * velocity[towards], 40 * velocity[towards], np.zeros(int(towards.sum()))], axis=-1
        ).astype(np.uint8)
        out[n][away] = np.stack(
            [np.zeros(int(away.sum())), 60 * -velocity[away], 120 + 135 * -velocity[away]], axis=-1
        ).astype(np.uint8)
    return CineLoop(out, geometry, box if color else None)
