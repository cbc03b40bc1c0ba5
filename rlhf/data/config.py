"""The pipeline's configuration: one dataclass per step, gathered in ``PipelineConfig``.

A snapshot stores ``PipelineConfig.as_dict()``; ``from_dict`` rebuilds it exactly, and reads
the configs older snapshots stored (their ``aggregation`` lacks the engine's Dawid-Skene knobs,
which take their defaults and play no part in the snapshot policies; without ``flags`` they
were built ignoring flags, and ``from_dict`` keeps it so).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from annotation.quality.flag_policy import FlagPolicy
from rlhf.data.aggregate import POLICIES, AggregationConfig
from rlhf.data.cleaning import CleaningConfig
from rlhf.data.minhash import lsh_params
from rlhf.data.splits import SplitConfig

MAX_NUM_PERM = 1024


@dataclass(frozen=True)
class DedupConfig:
    """exact: drop rows whose normalised content (case-folded, whitespace collapsed) repeats.
    near: drop rows whose prompt and answers are near duplicates of an earlier row's, and
        cluster near-duplicate prompts so they share a split.
    threshold: estimated Jaccard similarity of word 3-gram sets at which two texts are near
        duplicates.
    num_perm / shingle_words / seed: MinHash parameters (``rlhf.data.minhash.MinHasher``).
    """

    exact: bool = True
    near: bool = True
    threshold: float = 0.8
    num_perm: int = 64
    shingle_words: int = 3
    seed: int = 1

    def __post_init__(self):
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        # Checked here, when a snapshot is requested, not first in the build: the MinHash
        # tables grow with num_perm squared (8 * num_perm**2 int64 probes per worker, 64 MiB
        # at 1024, 64 GiB at 32768) and choosing the LSH bands takes seconds beyond 1024.
        if (
            isinstance(self.num_perm, bool)
            or not isinstance(self.num_perm, int)
            or not 2 <= self.num_perm <= MAX_NUM_PERM
            or self.num_perm & (self.num_perm - 1)
        ):
            raise ValueError(f"num_perm must be a power of two from 2 to {MAX_NUM_PERM}")
        if isinstance(self.shingle_words, bool) or not isinstance(self.shingle_words, int):
            raise ValueError("shingle_words must be a whole number")
        if self.shingle_words < 1:
            raise ValueError("shingle_words must be >= 1")

    @property
    def bands_rows(self) -> tuple[int, int]:
        return lsh_params(self.threshold, self.num_perm)


@dataclass(frozen=True)
class PipelineConfig:
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    flags: FlagPolicy = field(default_factory=FlagPolicy)

    def __post_init__(self):
        if self.aggregation.policy not in POLICIES:
            raise ValueError(
                f"aggregation policy {self.aggregation.policy!r} is not available for snapshots"
                f" (one of {POLICIES})"
            )

    def as_dict(self) -> dict:
        data = asdict(self)
        data["aggregation"] = self.aggregation.as_dict()
        data["cleaning"]["pii_types"] = list(self.cleaning.pii_types)
        return data

    @classmethod
    def from_dict(cls, data: dict | None) -> PipelineConfig:
        data = data or {}
        cleaning = dict(data.get("cleaning") or {})
        if "pii_types" in cleaning:
            cleaning["pii_types"] = tuple(cleaning["pii_types"])
        return cls(
            cleaning=CleaningConfig(**cleaning),
            dedup=DedupConfig(**(data.get("dedup") or {})),
            aggregation=AggregationConfig.from_dict(data.get("aggregation")),
            split=SplitConfig(**(data.get("split") or {})),
            flags=FlagPolicy.from_dict(data.get("flags")),
        )
