"""Creating and editing projects."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from annotation.models import (
    DEFAULT_RUBRIC,
    IMPORTABLE_TASK_KINDS,
    Membership,
    Project,
    Task,
    TaskStatus,
)
from annotation.roles import Role
from config.errors import Conflict, ValidationFailed


def _validate_project_fields(fields: dict) -> None:
    kinds = fields.get("task_kinds")
    if kinds is not None and (
        not isinstance(kinds, list)
        or not kinds
        or any(k not in IMPORTABLE_TASK_KINDS for k in kinds)
    ):
        raise ValidationFailed(
            f"task_kinds must be a non-empty list drawn from {list(IMPORTABLE_TASK_KINDS)}",
            field="task_kinds",
        )
    overlap = fields.get("overlap")
    if overlap is not None and not (isinstance(overlap, int) and 1 <= overlap <= 50):
        raise ValidationFailed("overlap must be a whole number from 1 to 50", field="overlap")
    lease = fields.get("lease_seconds")
    if lease is not None and not (isinstance(lease, int) and 30 <= lease <= 86_400):
        raise ValidationFailed("lease_seconds must be from 30 to 86400", field="lease_seconds")
    rubric = fields.get("rubric")
    if rubric is not None:
        names = set()
        if not isinstance(rubric, list) or not rubric:
            raise ValidationFailed("rubric must be a non-empty list", field="rubric")
        for dim in rubric:
            ok = (
                isinstance(dim, dict)
                and isinstance(dim.get("name"), str)
                and dim["name"].strip()
                and len(dim["name"]) <= 60
                and isinstance(dim.get("min"), int)
                and isinstance(dim.get("max"), int)
                and dim["min"] < dim["max"]
                and dim["max"] - dim["min"] <= 100
            )
            if not ok or dim["name"] in names:
                raise ValidationFailed(
                    "each rubric dimension needs a unique name and whole-number min < max",
                    field="rubric",
                )
            names.add(dim["name"])
    name = fields.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 200):
        raise ValidationFailed("name must be 1 to 200 characters", field="name")
    guidelines = fields.get("guidelines")
    if guidelines is not None and (not isinstance(guidelines, str) or len(guidelines) > 200_000):
        raise ValidationFailed("guidelines must be text under 200,000 characters")


def _unique_slug(name: str) -> str:
    base = slugify(name)[:60] or "project"
    slug, n = base, 1
    while Project.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def project_create(
    *,
    name: str,
    created_by,
    slug: str | None = None,
    guidelines: str = "",
    task_kinds: list[str] | None = None,
    overlap: int = 1,
    rubric: list[dict] | None = None,
    lease_seconds: int = settings.TANDEM_DEFAULT_LEASE_SECONDS,
    lead_settings: dict | None = None,
) -> Project:
    """A project whose creator is its admin. ``lead_settings`` are the lead's settings
    (gold checks, aggregation, flags, label edits) as ``project_settings_update`` takes them,
    checked the same way; a bad one refuses the whole creation (nothing is written)."""
    fields = {
        "name": name,
        "guidelines": guidelines,
        "task_kinds": task_kinds or list(IMPORTABLE_TASK_KINDS),
        "overlap": overlap,
        "rubric": rubric or [dict(d) for d in DEFAULT_RUBRIC],
        "lease_seconds": lease_seconds,
    }
    _validate_project_fields(fields)
    if slug is not None and (slugify(slug) != slug or not slug):
        raise ValidationFailed("slug may hold only lowercase letters, digits and hyphens")
    if slug and Project.objects.filter(slug=slug).exists():
        raise Conflict(f"a project with slug {slug!r} exists", code="slug_taken")
    project = Project.objects.create(
        slug=slug or _unique_slug(name),
        created_by=created_by,
        **fields,
    )
    if created_by is not None:
        Membership.objects.create(project=project, user=created_by, role=Role.ADMIN)
    if lead_settings:
        # project_settings imports this module (for project_update); imported here.
        from annotation.services.project_settings import project_settings_update

        project_settings_update(project=project, changes=lead_settings)
        project.refresh_from_db()
    return project


EDITABLE_PROJECT_FIELDS = ("name", "guidelines", "task_kinds", "overlap", "rubric", "lease_seconds")


@transaction.atomic
def project_update(*, project: Project, **fields) -> Project:
    unknown = set(fields) - set(EDITABLE_PROJECT_FIELDS)
    if unknown:
        raise ValidationFailed(f"these fields cannot be changed: {sorted(unknown)}")
    # A field sent as null is not "absent" (DRF lets a form's JSON "null" through as None):
    # every editable field is NOT NULL, so say so instead of failing in the database.
    nulls = sorted(key for key, value in fields.items() if value is None)
    if nulls:
        raise ValidationFailed(f"these fields cannot be null: {nulls}", field=nulls[0])
    _validate_project_fields(fields)
    for key, value in fields.items():
        setattr(project, key, value)
    project.save(update_fields=[*fields, "updated_at"])
    if "overlap" in fields:
        # Open tasks follow the new overlap; a task never needs fewer labels than it has, so
        # one that already has more than the new overlap is done with what it has. Gold
        # tasks keep taking every annotator's label (annotation.quality owns their overlap).
        tasks = Task.objects.filter(project=project, status=TaskStatus.OPEN, gold__isnull=True)
        tasks.filter(label_count__lte=project.overlap).update(required_labels=project.overlap)
        tasks.filter(label_count__gt=project.overlap).update(required_labels=F("label_count"))
        tasks.filter(label_count__gte=F("required_labels")).update(
            status=TaskStatus.DONE, completed_at=timezone.now()
        )
    return project
