"""Train/validation/test assignment by prompt, stable as the data grows.

A prompt's split is a pure function of the seed and a 64-bit content hash (its cluster
representative's, see ``rlhf.data.dedup``): adding data never moves an existing prompt unless
a new near-duplicate joins two clusters that had different representatives, and never puts
two near-duplicate prompts on different sides.

Small projects keep their rows for training. By default (``validation=None``) a snapshot of up to
``VALIDATION_FROM_CLUSTERS`` prompt clusters holds out the test share only; the validation share
then rises linearly to ``DEFAULT_VALIDATION`` at ``FULL_VALIDATION_CLUSTERS``. With 800 prompts,
5% + 5% held out left about 700 rows to train a reward model and two held-out sets of ~40 pairs,
each too small to tell models apart (a 95% interval ~30 points wide); one held-out set keeps
~760 to train. The ramp keeps the training rows growing with the data (no step where one more
prompt takes 5% away), and as the share only grows, clusters only ever move from train to
validation. The test share never depends on the size: a prompt once in test stays in test.
Validation is for watching a run, not for comparing models. An explicit ``validation`` share
applies at every size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhf.data.minhash import _mix64

DEFAULT_VALIDATION = 0.05
VALIDATION_FROM_CLUSTERS = 1000
FULL_VALIDATION_CLUSTERS = 2000


@dataclass(frozen=True)
class SplitConfig:
    """seed: changes every assignment; validation/test: the shares of prompt clusters (not of
    rows) sent to each, validation None meaning the size rule above; train gets the rest."""

    seed: int = 0
    validation: float | None = None
    test: float = 0.05

    def __post_init__(self):
        # Stored in DatasetSnapshot.split_seed, a 32-bit column: a larger seed failed the
        # INSERT (a 500) instead of being refused with the form.
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError("split seed must be a whole number")
        if not -(2**31) <= self.seed < 2**31:
            raise ValueError("split seed must be within the 32-bit range")
        for name in ("validation", "test"):
            value = getattr(self, name)
            if value is None and name == "validation":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"split {name} must be a number")
        validation = DEFAULT_VALIDATION if self.validation is None else self.validation
        if validation < 0 or self.test < 0 or validation + self.test >= 1:
            raise ValueError("validation and test must be >= 0 and leave room for train")

    def validation_share(self, clusters: int) -> float:
        """The validation share for a snapshot of ``clusters`` prompt clusters."""
        if self.validation is not None:
            return self.validation
        ramp = (clusters - VALIDATION_FROM_CLUSTERS) / (
            FULL_VALIDATION_CLUSTERS - VALIDATION_FROM_CLUSTERS
        )
        return DEFAULT_VALIDATION * min(1.0, max(0.0, ramp))


def assign_splits(content_hashes: np.ndarray, config: SplitConfig) -> np.ndarray:
    """Split index (0 train, 1 validation, 2 test) for each uint64 content hash."""
    seed = np.uint64((config.seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % (1 << 64))
    hashed = _mix64(np.asarray(content_hashes, dtype=np.uint64) ^ seed)
    # Top 53 bits as a uniform float in [0, 1).
    u = (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    out = np.zeros(len(u), dtype=np.int8)
    out[u >= 1.0 - config.validation_share(len(u)) - config.test] = 1
    out[u >= 1.0 - config.test] = 2
    return out
