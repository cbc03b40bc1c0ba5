"""The project's review settings, written: pinned evaluation prompts, approval thresholds and
round sizes, all in ``Project.options`` (read through ``review_selectors``).
"""

from __future__ import annotations

from django.db import transaction

from annotation.models import Project, Prompt
from annotation.services import prompt_messages_hash
from annotation.services.project_settings import setting_number
from config.errors import ValidationFailed
from models_registry.review_selectors import eval_prompt_ids, review_settings

# --------------------------------------------------------------------------- pinned prompts


@transaction.atomic
def eval_prompts_pin(
    *,
    project: Project,
    prompt_ids: list[int] | None = None,
    conversations: list[list[dict]] | None = None,
    replace: bool = False,
) -> list[int]:
    """Pin prompts (existing ids, or conversations stored as prompts) as the evaluation set.

    Returns the pinned ids, in pinning order. ``replace`` drops the earlier pins first."""
    project = Project.objects.select_for_update().get(pk=project.pk)
    ids = [int(i) for i in (prompt_ids or [])]
    found = set(Prompt.objects.filter(project=project, pk__in=ids).values_list("pk", flat=True))
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationFailed(
            f"prompts not in this project: {missing[:10]}", code="foreign_prompts"
        )
    for messages in conversations or []:
        if (
            not isinstance(messages, list)
            or not messages
            or not all(
                isinstance(m, dict)
                and m.get("role") in ("system", "user", "assistant")
                and isinstance(m.get("content"), str)
                for m in messages
            )
        ):
            raise ValidationFailed(
                "each prompt is a list of {role, content} messages", code="invalid_prompt"
            )
        cleaned = [{"role": m["role"], "content": m["content"]} for m in messages]
        prompt, _ = Prompt.objects.get_or_create(
            project=project,
            content_hash=prompt_messages_hash(cleaned),
            defaults={"messages": cleaned, "source": "eval-pin"},
        )
        ids.append(prompt.pk)
    if not ids:
        raise ValidationFailed("no prompts given", code="no_prompts")
    pinned = [] if replace else eval_prompt_ids(project)
    pinned = list(dict.fromkeys([*pinned, *ids]))
    project.options = {**(project.options or {}), "eval_prompt_ids": pinned}
    project.save(update_fields=["options", "updated_at"])
    return pinned


REVIEW_SETTINGS = {
    "review_min_labels": (int, 0, 100_000),
    "review_min_win_rate": (float, 0.0, 1.0),
    "review_fresh_prompts": (int, 0, 10_000),
    "annotation_round_prompts": (int, 0, 10_000),
}


@transaction.atomic
def review_settings_update(*, project: Project, **fields) -> dict:
    """Set the approval thresholds and round sizes in ``Project.options`` (None clears one)."""
    unknown = set(fields) - set(REVIEW_SETTINGS)
    if unknown:
        raise ValidationFailed(f"unknown review settings: {sorted(unknown)}", code="invalid_field")
    project = Project.objects.select_for_update().get(pk=project.pk)
    options = dict(project.options or {})
    for key, value in fields.items():
        kind, low, high = REVIEW_SETTINGS[key]
        if value is None:
            options.pop(key, None)
            continue
        options[key] = setting_number(key, value, kind=kind, low=low, high=high)
    project.options = options
    project.save(update_fields=["options", "updated_at"])
    return review_settings(project)
