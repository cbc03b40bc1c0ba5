"""One whole round of the loop on tiny random models, through ``manage.py loop --tiny``:

labels → snapshot → reward model → DPO → candidate → generated responses → blind review tasks
→ submitted reviews → win rate → approval on the decision page → champion moved → new
annotation tasks written by the new champion.
"""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from annotation import services as annotation_services
from annotation.models import Prompt, Task, TaskItem
from annotation.opaque import item_ref, task_ref
from annotation.roles import Role
from models_registry import review_cycle, review_settings, round_report, selectors
from models_registry.loop import loop_run
from models_registry.models import AuditEvent, LoopRound, RoundKind, RoundStatus
from models_registry.run_versions import run_versions_of, training_run_candidate
from rlhf.models import TrainingRun
from rlhf.snapshots.selectors import snapshot_split_prompts

pytestmark = pytest.mark.slow

DB_TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default", "training", "generation", "snapshots"],
    }
}


@pytest.fixture
def loop_settings(snapshot_settings, tmp_path):
    settings = snapshot_settings
    settings.TANDEM_MODEL_CACHE = tmp_path / "models"
    settings.TANDEM_MODEL_ROOTS = [tmp_path / "models", settings.TANDEM_ARTIFACT_ROOT]
    settings.TANDEM_RUN_HEARTBEAT_SECONDS = 0.5
    settings.TANDEM_RUN_FLUSH_SECONDS = 0.2
    settings.TASKS = DB_TASKS  # nothing runs behind the command's back: no worker here
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return settings


def _claim_and_prefer(client, project, candidate_name: str, model_by_shown_id: dict) -> dict:
    """Claim the next task over the API and submit a label preferring the candidate's side."""
    shown = client.post(f"/api/projects/{project.pk}/tasks/next/", {}, format="json")
    assert shown.status_code == 200
    payload = shown.json()
    left, _right = (r["id"] for r in payload["responses"])
    choice = "left" if model_by_shown_id[left] == candidate_name else "right"
    submitted = client.post(
        f"/api/tasks/{payload['task_id']}/labels/",
        {"payload": {"choice": choice, "strength": "clear"}},
        format="json",
    )
    assert submitted.status_code == 201, submitted.content
    return payload


def test_one_whole_round_of_the_loop(loop_settings, small_project, engineer, make_user):
    project = small_project
    reviewer, annotator = make_user("rita-reviewer"), make_user("andy-annotator")
    annotation_services.membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    annotation_services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    # given 40 labelled pairs, two pinned evaluation prompts and small round sizes
    pinned = review_settings.eval_prompts_pin(
        project=project,
        conversations=[
            [{"role": "user", "content": "How do I keep bread fresh?"}],
            [{"role": "user", "content": "Name a safe way to store knives."}],
        ],
    )
    project.refresh_from_db()
    # (a round this small yields 4 review labels: the threshold is set to match)
    project.options = {
        **project.options,
        "review_fresh_prompts": 2,
        "annotation_round_prompts": 3,
        "review_min_labels": 4,
    }
    project.save()

    # when the engineer runs one round of the loop
    out = StringIO()
    call_command("loop", "--project", project.slug, "--tiny", "--as", engineer.username, stdout=out)

    # then a reward model and a DPO policy were trained on one snapshot of the labels
    runs = {r.method: r for r in TrainingRun.objects.filter(project=project)}
    assert set(runs) == {"reward", "dpo"}
    assert all(r.status == "succeeded" for r in runs.values())
    assert runs["reward"].dataset_snapshot_id == runs["dpo"].dataset_snapshot_id
    base = run_versions_of(run=runs["dpo"]).base_model_version
    candidate = training_run_candidate(run=runs["dpo"])
    assert selectors.alias_target(project=project) == base
    assert (candidate.parent, candidate.state, candidate.launched_by) == (
        base,
        "in_review",
        engineer,
    )
    # and the review round put 2 pinned + 2 fresh prompts in front of people, blind
    review = LoopRound.objects.get(version=candidate, kind=RoundKind.REVIEW)
    assert review.status == RoundStatus.READY
    assert review.eval_prompt_ids == pinned
    assert len(review.task_ids) == 4
    assert review.evaluation["reward_model"]["id"] == training_run_candidate(run=runs["reward"]).pk
    assert review.evaluation["candidate"]["kl_to_parent"] is not None
    assert f"/models/{candidate.pk}/review/" in out.getvalue()
    # and the command printed what the round bought: every label of the snapshot spent
    report = round_report.loop_round_report(review)
    snapshot = runs["dpo"].dataset_snapshot
    assert report["labels_total"] == report["labels_spent"] == snapshot.label_count == 40
    assert report["kl_to_parent"] == round(review.evaluation["candidate"]["kl_to_parent"], 4)
    assert report["win_rate"] is None
    assert "\n".join(round_report.loop_round_lines(report)) in out.getvalue()
    assert f"/models/{candidate.pk}/report/" in out.getvalue()

    # when an annotator labels the four review tasks, preferring the candidate every time
    client = APIClient()
    client.force_authenticate(annotator)
    items = TaskItem.objects.filter(task_id__in=review.task_ids).select_related("response")
    # annotators see item ids, as refs (annotation.opaque)
    model_by_shown_id = {item_ref(i.pk): i.response.model_name for i in items}
    payloads = [
        _claim_and_prefer(client, project, candidate.response_model_name, model_by_shown_id)
        for _ in review.task_ids
    ]
    # then the annotator saw only the review tasks, never a model name
    assert sorted(p["task_id"] for p in payloads) == sorted(task_ref(t) for t in review.task_ids)
    blob = json.dumps(payloads)
    for secret in (candidate.name, base.name, candidate.response_model_name, "@v"):
        assert secret not in blob
    # and the candidate's win rate against the champion is 4/4
    summary = selectors.review_summary(candidate=candidate)
    assert (summary.labels, summary.win_rate.wins, summary.win_rate.win_rate) == (4, 4, 1.0)
    # and the round's report carries it
    report = round_report.loop_round_report(review)
    assert (report["reviews"], report["win_rate"]) == (4, 1.0)

    # when the reviewer approves on the decision page with a rationale
    page = Client()
    page.force_login(reviewer)
    decision = page.post(
        f"/models/{candidate.pk}/review/",
        {"decision": "approve", "rationale": "wins every blind comparison"},
    )
    assert decision.status_code == 302
    # then the candidate is approved and champion
    candidate.refresh_from_db()
    assert candidate.state == "approved"
    assert selectors.alias_target(project=project) == candidate
    last = AuditEvent.objects.filter(version=candidate).order_by("-id")[:2]
    assert [e.action for e in last] == ["alias_set", "transition"]
    assert last[1].evidence["review"]["win_rate"] == 1.0

    # when the generation worker runs the next round the approval queued
    next_round = LoopRound.objects.get(version=candidate, kind=RoundKind.ANNOTATION)
    prepared = review_cycle.loop_round_prepare(round_id=next_round.pk)
    # then the new champion's two samples per fresh prompt are new annotation tasks
    assert len(prepared.task_ids) + len(prepared.skipped) == 3
    assert len(prepared.task_ids) >= 2
    new_items = TaskItem.objects.filter(task_id__in=prepared.task_ids).select_related("response")
    assert {i.response.model_name for i in new_items} == {candidate.response_model_name}
    assert Task.objects.filter(pk__in=prepared.task_ids, status="open").count() == len(
        prepared.task_ids
    )


def test_a_round_can_be_judged_on_its_snapshots_test_prompts(
    loop_settings, small_project, engineer
):
    # given 40 labelled pairs and no pinned prompt, no fresh prompt per review
    project = small_project
    review_settings.review_settings_update(project=project, review_fresh_prompts=0)
    project.refresh_from_db()

    # when a round runs with a third of the prompts held out and 3 of them pinned
    outcome = loop_run(
        project=project,
        launched_by=engineer,
        tiny=True,
        say=lambda _line: None,
        snapshot_config={"split": {"test": 0.3}},
        pin_test_prompts=3,
    )

    # then the review round asked exactly 3 prompts of the snapshot's test split
    test_prompts = snapshot_split_prompts(snapshot=outcome.snapshot, split="test")
    review = outcome.review_round
    assert review.fresh_prompt_ids == []
    asked = [Prompt.objects.get(pk=i).messages for i in review.eval_prompt_ids]
    assert asked == test_prompts[:3]
    # and the reward model's accuracy was measured on every test pair of that snapshot
    test_pairs = outcome.snapshot.row_counts["preference"]["test"]
    assert test_pairs >= 3
    accuracy = review.evaluation["reward_accuracy"]
    assert (accuracy["pairs"], accuracy["before"]) == (test_pairs, None)
    assert accuracy["after"]["version"] == training_run_candidate(run=outcome.reward_run).pk
