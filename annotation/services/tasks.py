"""Creating tasks from a prompt and its responses."""

from __future__ import annotations

from django.db import transaction

from annotation.models import (
    IMPORTABLE_TASK_KINDS,
    Project,
    Prompt,
    Response,
    Task,
    TaskItem,
    TaskKind,
)
from annotation.services.hashing import (
    content_hash_candidates,
    prompt_messages_hash,
    task_content_hash,
    text_hash,
)
from config.errors import ValidationFailed


@transaction.atomic
def task_create(
    *,
    project: Project,
    messages: list[dict],
    kind: str,
    responses: list[dict],
    source: str = "",
    priority: int = 0,
    metadata: dict | None = None,
) -> tuple[Task, bool]:
    """Create (or find) a task for a prompt and its responses.

    ``responses`` items: ``{"text", "origin", "model_name", "generation"}``. Returns
    ``(task, created)``; the same prompt, kind and responses never make a second task.
    """
    counts = {TaskKind.PAIRWISE: (2, 2), TaskKind.RANKING: (3, 20)}
    low, high = counts.get(kind, (1, 20))
    if kind not in IMPORTABLE_TASK_KINDS:
        raise ValidationFailed(f"unknown task kind {kind!r}")
    if not low <= len(responses) <= high:
        raise ValidationFailed(f"a {kind} task takes {low} to {high} responses")
    prompt_hash = prompt_messages_hash(messages)
    # A sealed prompt, response or task (keyed hash) is found too: never written again in clear.
    prompt = Prompt.objects.filter(
        project=project, content_hash__in=content_hash_candidates(prompt_hash)
    ).first() or Prompt.objects.create(
        project=project, content_hash=prompt_hash, messages=messages, source=source
    )
    hashes = [text_hash(r["text"]) for r in responses]
    if len(set(hashes)) != len(hashes):
        raise ValidationFailed("a task cannot show the same response twice")
    task_hash = task_content_hash(kind, prompt_hash, hashes)
    existing = Task.objects.filter(
        project=project, content_hash__in=content_hash_candidates(task_hash)
    ).first()
    if existing:
        return existing, False
    response_rows = []
    for r, h in zip(responses, hashes, strict=True):
        same = {"prompt": prompt, "origin": r.get("origin", "import"),
                "model_name": r.get("model_name", "")}  # fmt: skip
        response = Response.objects.filter(
            **same, content_hash__in=content_hash_candidates(h)
        ).first() or Response.objects.create(
            **same, content_hash=h, text=r["text"], generation=r.get("generation", {})
        )
        response_rows.append(response)
    task = Task.objects.create(
        project=project,
        prompt=prompt,
        kind=kind,
        required_labels=project.overlap,
        content_hash=task_hash,
        source=source,
        priority=priority,
        metadata=metadata or {},
    )
    TaskItem.objects.bulk_create(
        TaskItem(task=task, response=r, position=i) for i, r in enumerate(response_rows)
    )
    return task, True
