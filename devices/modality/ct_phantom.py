"""A synthetic torso for CT: axial slices in Hounsfield units from the neck to the pelvis.

Attenuation values are textbook figures (air -1000, lung about -850, fat -100, soft tissue 40,
liver 60, cancellous bone about 250, cortical bone about 700 HU) so that soft-tissue, lung and bone
window presets show the structures a radiologist expects. Depth is measured in millimetres below
the lung apex, growing towards the feet; x is the patient's left and y posterior, as in the DICOM
patient coordinate system (PS3.3 C.7.6.2.1.1), so the spine is at the bottom of the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from devices.modality.raster import Canvas, FloatImage, Grid, smooth3

AIR_HU = -1000.0
LUNG_HU = -850.0
FAT_HU = -100.0
WATER_HU = 0.0
SOFT_TISSUE_HU = 40.0
BLOOD_HU = 45.0
LIVER_HU = 60.0
CANCELLOUS_BONE_HU = 250.0
CORTICAL_BONE_HU = 700.0
NO_DATA_HU = -1024.0  # outside the reconstruction circle

THORAX_END = 270.0  # lung bases / domes of the diaphragm, mm below the apex
NOISE_HU = 10.0  # quantum noise of a routine adult chest protocol


@dataclass(frozen=True)
class Torso:
    """One patient's body habitus and fine structures, fixed for a whole series so slices agree."""

    half_width: float  # body semi-axis left-right at mid-chest, mm
    half_depth: float  # body semi-axis anterior-posterior, mm
    fat: float  # subcutaneous fat thickness, mm
    vessels: NDArray[np.float64]  # rows: side (-1 right, +1 left), u, v, du/dd, dv/dd, radius
    nodule: tuple[float, float, float, float]  # x, y, depth, radius (mm): a solid lung nodule
    bowel: NDArray[np.float64]  # rows: x, y, depth, radius, gas (1) or fluid (0)


def random_torso(rng: np.random.Generator) -> Torso:
    """A torso for an adult of ordinary build, with vessels, one nodule and bowel loops."""
    half_width = float(rng.uniform(140, 165))
    half_depth = float(rng.uniform(95, 120))
    n_vessels = 36
    vessels = np.column_stack([
        rng.choice([-1.0, 1.0], n_vessels),
        rng.uniform(-0.7, 0.7, n_vessels),
        rng.uniform(-0.7, 0.7, n_vessels),
        rng.uniform(-0.002, 0.002, n_vessels),
        rng.uniform(-0.002, 0.002, n_vessels),
        rng.uniform(1.2, 3.5, n_vessels),
    ])
    side = float(rng.choice([-1.0, 1.0]))
    nodule = (side * half_width * 0.45, -0.1 * half_depth, float(rng.uniform(80, 200)), float(rng.uniform(3, 6)))
    n_bowel = 40
    bowel = np.column_stack([
        rng.uniform(-0.55, 0.55, n_bowel) * half_width,
        rng.uniform(-0.6, 0.2, n_bowel) * half_depth,
        rng.uniform(360, 620, n_bowel),
        rng.uniform(8, 18, n_bowel),
        (rng.random(n_bowel) < 0.4).astype(np.float64),
    ])
    return Torso(half_width, half_depth, float(rng.uniform(8, 18)), vessels, nodule, bowel)


def _hump(depth: float, start: float, end: float, power: float = 0.5) -> float:
    """0 outside [start, end], rising to 1 in the middle: how much of an organ a slice cuts."""
    if not start < depth < end:
        return 0.0
    return float(math.sin(math.pi * (depth - start) / (end - start)) ** power)


def _body_axes(torso: Torso, depth: float) -> tuple[float, float]:
    knots = [-100.0, -40.0, 10.0, 150.0, 300.0, 450.0, 650.0]
    widths = [60.0, 65.0, 0.85, 1.0, 0.97, 1.0, 1.03]
    depths = [58.0, 60.0, 0.9, 1.0, 1.02, 1.06, 1.0]
    a_values = [w if i < 2 else w * torso.half_width for i, w in enumerate(widths)]
    b_values = [d if i < 2 else d * torso.half_depth for i, d in enumerate(depths)]
    return float(np.interp(depth, knots, a_values)), float(np.interp(depth, knots, b_values))


def _paint_spine(canvas: Canvas, b: float, depth: float, lumbar: bool) -> None:
    radius = 22.0 if lumbar else 17.0
    cy = 0.62 * b
    # Intervertebral discs: about 5 mm of every 26 mm of column (vertebra + disc height).
    on_disc = (depth % 26.0) < 5.0
    if on_disc:
        canvas.fill_ellipse(0.0, cy, radius, radius * 0.85, 90.0)
    else:
        canvas.fill_ellipse(0.0, cy, radius, radius * 0.85, CORTICAL_BONE_HU)
        canvas.fill_ellipse(0.0, cy, radius - 2.5, radius * 0.85 - 2.5, CANCELLOUS_BONE_HU)
    canal_y = cy + radius * 0.85 + 9.0
    canvas.fill_ellipse(0.0, canal_y, 11.0, 12.0, CORTICAL_BONE_HU * 0.8)  # neural arch
    canvas.fill_ellipse(0.0, canal_y, 8.0, 8.5, 15.0)  # spinal canal: cord and CSF
    canvas.fill_ellipse(0.0, canal_y + 20.0, 4.5, 11.0, CORTICAL_BONE_HU * 0.85)  # spinous process
    for side in (-1.0, 1.0):
        canvas.fill_ellipse(side * 22.0, canal_y - 2.0, 12.0, 4.0, CORTICAL_BONE_HU * 0.85, angle_deg=side * 15)


def _paint_ribs(canvas: Canvas, a: float, b: float, fat: float, depth: float) -> None:
    # Ribs run obliquely, so an axial slice cuts each one as a small oval; ~12 mm of bone per 22 mm.
    for k in range(11):
        angle = math.radians(-150 + k * 30 + 0.05 * depth)
        if abs(math.cos(angle)) < 0.2 and math.sin(angle) > 0:
            continue  # no rib crosses the spine in the midline
        if ((depth + 7.0 * k) % 22.0) > 12.0:
            continue
        rx = (a - fat - 6.0) * math.cos(angle)
        ry = (b - fat - 6.0) * math.sin(angle)
        canvas.fill_ellipse(rx, ry, 7.0, 4.5, CORTICAL_BONE_HU, angle_deg=math.degrees(angle) + 90)
        canvas.fill_ellipse(rx, ry, 4.5, 2.0, CANCELLOUS_BONE_HU)


def _paint_lungs(canvas: Canvas, torso: Torso, a: float, b: float, depth: float) -> None:
    for side, base in ((-1.0, THORAX_END - 15.0), (1.0, THORAX_END)):  # liver lifts the right dome
        size = _hump(depth, -15.0, base, 0.45)
        if size == 0.0:
            continue
        cx, cy = side * 0.45 * a, -0.05 * b
        ax, ay = 0.36 * a * size, 0.74 * b * size
        canvas.fill_ellipse(cx, cy, ax, ay, LUNG_HU)
        for row in torso.vessels[torso.vessels[:, 0] == side]:
            u = row[1] + row[3] * depth
            v = row[2] + row[4] * depth
            if u * u + v * v < 0.8:
                canvas.fill_ellipse(cx + u * ax, cy + v * ay, row[5] * size, row[5] * size, BLOOD_HU)
        x, y, centre, radius = torso.nodule
        if side * x > 0 and abs(depth - centre) < radius:
            r = math.sqrt(radius * radius - (depth - centre) ** 2)
            canvas.fill_ellipse(x, y, r, r, SOFT_TISSUE_HU)


def _paint_abdomen(canvas: Canvas, torso: Torso, a: float, b: float, depth: float) -> None:
    liver = _hump(depth, 225.0, 430.0, 0.35)
    if liver:
        canvas.fill_ellipse(-0.35 * a, -0.05 * b, 0.55 * a * liver, 0.7 * b * liver, LIVER_HU)
    spleen = _hump(depth, 245.0, 355.0)
    if spleen:
        canvas.fill_ellipse(0.52 * a, 0.3 * b, 30.0 * spleen, 42.0 * spleen, 50.0, angle_deg=-30)
    stomach = _hump(depth, 240.0, 335.0)
    if stomach:
        cx, cy, sa, sb = 0.35 * a, -0.35 * b, 48.0 * stomach, 36.0 * stomach
        canvas.fill_ellipse(cx, cy, sa, sb, 20.0)
        canvas.fill_ellipse(cx, cy - sb * 0.55, sa * 0.7, sb * 0.4, AIR_HU)  # gas above the fluid level
    kidney = _hump(depth, 320.0, 435.0)
    if kidney:
        for side in (-1.0, 1.0):
            cx, cy = side * 0.45 * a, 0.42 * b
            canvas.fill_ellipse(cx, cy, 28.0 * kidney, 40.0 * kidney, 35.0, angle_deg=side * 30)
            canvas.fill_ellipse(cx, cy, 9.0 * kidney, 14.0 * kidney, WATER_HU, angle_deg=side * 30)
    for x, y, centre, radius, gas in torso.bowel:
        if abs(depth - centre) < radius:
            r = math.sqrt(radius * radius - (depth - centre) ** 2)
            canvas.fill_ellipse(x, y, r, r * 0.8, AIR_HU if gas else 10.0)
    pelvis = _hump(depth, 480.0, 660.0, 0.3)
    if pelvis:
        for side in (-1.0, 1.0):
            cx, cy = side * 0.55 * a, 0.3 * b
            canvas.fill_ellipse(cx, cy, 55.0 * pelvis, 11.0, CORTICAL_BONE_HU, angle_deg=-side * 60)
            canvas.fill_ellipse(cx, cy, 52.0 * pelvis, 7.0, CANCELLOUS_BONE_HU, angle_deg=-side * 60)


def _paint_mediastinum(canvas: Canvas, a: float, b: float, depth: float) -> None:
    if -100.0 <= depth <= 60.0:
        canvas.fill_ellipse(0.0, -0.25 * b, 9.0, 8.0, AIR_HU)  # trachea
    elif 60.0 < depth <= 95.0:
        for side in (-1.0, 1.0):
            canvas.fill_ellipse(side * 16.0, -0.2 * b, 6.0, 6.0, AIR_HU)  # main bronchi
    heart = _hump(depth, 85.0, 235.0)
    if heart:
        canvas.fill_ellipse(0.12 * a, -0.2 * b, 0.38 * a * heart, 0.46 * b * heart, SOFT_TISSUE_HU, angle_deg=-20)
    if 35.0 <= depth <= 110.0:
        canvas.fill_ellipse(-8.0, -0.3 * b, 15.0, 15.0, BLOOD_HU)  # ascending aorta
    if 20.0 <= depth < 35.0:
        canvas.fill_ellipse(0.0, 0.1 * b, 45.0, 12.0, BLOOD_HU, angle_deg=-40)  # aortic arch
    if 30.0 <= depth <= 460.0:
        canvas.fill_ellipse(22.0, 0.42 * b, 12.0, 12.0, BLOOD_HU)  # descending aorta
    if 20.0 <= depth <= 190.0:
        canvas.fill_ellipse(0.0, -b + 0.9 * 14.0, 14.0, 5.5, 450.0)  # sternum
    if 0.0 <= depth <= 150.0:
        for side in (-1.0, 1.0):  # scapulae, thin plates behind the posterior ribs
            canvas.fill_ellipse(side * 0.55 * a, 0.72 * b, 40.0, 4.0, CORTICAL_BONE_HU * 0.8, angle_deg=-side * 25)


def ct_slice_hu(grid: Grid, torso: Torso, depth: float, rng: np.random.Generator) -> FloatImage:
    """One axial slice at `depth` mm below the lung apex, in HU, with realistic noise."""
    canvas = Canvas(grid, AIR_HU)
    a, b = _body_axes(torso, depth)
    # Patient table: a carbon-fibre board under the body.
    canvas.fill_rectangle(-220.0, 220.0, b + 10.0, b + 17.0, 150.0)
    fat = torso.fat if depth > -40 else 5.0
    canvas.fill_ellipse(0.0, 0.0, a, b, FAT_HU)
    canvas.fill_ellipse(0.0, 0.0, a - fat, b - fat, SOFT_TISSUE_HU)
    if depth > 0.0:
        _paint_ribs(canvas, a, b, fat, depth)
    _paint_abdomen(canvas, torso, a, b, depth)
    _paint_lungs(canvas, torso, a, b, depth)
    _paint_mediastinum(canvas, a, b, depth)
    _paint_spine(canvas, b, depth, lumbar=depth > THORAX_END)
    image = smooth3(canvas.image)
    image += rng.normal(0.0, NOISE_HU, image.shape).astype(np.float32)
    field_of_view = min(grid.rows * grid.dy, grid.columns * grid.dx)
    radius = field_of_view / 2.0
    r2 = grid.xs()[None, :] ** 2 + grid.ys()[:, None] ** 2
    image[r2 > radius * radius] = NO_DATA_HU
    return image
