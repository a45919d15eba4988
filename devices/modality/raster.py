"""A float image on a millimetre grid with cheap shape filling, shared by the CT and DX phantoms.

Shapes are evaluated only inside their bounding box, so drawing dozens of small structures on a
512x512 or 2048x2048 image stays in the millisecond range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatImage = NDArray[np.float32]


@dataclass(frozen=True)
class Grid:
    """Pixel centres in millimetres: column c is at x = x0 + c * dx, row r at y = y0 + r * dy."""

    rows: int
    columns: int
    dy: float
    dx: float

    @property
    def x0(self) -> float:
        return -(self.columns - 1) / 2.0 * self.dx

    @property
    def y0(self) -> float:
        return -(self.rows - 1) / 2.0 * self.dy

    def xs(self) -> NDArray[np.float32]:
        return (self.x0 + np.arange(self.columns, dtype=np.float32) * self.dx).astype(np.float32)

    def ys(self) -> NDArray[np.float32]:
        return (self.y0 + np.arange(self.rows, dtype=np.float32) * self.dy).astype(np.float32)


class Canvas:
    """An image being painted: later shapes overwrite (`fill_*`) or add to (`add_*`) earlier ones."""

    def __init__(self, grid: Grid, background: float) -> None:
        self.grid = grid
        self.image: FloatImage = np.full((grid.rows, grid.columns), background, dtype=np.float32)
        self._xs = grid.xs()
        self._ys = grid.ys()

    def _window(self, cx: float, cy: float, reach: float) -> tuple[slice, slice] | None:
        g = self.grid
        c0 = max(0, math.floor((cx - reach - g.x0) / g.dx))
        c1 = min(g.columns, math.ceil((cx + reach - g.x0) / g.dx) + 1)
        r0 = max(0, math.floor((cy - reach - g.y0) / g.dy))
        r1 = min(g.rows, math.ceil((cy + reach - g.y0) / g.dy) + 1)
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def _ellipse_inside(
        self, cx: float, cy: float, a: float, b: float, angle_deg: float
    ) -> tuple[tuple[slice, slice], NDArray[np.float32]] | None:
        """Where the ellipse lies, and 1 - normalised radius squared (> 0 inside) over that window."""
        if a <= 0 or b <= 0:
            return None
        window = self._window(cx, cy, max(a, b))
        if window is None:
            return None
        rows, cols = window
        dx = self._xs[cols][None, :] - cx
        dy = self._ys[rows][:, None] - cy
        if angle_deg:
            t = math.radians(angle_deg)
            dx, dy = dx * math.cos(t) + dy * math.sin(t), -dx * math.sin(t) + dy * math.cos(t)
        return window, (1.0 - (dx / a) ** 2 - (dy / b) ** 2).astype(np.float32)

    def fill_ellipse(
        self, cx: float, cy: float, a: float, b: float, value: float, *, angle_deg: float = 0.0
    ) -> None:
        """Set every pixel inside the ellipse (semi-axes a along x, b along y, rotated) to `value`."""
        found = self._ellipse_inside(cx, cy, a, b, angle_deg)
        if found is None:
            return
        window, inside = found
        self.image[window][inside > 0] = value

    def add_ellipsoid(
        self, cx: float, cy: float, a: float, b: float, amount: float, *, angle_deg: float = 0.0
    ) -> None:
        """Add the projected thickness of an ellipsoid (amount at the centre, 0 at the rim): radiography."""
        found = self._ellipse_inside(cx, cy, a, b, angle_deg)
        if found is None:
            return
        window, inside = found
        self.image[window] += amount * np.sqrt(np.clip(inside, 0.0, None))

    def fill_rectangle(self, x_min: float, x_max: float, y_min: float, y_max: float, value: float) -> None:
        """Set the axis-aligned rectangle to `value`."""
        inside_x = (self._xs >= x_min) & (self._xs <= x_max)
        inside_y = (self._ys >= y_min) & (self._ys <= y_max)
        self.image[np.ix_(inside_y, inside_x)] = value

    def mask_outside_circle(self, radius: float, value: float) -> None:
        """Set everything farther than `radius` from the centre to `value` (the reconstruction circle)."""
        r2 = self._xs[None, :] ** 2 + self._ys[:, None] ** 2
        self.image[r2 > radius * radius] = value


def smooth3(image: FloatImage) -> FloatImage:
    """A 3x3 box blur with edge replication: partial-volume softening of painted edges."""
    padded: FloatImage = np.pad(image, 1, mode="edge")
    rows: FloatImage = (padded[:-2] + padded[1:-1] + padded[2:]) / np.float32(3.0)
    blurred: FloatImage = (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) / np.float32(3.0)
    return blurred
