"""Extension points of the annotation services, for apps this package never imports.

Quality control and the review cycle append to these lists when their app is ready; the
services look them up as attributes of this module at call time (so a test can swap one).
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction

from annotation.models import Label, Project

# Hooks other apps register (quality control, review cycle) without this module importing
# them: called after commit with the new label.
label_submitted_hooks: list[Callable[[Label], None]] = []
# Called inside the claim transaction before the normal queue: may return a task id to serve
# first (gold items mixed into the queue). Signature: (project, annotator, exclude_ids) -> id.
claim_preemptors: list[Callable[..., int | None]] = []
# Called before claiming: may raise a DomainError to pause an annotator (failed gold checks).
claim_guards: list[Callable[[Project, object], None]] = []
# Called after commit when a label was edited or a task skipped: (project_id, [task ids]).
task_changed_hooks: list[Callable[[int, list[int]], None]] = []
# Prompts another app still needs (the review cycle's evaluation and fresh prompts, its
# generation jobs'): retention never deletes them. Signature: (project) -> set of prompt ids.
retention_prompt_guards: list[Callable[[Project], set[int]]] = []
# Whether another app froze a label into something built from it (a dataset snapshot): an
# annotator can then no longer withdraw it. Signature: (label) -> bool.
label_frozen_guards: list[Callable[[Label], bool]] = []
# Called inside ``text_seal``'s transaction once a text is sealed, with keywords project,
# task_ids (the tasks showing the text), subject ('prompt:12'), reason and details (the audit
# event's details, which a hook adds to): snapshots holding the text are withdrawn there, and
# the runs and versions trained on them listed. In registration order (rlhf before the registry).
text_sealed_hooks: list[Callable[..., None]] = []


def _after_commit_task_changed(project_id: int, task_id: int) -> None:
    for hook in task_changed_hooks:
        transaction.on_commit(lambda hook=hook: hook(project_id, [task_id]))
