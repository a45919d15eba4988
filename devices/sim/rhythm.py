"""Ventricular beats: the R-R intervals a chest strap reports (Heart Rate Service, 1/1024 s units).

Sinus rhythm: intervals track the heart rate with respiratory sinus arrhythmia (a few percent, in phase
with breathing) and a small beat-to-beat jitter, a coefficient of variation of ~3-5 %. Atrial
fibrillation: "irregularly irregular" intervals, independent from beat to beat, log-normal around the
mean with a CV of ~25 % (AF R-R CVs are typically 15-35 %). Everything is vectorised over patients.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Refractory floor and the vocabulary's plausible ceiling for one R-R interval (proto/vocabulary.py).
MIN_RR_S = 0.25
MAX_RR_S = 3.0
SINUS_JITTER = 0.012
AF_SIGMA = 0.25
# A heart-rate monitor shows the rate over its last few beats, not beat by beat.
RATE_WINDOW_BEATS = 8


class BeatClock:
    """Per-patient beat timing carried across steps: when the next beat falls and the interval ending there."""

    def __init__(self, heart_rate: FloatArray, rsa_amplitude: FloatArray, rng: np.random.Generator) -> None:
        n = int(heart_rate.shape[0])
        self.pending: FloatArray = np.clip(60.0 / heart_rate, MIN_RR_S, MAX_RR_S)
        self.next_beat: FloatArray = rng.random(n) * self.pending
        self.breath_phase: FloatArray = rng.random(n) * (2.0 * np.pi)
        self.rsa_amplitude = rsa_amplitude
        self.recent: FloatArray = np.repeat(self.pending[:, None], RATE_WINDOW_BEATS, axis=1)

    def advance(
        self, t0: float, t1: float, heart_rate: FloatArray, af: BoolArray, respiratory_rate: FloatArray,
        rng: np.random.Generator,
    ) -> tuple[FloatArray, IntArray]:
        """Beats in (t0, t1]: returns (intervals, counts); patient p's intervals are intervals[p, :counts[p]].

        Draws a fixed number of normals for a given step length, so the random stream depends only on
        the sequence of steps, never on the rates.
        """
        n = heart_rate.shape[0]
        dt = t1 - t0
        k = int(dt / MIN_RR_S) + 1  # k intervals of at least MIN_RR_S always reach past t1
        mean_rr = (60.0 / heart_rate)[:, None]
        z = rng.standard_normal((n, k))
        breath_hz = (respiratory_rate / 60.0)[:, None]
        since_t0 = self.next_beat[:, None] - t0 + mean_rr * (np.arange(k) + 0.5)
        rsa = self.rsa_amplitude[:, None] * np.sin(self.breath_phase[:, None] + 2.0 * np.pi * breath_hz * since_t0)
        sinus = 1.0 + rsa + SINUS_JITTER * z
        fibrillation = np.exp(AF_SIGMA * z - 0.5 * AF_SIGMA * AF_SIGMA)  # mean 1
        new = np.clip(mean_rr * np.where(af[:, None], fibrillation, sinus), MIN_RR_S, MAX_RR_S)

        beats = self.next_beat[:, None] + np.concatenate((np.zeros((n, 1)), np.cumsum(new, axis=1)), axis=1)
        intervals = np.concatenate((self.pending[:, None], new), axis=1)  # intervals[:, j] ends at beats[:, j]
        counts = np.count_nonzero(beats <= t1, axis=1)
        rows = np.arange(n)
        self.next_beat = beats[rows, counts]
        self.pending = intervals[rows, counts]
        self.breath_phase = (self.breath_phase + 2.0 * np.pi * breath_hz[:, 0] * dt) % (2.0 * np.pi)
        # Keep each patient's last RATE_WINDOW_BEATS intervals: the valid run of [recent, new beats]
        # ends at column RATE_WINDOW_BEATS + count.
        joined = np.concatenate((self.recent, intervals), axis=1)
        last = (RATE_WINDOW_BEATS + counts)[:, None] + np.arange(-RATE_WINDOW_BEATS, 0)[None, :]
        self.recent = np.take_along_axis(joined, last, axis=1)
        return intervals, counts.astype(np.int64)

    def rate(self) -> FloatArray:
        """The rate a monitor shows: 60 / mean of the last RATE_WINDOW_BEATS R-R intervals."""
        rate: FloatArray = 60.0 / self.recent.mean(axis=1)
        return rate
