"""A project's quality-control knobs, read from ``Project.options["quality"]`` (no Django)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from annotation.quality.metrics import DURATION_EDGES_S


@dataclass(frozen=True)
class QualityConfig:
    # Share of claims that serve a gold task (when the annotator has one left), in [0, 1].
    # 0.05 = one task in twenty checks the annotator without them knowing which.
    gold_rate: float = 0.05
    # Gold answers needed before gold accuracy can pause anyone: a single miss on the first
    # item must not lock out a new annotator.
    gold_min_answers: int = 5
    # Gold accuracy (share of gold tasks answered as expected) under which an annotator is
    # paused from the queue and counted in ``annotators_failing_gold``.
    gold_threshold: float = 0.7
    # Decisions faster than this many seconds count as "very fast" (too quick to have read
    # the responses). Must be an edge of the duration histogram (metrics.DURATION_EDGES_S).
    fast_seconds: float = 3
    # An annotator whose share of very fast decisions exceeds this gets a "too_fast" alert.
    fast_share_alert: float = 0.2
    # Family-wise significance level of the position-bias test across a project's annotators.
    position_bias_alpha: float = 0.01
    # Days of history in each annotator's sparkline.
    sparkline_days: int = 30

    def __post_init__(self):
        if not 0 <= self.gold_rate <= 1:
            raise ValueError("gold_rate must be between 0 and 1")
        if not 0 <= self.gold_threshold <= 1:
            raise ValueError("gold_threshold must be between 0 and 1")
        if self.gold_min_answers < 1:
            raise ValueError("gold_min_answers must be at least 1")
        if self.fast_seconds not in DURATION_EDGES_S:
            raise ValueError(f"fast_seconds must be one of {DURATION_EDGES_S}")
        if not 0 < self.position_bias_alpha < 1:
            raise ValueError("position_bias_alpha must be between 0 and 1")
        if not 1 <= self.sparkline_days <= 366:
            raise ValueError("sparkline_days must be between 1 and 366")

    @classmethod
    def from_options(cls, options: Mapping | None) -> QualityConfig:
        """From a project's options; unknown keys are refused so a typo is not silently lost."""
        raw = dict((options or {}).get("quality") or {})
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown quality options: {sorted(unknown)}")
        return cls(**raw)

    def to_dict(self) -> dict:
        return asdict(self)
