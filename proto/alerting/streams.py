"""Dense per-patient, per-kind stream state in numpy arrays, shared by the batched and the per-sample paths.

Row = patient slot, column = vocabulary wire id. Holding these in arrays (not per-patient objects) is what
lets observe_batch update the many quiet patients of a batch with a handful of vectorised operations.

    latest_t / latest_v   the latest trusted sample of each kind (NONE: never seen)
    acc_bucket/sum/n      the open history bucket of kinds with rate rules (NONE: no open bucket)
    config                index of the patient's compiled configuration
    busy                  the patient has an open incident or a pending timer: every sample is evaluated
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from proto.alerting.rules import KIND_COLUMNS

NONE = np.iinfo(np.int64).min  # "no sample" / "no open bucket"


class StreamTable:
    __slots__ = ("acc_bucket", "acc_n", "acc_sum", "busy", "config", "latest_t", "latest_v")

    def __init__(self, capacity: int = 64) -> None:
        self.latest_t: npt.NDArray[np.int64] = np.full((capacity, KIND_COLUMNS), NONE, dtype=np.int64)
        self.latest_v: npt.NDArray[np.float64] = np.zeros((capacity, KIND_COLUMNS), dtype=np.float64)
        self.acc_bucket: npt.NDArray[np.int64] = np.full((capacity, KIND_COLUMNS), NONE, dtype=np.int64)
        self.acc_sum: npt.NDArray[np.float64] = np.zeros((capacity, KIND_COLUMNS), dtype=np.float64)
        self.acc_n: npt.NDArray[np.int64] = np.zeros((capacity, KIND_COLUMNS), dtype=np.int64)
        self.config: npt.NDArray[np.int64] = np.zeros(capacity, dtype=np.int64)
        self.busy: npt.NDArray[np.bool_] = np.zeros(capacity, dtype=np.bool_)

    @property
    def capacity(self) -> int:
        return int(self.busy.shape[0])

    def ensure(self, slots: int) -> None:
        """Grow (doubling) so that slots 0..slots-1 exist."""
        if slots <= self.capacity:
            return
        new = max(slots, 2 * self.capacity)
        for name, fill in (("latest_t", NONE), ("latest_v", 0.0), ("acc_bucket", NONE), ("acc_sum", 0.0),
                           ("acc_n", 0), ("config", 0), ("busy", False)):
            old = getattr(self, name)
            grown = np.full((new, *old.shape[1:]), fill, dtype=old.dtype)
            grown[: old.shape[0]] = old
            setattr(self, name, grown)

    def reset(self, slot: int) -> None:
        self.latest_t[slot] = NONE
        self.latest_v[slot] = 0.0
        self.acc_bucket[slot] = NONE
        self.acc_sum[slot] = 0.0
        self.acc_n[slot] = 0
        self.config[slot] = 0
        self.busy[slot] = False

    def last_trusted_time(self, slot: int) -> int:
        """The time of the patient's most recent trusted sample of any kind (NONE if none)."""
        return int(self.latest_t[slot].max())
