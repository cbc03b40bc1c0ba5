"""The annotation lead's settings of a project: gold checks, aggregation, flags, label edits,
the rubric. One service, used by the manage page and the API alike.

Stored in ``Project.options`` (the rubric is a column, validated by ``project_update``):
- ``quality``: the gold fields of ``annotation.quality.config.QualityConfig``;
- ``aggregation``: ``policy``, ``min_agreement``, ``min_labels`` of the one aggregation engine's
  ``AggregationConfig`` (the project's default; a snapshot still records its own);
- ``flags``: ``allowed`` (which content flags annotators may set; a flag left out is refused at
  submit) and the project's snapshot flag policy, the fields of
  ``annotation.quality.flag_policy.FlagPolicy`` (``min_flags``; the action for ``unsafe``,
  ``personal_data``, ``spam`` and ``other`` flags), which every new snapshot records and applies;
- ``labels``: ``edit_window_hours``, how long after submitting an annotator may edit a label
  (absent: no limit, as before the setting existed); ``reward_feedback``, whether annotators
  see the reward model's preference for a pair after their label is saved (never before;
  default false);
- ``privacy``: ``rationale_retention_days`` (label rationales older than this are cleared by
  ``manage.py apply_retention``), ``raw_text_retention_days`` (prompts no label ever used,
  older than this, are deleted with their responses and unlabelled tasks; see
  ``annotation.services.retention``), and ``keep_rationales_on_erasure`` (an erased annotator's
  rationales are kept, without their name, instead of removed; default false). Absent: kept.
A value sent as ``None`` clears the setting back to its default.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction

from annotation.labels import FLAGS
from annotation.models import Project
from annotation.quality.aggregation import POLICIES, AggregationConfig
from annotation.quality.config import QualityConfig
from annotation.quality.flag_policy import ACTIONS, FlagPolicy
from annotation.services.projects import project_update
from config.errors import ValidationFailed

# section -> key -> (type, low, high); a str type takes one of ``CHOICES[(section, key)]``.
SETTINGS: dict[str, dict[str, tuple]] = {
    "quality": {
        "gold_rate": (float, 0, 1),
        "gold_threshold": (float, 0, 1),
        "gold_min_answers": (int, 1, 10_000),
    },
    "aggregation": {
        "policy": (str, None, None),
        "min_agreement": (float, 0.01, 1),
        "min_labels": (int, 1, 1_000),
    },
    "flags": {
        "allowed": (list, None, None),
        "min_flags": (int, 1, 1_000),
        **{flag: (str, None, None) for flag in ACTIONS},
    },
    "labels": {
        "edit_window_hours": (int, 1, 24 * 366),
        "reward_feedback": (bool, None, None),
    },
    "privacy": {
        "rationale_retention_days": (int, 1, 36_600),
        "raw_text_retention_days": (int, 1, 36_600),
        "keep_rationales_on_erasure": (bool, None, None),
    },
}
CHOICES = {
    ("aggregation", "policy"): POLICIES,
    ("flags", "allowed"): FLAGS,
    **{("flags", flag): actions for flag, actions in ACTIONS.items()},
}
POLICY_FIELDS = tuple(FlagPolicy().as_dict())


def project_settings(project: Project) -> dict:
    """Every setting with its current value (defaults filled in)."""
    options = project.options or {}
    quality = QualityConfig.from_options(options)
    aggregation = AggregationConfig.from_dict(options.get("aggregation"))
    return {
        "quality": {key: getattr(quality, key) for key in SETTINGS["quality"]},
        "aggregation": {key: getattr(aggregation, key) for key in SETTINGS["aggregation"]},
        "flags": {
            "allowed": list(project_allowed_flags(project)),
            **project_flag_policy(project).as_dict(),
        },
        "labels": {
            "edit_window_hours": (options.get("labels") or {}).get("edit_window_hours"),
            "reward_feedback": project_reward_feedback(project),
        },
        "privacy": project_privacy(project),
        "rubric": project.rubric,
    }


def project_aggregation_config(project: Project) -> AggregationConfig:
    """The project's default aggregation (policy, min_agreement, min_labels)."""
    return AggregationConfig.from_dict((project.options or {}).get("aggregation"))


def project_allowed_flags(project: Project) -> tuple[str, ...]:
    allowed = ((project.options or {}).get("flags") or {}).get("allowed")
    return tuple(FLAGS if allowed is None else allowed)


def project_flag_policy(project: Project) -> FlagPolicy:
    """The flag policy the project's new snapshots apply: its setting over the defaults."""
    stored = (project.options or {}).get("flags") or {}
    return FlagPolicy(**{key: stored[key] for key in POLICY_FIELDS if key in stored})


def project_label_edit_window(project: Project) -> timedelta | None:
    hours = ((project.options or {}).get("labels") or {}).get("edit_window_hours")
    return None if hours is None else timedelta(hours=hours)


def project_reward_feedback(project: Project) -> bool:
    """Whether annotators see the reward model's preference after they submit (default off)."""
    return bool(((project.options or {}).get("labels") or {}).get("reward_feedback", False))


def project_privacy(project: Project) -> dict:
    """The project's retention and erasure settings (``None``: no retention limit)."""
    stored = (project.options or {}).get("privacy") or {}
    return {
        "rationale_retention_days": stored.get("rationale_retention_days"),
        "raw_text_retention_days": stored.get("raw_text_retention_days"),
        "keep_rationales_on_erasure": bool(stored.get("keep_rationales_on_erasure", False)),
    }


def _checked(section: str, key: str, value):
    field = f"{section}.{key}"
    kind, low, high = SETTINGS[section][key]
    if kind is bool:
        if not isinstance(value, bool):
            raise ValidationFailed(f"{field} must be true or false", field=field)
        return value
    if kind is str:
        if value not in CHOICES[(section, key)]:
            raise ValidationFailed(
                f"{field} must be one of {list(CHOICES[(section, key)])}", field=field
            )
        return value
    if kind is list:
        choices = CHOICES[(section, key)]
        if not isinstance(value, list) or any(v not in choices for v in value):
            raise ValidationFailed(
                f"{field} must be a list drawn from {list(choices)}", field=field
            )
        return [c for c in choices if c in value]
    return setting_number(field, value, kind=kind, low=low, high=high)


def setting_number(field: str, value, *, kind: type, low, high):
    """A project setting's number, checked: a real number (not a bool), whole for ``int``,
    within [low, high]; else a 400 naming ``field``. Shared with the review settings."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationFailed(f"{field} must be a number", field=field)
    if kind is int and value != int(value):
        raise ValidationFailed(f"{field} must be a whole number", field=field)
    if not low <= value <= high:
        raise ValidationFailed(f"{field} must be from {low} to {high}", field=field)
    return kind(value)


@transaction.atomic
def project_settings_update(*, project: Project, changes: dict) -> dict:
    """Apply ``changes`` ({section: {key: value}}, and ``rubric``); all or nothing.

    Every value is checked before anything is written; the first bad one is a 400 naming its
    field (``quality.gold_rate``). The resulting quality and aggregation configs are checked
    whole too (a combination their dataclasses refuse is refused here).
    """
    if not isinstance(changes, dict):
        raise ValidationFailed("settings must be an object", field="settings")
    unknown = sorted(set(changes) - {*SETTINGS, "rubric"})
    if unknown:
        raise ValidationFailed(f"unknown settings: {unknown}", field=unknown[0])
    project = Project.objects.select_for_update().get(pk=project.pk)
    options = dict(project.options or {})
    for section, values in changes.items():
        if section == "rubric":
            continue
        if not isinstance(values, dict):
            raise ValidationFailed(f"{section} must be an object", field=section)
        unknown = sorted(set(values) - set(SETTINGS[section]))
        if unknown:
            raise ValidationFailed(
                f"unknown {section} settings: {unknown}", field=f"{section}.{unknown[0]}"
            )
        stored = dict(options.get(section) or {})
        for key, value in values.items():
            if value is None:
                stored.pop(key, None)
            else:
                stored[key] = _checked(section, key, value)
        if stored:
            options[section] = stored
        else:
            options.pop(section, None)
    for section, build in (
        ("quality", lambda: QualityConfig.from_options(options)),
        ("aggregation", lambda: AggregationConfig.from_dict(options.get("aggregation"))),
        (
            "flags",
            lambda: FlagPolicy(
                **{k: v for k, v in (options.get("flags") or {}).items() if k in POLICY_FIELDS}
            ),
        ),
    ):
        try:
            build()
        except (TypeError, ValueError) as exc:
            raise ValidationFailed(str(exc), field=section) from exc
    if "rubric" in changes:
        project_update(project=project, rubric=changes["rubric"])
    project.options = options
    project.save(update_fields=["options", "updated_at"])
    return project_settings(project)
