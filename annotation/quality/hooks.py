"""Connects quality control to the annotation services' extension points.

``annotation.services`` keeps lists of hooks so it never imports quality code; this module
appends to them once, from ``AnnotationConfig.ready``.
"""

from annotation import services
from annotation.quality.services import (
    gold_preemptor,
    quality_claim_guard,
    quality_on_label_submitted,
)


def register_quality_hooks() -> None:
    for hooks, hook in (
        (services.label_submitted_hooks, quality_on_label_submitted),
        (services.claim_preemptors, gold_preemptor),
        (services.claim_guards, quality_claim_guard),
    ):
        if hook not in hooks:
            hooks.append(hook)
