"""A synthetic postero-anterior chest radiograph.

The phantom adds up projected thicknesses (in cm of water-equivalent tissue) of the torso, lungs
(air lowers it), heart, mediastinum, spine, ribs and clavicles, then maps the total through a
sigmoid like the tone curve a DR console applies before an image is sent "for presentation".
Image x grows to the patient's left and y to the feet, matching Patient Orientation L\\F (PS3.3
C.7.6.1.1.1) for a PA view displayed as if facing the patient.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from devices.modality.raster import Canvas, Grid, smooth3

DETECTOR_MM = 430.0  # a 43 cm x 43 cm (17 in) flat panel
NOISE_COUNTS = 12.0


def _ribs(grid: Grid, rng: np.random.Generator) -> Canvas:
    """A 0/1 mask of ten posterior rib pairs and the clavicles, each drawn as a chain of small discs."""
    mask = Canvas(grid, 0.0)
    spacing = float(rng.uniform(21, 25))
    for k in range(10):
        top = -150.0 + k * spacing
        reach = 80.0 + 50.0 * math.sin(math.pi * min(k + 2, 9) / 11)
        width = 4.5 + 0.25 * k
        for side in (-1.0, 1.0):
            for t in np.linspace(0.0, 1.0, 60):
                x = side * (22.0 + reach * t)
                # Posterior ribs rise briefly from the spine, then sweep down laterally.
                y = top - 14.0 * math.sin(math.pi * t * 0.8) + 38.0 * t * t
                mask.fill_ellipse(x, y, width, width, 1.0)
    for side in (-1.0, 1.0):
        for t in np.linspace(0.0, 1.0, 60):
            mask.fill_ellipse(side * (25.0 + 125.0 * t), -165.0 - 18.0 * t + 10.0 * t * t, 7.0, 7.0, 1.0)
    return mask


def chest_radiograph(grid: Grid, rng: np.random.Generator, bits_stored: int) -> NDArray[np.uint16]:
    """A PA chest radiograph as unsigned `bits_stored`-bit pixels, bone and mediastinum bright."""
    thickness = Canvas(grid, 0.0)
    scale = float(rng.uniform(0.93, 1.07))  # body habitus
    thickness.add_ellipsoid(0.0, 70.0, 165.0 * scale, 330.0, 22.0)  # torso
    thickness.add_ellipsoid(0.0, -200.0, 55.0, 90.0, 11.0)  # neck
    for side in (-1.0, 1.0):
        thickness.add_ellipsoid(side * 150.0 * scale, -145.0, 65.0, 42.0, 9.0)  # shoulders
    for side, bottom in ((-1.0, 0.94), (1.0, 1.0)):  # the liver lifts the right hemidiaphragm
        thickness.add_ellipsoid(side * 78.0 * scale, -35.0, 64.0 * scale, 150.0 * bottom, -13.0)  # lungs
    heart = float(rng.uniform(0.9, 1.1))
    thickness.add_ellipsoid(25.0, 70.0, 75.0 * heart, 62.0 * heart, 7.0, angle_deg=-20)
    thickness.add_ellipsoid(0.0, -50.0, 32.0, 140.0, 6.0)  # mediastinum and great vessels
    for side in (-1.0, 1.0):
        thickness.add_ellipsoid(side * 30.0, -35.0, 9.0, 14.0, 2.0)  # hila
    spine = Canvas(grid, 0.0)
    for level in range(-9, 12):  # vertebral bodies with darker discs between them
        spine.fill_ellipse(0.0, level * 26.0, 22.0, 10.5, 1.0)
    image = thickness.image + 3.0 * spine.image + 2.5 * _ribs(grid, rng).image
    image = smooth3(image)
    # Console tone curve: a sigmoid around a mid-density of soft tissue.
    top = float(2**bits_stored - 1)
    toned = top / (1.0 + np.exp(-(image - 14.0) / 6.0))
    toned += rng.normal(0.0, NOISE_COUNTS * top / 4095.0, toned.shape).astype(np.float32)
    pixels: NDArray[np.uint16] = np.clip(np.rint(toned), 0, top).astype(np.uint16)
    return pixels
