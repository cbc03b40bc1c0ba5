"""Retention: a project's rationales and unused raw texts are not kept for ever.

Two settings of the project (``privacy`` in ``project_settings``), both off by default:

- ``rationale_retention_days``: a label's free-text rationale (and its earlier revisions')
  is emptied once the label was last written more than that many days ago. The judgement,
  flags and version stay, so snapshots (frozen on label ids and versions, and exporting no
  rationale) rebuild the same rows.
- ``raw_text_retention_days``: "raw texts" are the prompts and responses imported or
  generated for labelling. Those that became data are kept: a prompt with any labelled task
  is what labels, snapshots and their rebuilds are made of, and deleting it would change a
  frozen snapshot. What expires is text that never became data: a prompt older than the limit
  none of whose tasks has a label, that is not a gold task, not pinned for evaluation, not
  held under a live lease and not named by the review cycle (``retention_prompt_guards``),
  is deleted with its responses and its unlabelled tasks.

Each pass that changes something writes one ``retention_applied`` event to the data audit
log with its counts. The workers run it for every project daily (``annotation.periodic``), and
``manage.py apply_retention`` at once by hand; running it twice changes nothing the second time.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotation.audit import DataAuditAction, data_audit_record
from annotation.models import Label, Lease, LeaseState, Project, Prompt
from annotation.services import hooks
from annotation.services.erasure import labels_rationales_remove
from annotation.services.project_settings import project_privacy
from config.fieldcrypt import PREFIX


def _expired_rationale_labels(project: Project, cutoff):
    has_text = Q(payload__rationale__startswith=PREFIX) | Q(
        revisions__payload__rationale__startswith=PREFIX
    )
    ids = (
        Label.objects.filter(task__project=project, updated_at__lt=cutoff)
        .filter(has_text)
        .values("pk")
        .distinct()
    )
    return Label.objects.filter(pk__in=ids)


def _expired_prompts(project: Project, cutoff):
    pinned = (project.options or {}).get("eval_prompt_ids") or []
    keep = {i for i in pinned if isinstance(i, int)}
    for guard in hooks.retention_prompt_guards:
        keep |= set(guard(project))
    keep |= set(
        Lease.objects.filter(
            task__project=project, state=LeaseState.ACTIVE, expires_at__gt=timezone.now()
        ).values_list("task__prompt_id", flat=True)
    )
    return (
        Prompt.objects.filter(project=project, created_at__lt=cutoff)
        .exclude(tasks__labels__isnull=False)
        .exclude(tasks__gold__isnull=False)
        .exclude(pk__in=keep)
    )


@transaction.atomic
def project_retention_apply(*, project: Project, now=None) -> dict:
    """Apply ``project``'s retention settings once; returns what it did (all zeros: nothing)."""
    now = now or timezone.now()
    privacy = project_privacy(project)
    done = {"rationales_removed": 0, "prompts_deleted": 0, "responses_deleted": 0}
    if privacy["rationale_retention_days"]:
        cutoff = now - timedelta(days=privacy["rationale_retention_days"])
        done["rationales_removed"] = labels_rationales_remove(
            labels=_expired_rationale_labels(project, cutoff)
        )
    if privacy["raw_text_retention_days"]:
        cutoff = now - timedelta(days=privacy["raw_text_retention_days"])
        prompt_ids = list(_expired_prompts(project, cutoff).values_list("pk", flat=True))
        if prompt_ids:
            _, by_model = Prompt.objects.filter(pk__in=prompt_ids).delete()
            done["prompts_deleted"] = by_model.get("annotation.Prompt", 0)
            done["responses_deleted"] = by_model.get("annotation.Response", 0)
    if any(done.values()):
        data_audit_record(
            action=DataAuditAction.RETENTION_APPLIED,
            subject=f"project:{project.pk}",
            project=project,
            details={**done, "settings": privacy},
        )
    return done


def retention_apply_all(*, now=None) -> dict[int, dict]:
    """Every project with a retention setting, one transaction each."""
    out = {}
    for project in Project.objects.filter(options__has_key="privacy").order_by("pk"):
        out[project.pk] = project_retention_apply(project=project, now=now)
    return out
