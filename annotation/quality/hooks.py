"""Connects quality control to the annotation services' extension points.

``annotation.services`` keeps lists of hooks so it never imports quality code; this module
appends to them once, from ``AnnotationConfig.ready``.
"""

from annotation import services
from annotation.quality.services import (
    gold_preemptor,
    quality_claim_guard,
    quality_on_label_submitted,
    quality_task_changed,
)


def quality_on_task_changed(project_id: int, task_ids: list[int]) -> None:
    quality_task_changed(project_id=project_id, task_ids=task_ids)


def register_quality_hooks() -> None:
    for hooks, hook in (
        (services.label_submitted_hooks, quality_on_label_submitted),
        (services.claim_preemptors, gold_preemptor),
        (services.claim_guards, quality_claim_guard),
        (services.task_changed_hooks, quality_on_task_changed),
    ):
        if hook not in hooks:
            hooks.append(hook)
