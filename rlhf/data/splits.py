"""Train/validation/test assignment by prompt, stable as the data grows.

A prompt's split is a pure function of the seed and a 64-bit content hash (its cluster
representative's, see ``rlhf.data.dedup``): adding data never moves an existing prompt unless
a new near-duplicate joins two clusters that had different representatives, and never puts
two near-duplicate prompts on different sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhf.data.minhash import _mix64


@dataclass(frozen=True)
class SplitConfig:
    """seed: changes every assignment; validation/test: the shares of prompt clusters (not of
    rows) sent to each; train gets the rest."""

    seed: int = 0
    validation: float = 0.05
    test: float = 0.05

    def __post_init__(self):
        # Stored in DatasetSnapshot.split_seed, a 32-bit column: a larger seed failed the
        # INSERT (a 500) instead of being refused with the form.
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError("split seed must be a whole number")
        if not -(2**31) <= self.seed < 2**31:
            raise ValueError("split seed must be within the 32-bit range")
        if self.validation < 0 or self.test < 0 or self.validation + self.test >= 1:
            raise ValueError("validation and test must be >= 0 and leave room for train")


def assign_splits(content_hashes: np.ndarray, config: SplitConfig) -> np.ndarray:
    """Split index (0 train, 1 validation, 2 test) for each uint64 content hash."""
    seed = np.uint64((config.seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % (1 << 64))
    hashed = _mix64(np.asarray(content_hashes, dtype=np.uint64) ^ seed)
    # Top 53 bits as a uniform float in [0, 1).
    u = (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    out = np.zeros(len(u), dtype=np.int8)
    out[u >= 1.0 - config.validation - config.test] = 1
    out[u >= 1.0 - config.test] = 2
    return out
