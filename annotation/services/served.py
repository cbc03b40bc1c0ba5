"""Served traffic as project data: a conversation the model gateway served, and the feedback
on it, become prompts, responses and labels of a named external source.

The serving layer (``models_registry.serving``) calls this only while the project consents
(``ServingSettings.learn_from_traffic``, off by default) and hands in texts it has already
PII-scrubbed with the snapshot pipeline's own scrubber. The rows go through the importer
(``import_rows``): deduplicated by content hash, idempotent, and labelled by the external
account ``external:served-<key name>`` (``user_external_get_or_create``), so a snapshot
tells them apart from annotators' labels (``SERVED_ANNOTATOR_PREFIX``).
"""

from __future__ import annotations

from django.utils.text import slugify

from annotation.models import Label, Project, TaskKind

SERVED_SOURCE = "served"
SERVED_ANNOTATOR_PREFIX = "external:served-"


def served_source_name(key_name: str) -> str:
    """The external annotator's name for feedback sent with the API key ``key_name``."""
    return f"served-{slugify(key_name)[:80] or 'key'}"


def served_exchange_record(
    *,
    project: Project,
    recorded_by,
    key_name: str,
    messages: list[dict],
    answers: list[tuple[str, str]],
    chosen_index: int | None = None,
) -> Label | None:
    """Write the conversation and its answers ``[(text, model name)]``; with ``chosen_index``
    (a preference between two answers), the pairwise label of the served source.

    Returns the label (new or already there), or None for a conversation without one."""
    from annotation.importers.rows import _Row
    from annotation.importers.writing import import_rows
    from annotation.services.hashing import canonical_json, content_hash, prompt_messages_hash
    from annotation.services.members import user_external_get_or_create

    source = served_source_name(key_name)
    preference = chosen_index is not None
    row = _Row(
        line=1,
        messages=[{"role": m["role"], "content": m["content"]} for m in messages],
        responses=[{"text": text, "model_name": model} for text, model in answers],
        kinds=[TaskKind.PAIRWISE] if preference else [],
        chosen_index=chosen_index,
        source=SERVED_SOURCE,
        metadata={"served_by": source},
    )
    if preference and chosen_index != 0:
        # The importer reads the chosen answer first.
        row.responses = [row.responses[chosen_index], row.responses[1 - chosen_index]]
        row.chosen_index = 0
    import_rows(
        project=project,
        rows=[row],
        kind="preferences" if preference else "responses",
        created_by=recorded_by,
        filename=f"{SERVED_SOURCE}:{source}",
        sha256=content_hash(canonical_json([row.messages, row.responses])),
        fmt="served",
        annotator_name=source,
    )
    if not preference:
        return None
    annotator = user_external_get_or_create(name=source)
    texts = {r["text"] for r in row.responses}
    return (
        Label.objects.filter(annotator=annotator, task__project=project, task__kind="pairwise")
        .filter(task__prompt__content_hash=prompt_messages_hash(row.messages))
        .filter(task__items__response__text__in=texts)
        .order_by("-id")
        .first()
    )
