"""Everything that changes quality state: caches, gold tasks, pauses, adjudications.

One module per sub-domain: ``refresh`` (dirty marks, refresh and recompute of the caches;
its docstring tells how they stay current), ``gold`` (gold tasks and serving them),
``annotators`` (pausing and reinstating annotators) and ``adjudication``. This package
re-exports their public names, so callers write ``services.gold_mark(...)``.
"""

from annotation.quality.services.adjudication import (
    MAX_REASON_CHARS,
    PROPOSAL_DECISION_FINAL,
    adjudication_decide,
)
from annotation.quality.services.annotators import (
    AnnotatorPaused,
    annotator_pause,
    annotator_reinstate,
    quality_claim_guard,
)
from annotation.quality.services.gold import (
    GOLD_REQUIRED_LABELS,
    gold_mark,
    gold_pick_for,
    gold_preemptor,
    gold_promote_unanimous,
    gold_unmark,
)
from annotation.quality.services.refresh import (
    REFRESH_BATCH,
    RefreshResult,
    quality_mark_dirty,
    quality_on_label_submitted,
    quality_recompute,
    quality_refresh,
    quality_request_recompute,
    quality_request_refresh,
    quality_task_changed,
)

__all__ = [
    "GOLD_REQUIRED_LABELS",
    "MAX_REASON_CHARS",
    "PROPOSAL_DECISION_FINAL",
    "REFRESH_BATCH",
    "AnnotatorPaused",
    "RefreshResult",
    "adjudication_decide",
    "annotator_pause",
    "annotator_reinstate",
    "gold_mark",
    "gold_pick_for",
    "gold_preemptor",
    "gold_promote_unanimous",
    "gold_unmark",
    "quality_claim_guard",
    "quality_mark_dirty",
    "quality_on_label_submitted",
    "quality_recompute",
    "quality_refresh",
    "quality_request_recompute",
    "quality_request_refresh",
    "quality_task_changed",
]
