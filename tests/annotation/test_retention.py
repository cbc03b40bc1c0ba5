"""Retention: expired rationales are cleared, raw texts that never became data are deleted,
and each pass is in the data audit log."""

import json
from datetime import timedelta
from io import StringIO

from django.core.management import call_command
from django.utils import timezone

from annotation import services
from annotation.audit import DataAuditEvent
from annotation.models import Label, Prompt, Response, Task
from annotation.services.retention import project_retention_apply


def _label(project, annotator, rationale):
    lease = services.task_claim_next(project=project, annotator=annotator)
    return services.label_submit(
        task=lease.task, annotator=annotator, payload={"choice": "A", "rationale": rationale}
    ).label


def _age(queryset, days, field):
    queryset.update(**{field: timezone.now() - timedelta(days=days)})


def test_rationales_older_than_the_setting_are_cleared_once(project, annotator, make_task):
    # given one label written 40 days ago and one today, both with rationales
    make_task(), make_task()
    old, new = _label(project, annotator, "old reason"), _label(project, annotator, "new reason")
    _age(Label.objects.filter(pk=old.pk), 40, "updated_at")
    services.project_settings_update(
        project=project, changes={"privacy": {"rationale_retention_days": 30}}
    )
    # when retention runs
    out = StringIO()
    call_command("apply_retention", stdout=out)
    # then only the expired rationale is gone; the judgement is untouched
    assert json.loads(out.getvalue())[str(project.pk)]["rationales_removed"] == 1
    old.refresh_from_db(), new.refresh_from_db()
    assert (old.payload["rationale"], old.payload["outcome"], old.version) == ("", "A", 1)
    assert new.payload["rationale"] == "new reason"
    event = DataAuditEvent.objects.get(action="retention_applied")
    assert (event.project, event.details["rationales_removed"]) == (project, 1)
    # and a second pass changes nothing and records nothing
    call_command("apply_retention", stdout=StringIO())
    assert DataAuditEvent.objects.filter(action="retention_applied").count() == 1


def test_raw_texts_that_never_became_data_expire(project, annotator, make_task):
    # given five old prompts: one labelled, one pinned for evaluation, one held under a live
    # lease, two never used; and one recent unused prompt
    tasks = [make_task() for _ in range(6)]
    labelled = _label(project, annotator, "").task
    held = services.task_claim_next(project=project, annotator=annotator).task
    pinned = next(t for t in tasks if t.pk not in (labelled.pk, held.pk))
    recent = tasks[-1] if tasks[-1].pk not in (labelled.pk, held.pk, pinned.pk) else tasks[-2]
    project.options = {**project.options, "eval_prompt_ids": [pinned.prompt_id]}
    project.save()
    _age(Prompt.objects.exclude(pk=recent.prompt_id), 100, "created_at")
    services.project_settings_update(
        project=project, changes={"privacy": {"raw_text_retention_days": 90}}
    )
    project.refresh_from_db()
    # when retention runs
    done = project_retention_apply(project=project)
    # then exactly the two old unused prompts are gone, with their responses and tasks
    kept = {t.prompt_id for t in (labelled, held, pinned, recent)}
    gone = {t.prompt_id for t in tasks} - kept
    assert len(gone) == 2
    assert set(Prompt.objects.values_list("pk", flat=True)) == kept
    assert (done["prompts_deleted"], done["responses_deleted"]) == (2, 4)
    assert Response.objects.filter(prompt_id__in=gone).count() == 0
    assert Task.objects.filter(prompt_id__in=gone).count() == 0
    assert Label.objects.count() == 1


def test_bad_retention_settings_are_refused_naming_the_field(project, admin_user, client_for):
    before = dict(project.options)
    response = client_for(admin_user).patch(
        f"/api/projects/{project.pk}/settings/",
        {"privacy": {"rationale_retention_days": 0}},
        format="json",
    )
    assert (response.status_code, response.json()["field"]) == (
        400, "privacy.rationale_retention_days",
    )  # fmt: skip
    response = client_for(admin_user).patch(
        f"/api/projects/{project.pk}/settings/",
        {"privacy": {"keep_rationales_on_erasure": "yes"}},
        format="json",
    )
    assert (response.status_code, response.json()["field"]) == (
        400, "privacy.keep_rationales_on_erasure",
    )  # fmt: skip
    project.refresh_from_db()
    assert project.options == before
    ok = client_for(admin_user).patch(
        f"/api/projects/{project.pk}/settings/",
        {"privacy": {"rationale_retention_days": 30}},
        format="json",
    )
    assert ok.json()["privacy"] == {
        "rationale_retention_days": 30, "raw_text_retention_days": None,
        "keep_rationales_on_erasure": False,
    }  # fmt: skip
