"""The automatic review cycle: pinned prompts, blind review rounds, evaluation, the next round."""

import json
import random

import pytest
from django_tasks_db.models import DBTaskResult
from rest_framework.test import APIClient

from annotation import services as annotation_services
from annotation.models import Prompt, Task, TaskItem
from annotation.opaque import item_ref, task_id_from_ref, task_ref
from annotation.services import prompt_messages_hash
from config.errors import Conflict, ValidationFailed
from models_registry import review_cycle, review_selectors, review_settings, selectors, services
from models_registry.models import (
    AuditEvent,
    LoopRound,
    RoundKind,
    RoundStatus,
    TrainingRunVersions,
    VersionKind,
)
from tests.models_registry.conftest import snapshot_and_run

pytestmark = pytest.mark.django_db

TINY_GENERATION = {
    "max_new_tokens": 12,
    "temperature": 1.0,
    "top_p": 1.0,
    "backend": "transformers",
}


@pytest.fixture
def prompts(project):
    conversations = [[{"role": "user", "content": f"Question {i}: bake bread?"}] for i in range(8)]
    return [
        Prompt.objects.create(
            project=project, messages=messages, content_hash=prompt_messages_hash(messages)
        )
        for messages in conversations
    ]


@pytest.fixture
def loop_project(project, prompts):
    project.options = {
        "review_fresh_prompts": 3,
        "review_generation": TINY_GENERATION,
        "review_min_labels": 0,
    }
    project.save()
    review_settings.eval_prompts_pin(project=project, prompt_ids=[prompts[0].pk, prompts[1].pk])
    project.refresh_from_db()
    return project


def test_pinning_keeps_order_adds_conversations_and_refuses_foreign_prompts(
    project, other_project, prompts
):
    # given two prompts pinned
    pinned = review_settings.eval_prompts_pin(
        project=project, prompt_ids=[prompts[3].pk, prompts[1].pk]
    )
    assert pinned == [prompts[3].pk, prompts[1].pk]
    # when a new conversation and an already pinned id are pinned
    conversation = [{"role": "user", "content": "A held-out evaluation question"}]
    pinned = review_settings.eval_prompts_pin(
        project=project, prompt_ids=[prompts[1].pk], conversations=[conversation]
    )
    # then the conversation is stored once as a prompt and appended; nothing is duplicated
    new = Prompt.objects.get(project=project, source="eval-pin")
    assert pinned == [prompts[3].pk, prompts[1].pk, new.pk]
    project.refresh_from_db()
    assert project.options["eval_prompt_ids"] == pinned
    # and a prompt of another project is refused without changing the pins
    foreign = Prompt.objects.create(project=other_project, messages=conversation, content_hash="f")
    with pytest.raises(ValidationFailed):
        review_settings.eval_prompts_pin(project=project, prompt_ids=[foreign.pk], replace=True)
    project.refresh_from_db()
    assert project.options["eval_prompt_ids"] == pinned


def test_a_review_round_puts_the_candidate_in_review_and_queues_its_job_after_commit(
    loop_project, prompts, candidate, base_version, django_capture_on_commit_callbacks
):
    events_before = AuditEvent.objects.count()
    # when the candidate's review round starts
    with django_capture_on_commit_callbacks(execute=True):
        loop_round = review_cycle.loop_round_start_review(version=candidate)
        assert not DBTaskResult.objects.exists()
    # then it reviews against the champion on the 2 pinned prompts and 3 fresh unpinned ones
    candidate.refresh_from_db()
    assert candidate.state == "in_review"
    assert loop_round.opponent == base_version
    assert loop_round.eval_prompt_ids == [prompts[0].pk, prompts[1].pk]
    assert len(loop_round.fresh_prompt_ids) == 3
    assert not set(loop_round.fresh_prompt_ids) & {prompts[0].pk, prompts[1].pk}
    event = AuditEvent.objects.order_by("-id").first()
    assert AuditEvent.objects.count() == events_before + 1
    assert (event.from_state, event.to_state, event.actor_name) == (
        "candidate",
        "in_review",
        "system",
    )
    assert event.evidence["loop_round"] == loop_round.pk
    queued = DBTaskResult.objects.get()
    assert (queued.queue_name, queued.args_kwargs["args"]) == ("generation", [loop_round.pk])


def test_a_round_is_refused_without_a_champion_and_changes_nothing(
    project, prompts, engineer, tiny_candidate_dir
):
    version = services.model_version_register(
        project=project, folder=tiny_candidate_dir, name="lonely", kind=VersionKind.POLICY,
        registered_by=engineer,
    )  # fmt: skip
    events = AuditEvent.objects.count()
    with pytest.raises(Conflict) as refused:
        review_cycle.loop_round_start_review(version=version)
    assert refused.value.code == "no_champion"
    version.refresh_from_db()
    assert version.state == "candidate"
    assert (LoopRound.objects.count(), AuditEvent.objects.count()) == (0, events)


def test_preparing_a_round_queues_one_blind_task_per_prompt_with_random_recorded_sides(
    loop_project, candidate, base_version, annotator
):
    loop_round = review_cycle.loop_round_start_review(version=candidate)
    # when the worker prepares it
    prepared = review_cycle.loop_round_prepare(round_id=loop_round.pk)
    # then there is one pairwise task per prompt: pinned + fresh
    assert prepared.status == RoundStatus.READY
    assert prepared.skipped == []
    assert len(prepared.task_ids) == 2 + 3 == Task.objects.filter(project=loop_project).count()
    names = {candidate.response_model_name, base_version.response_model_name}
    for task_id in prepared.task_ids:
        items = list(TaskItem.objects.filter(task_id=task_id).select_related("response"))
        assert {i.response.model_name for i in items} == names
        candidate_item = next(
            i for i in items if i.response.model_name == candidate.response_model_name
        )
        assert prepared.candidate_positions[str(task_id)] == candidate_item.position
    # and both sides occur (the draw is per task, seeded by round and prompt)
    assert set(prepared.candidate_positions.values()) <= {0, 1}
    # and preparing again changes nothing (idempotent)
    again = review_cycle.loop_round_prepare(round_id=loop_round.pk)
    assert again.task_ids == prepared.task_ids
    assert Task.objects.filter(project=loop_project).count() == 5

    # when an annotator claims the review tasks through the API
    client = APIClient()
    client.force_authenticate(annotator)
    payloads = []
    for _ in range(5):
        response = client.post(f"/api/projects/{loop_project.pk}/tasks/next/", {}, format="json")
        assert response.status_code == 200
        payload = response.json()
        payloads.append(json.dumps(payload))
        task = Task.objects.get(pk=task_id_from_ref(payload["task_id"]))
        annotation_services.label_submit(
            task=task, annotator=annotator, payload={"choice": "A", "strength": "clear"}
        )
    # then no payload names either version, and each task was shown once
    blob = "\n".join(payloads)
    for secret in (candidate.name, base_version.name, candidate.response_model_name, "tiny-"):
        assert secret not in blob
    assert {json.loads(p)["task_id"] for p in payloads} == {task_ref(t) for t in prepared.task_ids}
    # and the labels count as review comparisons against the champion
    summary = selectors.review_summary(candidate=candidate)
    assert summary.labels == 5


def test_the_ids_an_annotator_sees_do_not_tell_the_candidate_from_the_champion(
    loop_project, candidate, base_version, annotator
):
    # given a prepared round
    loop_round = review_cycle.loop_round_start_review(version=candidate)
    prepared = review_cycle.loop_round_prepare(round_id=loop_round.pk)
    items = TaskItem.objects.filter(task_id__in=prepared.task_ids).select_related("response")
    # then its response rows were written prompt by prompt, both versions' answers to a
    # prompt one after the other in a drawn order: no version's ids are all below the other's
    by_model: dict[str, list[int]] = {}
    for item in items:
        by_model.setdefault(item.response.model_name, []).append(item.response_id)
    mine, theirs = (
        by_model[candidate.response_model_name],
        by_model[base_version.response_model_name],
    )
    assert len(mine) == len(theirs) == 5
    assert min(mine) < max(theirs)
    assert min(theirs) < max(mine)
    for task_id in prepared.task_ids:
        pair = sorted(i.response_id for i in items if i.task_id == task_id)
        assert pair[1] - pair[0] == 1
    # and the order within a prompt is the one drawn for it, not the side shown
    order = {}
    for prompt_id in prepared.prompt_ids:
        order[prompt_id] = [0, 1]  # the jobs' order: candidate, champion
        random.Random(f"review round {loop_round.pk}:{prompt_id}").shuffle(order[prompt_id])
    for item in items:
        if item.response.model_name == candidate.response_model_name:
            other = next(i for i in items if i.task_id == item.task_id and i.pk != item.pk)
            candidate_written_first = order[item.response.prompt_id][0] == 0
            assert (item.response_id < other.response_id) == candidate_written_first
    # when an annotator claims every task of the round through the API
    client = APIClient()
    client.force_authenticate(annotator)
    for _ in prepared.task_ids:
        shown = client.post(f"/api/projects/{loop_project.pk}/tasks/next/", {}, format="json")
        view = shown.json()
        task_id = task_id_from_ref(view["task_id"])
        task_items = {item_ref(i.pk): i for i in items if i.task_id == task_id}
        # then each response is named by its task item's id (as a ref), not its response id
        assert sorted(r["id"] for r in view["responses"]) == sorted(task_items)
        names = {task_items[r["id"]].response.model_name: r["id"] for r in view["responses"]}
        # and which item id is lower says only what the side drawn at random for the task says
        # (the refs shown carry no order at all, see annotation.opaque)
        candidate_first = (
            task_items[names[candidate.response_model_name]].pk
            < task_items[names[base_version.response_model_name]].pk
        )
        position = prepared.candidate_positions[str(task_id)]
        assert candidate_first == (position == 0)
        client.post(f"/api/tasks/{view['task_id']}/skip/", {}, format="json")


def test_evaluation_records_reward_kl_and_lengths_on_the_candidate(
    loop_project, candidate, base_version, engineer, tiny_reward_dir
):
    reward = services.model_version_register(
        project=loop_project, folder=tiny_reward_dir, name="tiny-rm", kind=VersionKind.REWARD,
        registered_by=engineer,
    )  # fmt: skip
    loop_round = review_cycle.loop_round_start_review(version=candidate)
    review_cycle.loop_round_prepare(round_id=loop_round.pk)
    # when the evaluation job runs
    evaluated = review_cycle.loop_round_evaluate(round_id=loop_round.pk)
    # then both versions have a reward mean, the candidate a KL to its parent, lengths of what
    # reviewers were shown, and the candidate's metrics carry it
    assert evaluated.evaluation["reward_model"] == {"id": reward.pk, "label": reward.label}
    cand, champ = evaluated.evaluation["candidate"], evaluated.evaluation["champion"]
    assert cand["prompts"] == champ["prompts"] == 5
    assert isinstance(cand["reward_mean"], float)
    assert isinstance(champ["reward_mean"], float)
    assert cand["kl_to_parent"] is not None
    assert "kl_to_parent" not in champ
    assert cand["shown_lengths"]["responses"] == champ["shown_lengths"]["responses"] == 5
    assert 1 <= cand["lengths"]["max"] <= 12
    candidate.refresh_from_db()
    assert candidate.metrics["evaluation"]["loop_round"] == loop_round.pk
    assert candidate.metrics["reward_mean"] == 0.42  # the training metrics are kept


def _evaluated(candidate):
    """As the round's evaluation job leaves it (figures irrelevant here)."""
    LoopRound.objects.filter(version=candidate, kind=RoundKind.REVIEW).update(
        evaluation={"candidate": {"prompts": 5}, "champion": {"prompts": 5}}
    )


def test_approval_waits_for_the_rounds_evaluation_or_records_approving_without_it(
    loop_project, candidate, base_version, reviewer, add_reviews
):
    # given a candidate in review whose round's evaluation job has not run
    loop_round = review_cycle.loop_round_start_review(version=candidate)
    add_reviews(candidate, base_version, "AAB")
    events = AuditEvent.objects.count()
    # when a reviewer approves: refused, nothing changes
    with pytest.raises(Conflict) as refused:
        services.model_version_approve(version=candidate, actor=reviewer, reason="good")
    assert refused.value.code == "evaluation_not_finished"
    assert f"review round {loop_round.pk} has not finished yet" in refused.value.message
    candidate.refresh_from_db()
    assert candidate.state == "in_review"
    assert AuditEvent.objects.count() == events
    # when they say they approve without it: approved, and the audit event says so
    services.model_version_approve(
        version=candidate, actor=reviewer, reason="good enough", without_evaluation=True
    )
    approval = AuditEvent.objects.get(version=candidate, to_state="approved")
    assert approval.evidence["review"]["evaluation"] == {
        "status": "pending",
        "approved_without_it": True,
        "message": f"the evaluation job of review round {loop_round.pk} has not finished yet",
    }


def test_approval_moves_the_champion_and_queues_the_next_annotation_round(
    loop_project, candidate, base_version, reviewer, add_reviews, django_capture_on_commit_callbacks
):
    loop_project.options = {**loop_project.options, "annotation_round_prompts": 4}
    loop_project.save()
    review_cycle.loop_round_start_review(version=candidate)
    add_reviews(candidate, base_version, "AAB")
    _evaluated(candidate)
    # when a reviewer approves
    with django_capture_on_commit_callbacks(execute=True):
        services.model_version_approve(version=candidate, actor=reviewer, reason="better answers")
    # then the candidate is champion and an annotation round of 4 fresh prompts is queued
    assert selectors.alias_target(project=loop_project) == candidate
    annotation_round = LoopRound.objects.get(kind=RoundKind.ANNOTATION)
    assert (annotation_round.version, annotation_round.status) == (candidate, RoundStatus.QUEUED)
    assert len(annotation_round.fresh_prompt_ids) == 4
    assert not set(annotation_round.fresh_prompt_ids) & set(
        review_selectors.eval_prompt_ids(loop_project)
    )
    queued = DBTaskResult.objects.get()
    assert (queued.queue_name, queued.args_kwargs["args"]) == ("generation", [annotation_round.pk])
    # when the worker prepares it
    prepared = review_cycle.loop_round_prepare(round_id=annotation_round.pk)
    # then every fresh prompt became a task of two different champion samples
    assert len(prepared.task_ids) + len(prepared.skipped) == 4
    assert len(prepared.task_ids) >= 3
    for task_id in prepared.task_ids:
        items = list(TaskItem.objects.filter(task_id=task_id).select_related("response"))
        assert [i.response.model_name for i in items] == [candidate.response_model_name] * 2
        seeds = {i.response.generation["seed"] for i in items}
        assert len(seeds) == 2


def test_a_refused_approval_changes_nothing(
    loop_project, candidate, base_version, reviewer, add_reviews
):
    loop_project.options = {**loop_project.options, "review_min_win_rate": 0.6}
    loop_project.save()
    review_cycle.loop_round_start_review(version=candidate)
    add_reviews(candidate, base_version, "ABB")
    _evaluated(candidate)
    counts = (AuditEvent.objects.count(), LoopRound.objects.count(), DBTaskResult.objects.count())
    # when a reviewer tries to approve a candidate that loses
    with pytest.raises(Conflict) as refused:
        services.model_version_approve(version=candidate, actor=reviewer, reason="ship it")
    # then it is refused and the state, the champion, the log and the rounds are unchanged
    assert refused.value.code == "win_rate_too_low"
    candidate.refresh_from_db()
    assert candidate.state == "in_review"
    assert selectors.alias_target(project=loop_project) == base_version
    assert (
        AuditEvent.objects.count(),
        LoopRound.objects.count(),
        DBTaskResult.objects.count(),
    ) == counts


def _succeeded_run(project, engineer, version):
    _, run = snapshot_and_run(project, engineer, status="succeeded")
    TrainingRunVersions.objects.create(run=run, candidate_version=version)
    return run


def test_a_succeeded_runs_candidate_goes_up_for_review_and_the_run_log_says_so(
    loop_project, candidate, base_version, engineer, django_capture_on_commit_callbacks
):
    from models_registry.handover import training_run_start_review

    run = _succeeded_run(loop_project, engineer, candidate)
    # when the run's succeeded-hook runs
    with django_capture_on_commit_callbacks(execute=True):
        training_run_start_review(run)
    # then the candidate is in review on 2 pinned + 3 fresh prompts, its job is queued
    loop_round = LoopRound.objects.get(version=candidate)
    candidate.refresh_from_db()
    assert (candidate.state, len(loop_round.prompt_ids)) == ("in_review", 5)
    assert DBTaskResult.objects.get().args_kwargs["args"] == [loop_round.pk]
    run.refresh_from_db()
    assert f"review round {loop_round.pk} queued" in run.log_tail


def test_without_a_champion_the_run_log_says_why_no_review_started(
    project, prompts, engineer, tiny_candidate_dir
):
    from models_registry.handover import training_run_start_review

    version = services.model_version_register(
        project=project, folder=tiny_candidate_dir, name="first", kind=VersionKind.POLICY,
        registered_by=engineer,
    )  # fmt: skip
    run = _succeeded_run(project, engineer, version)
    training_run_start_review(run)
    run.refresh_from_db()
    version.refresh_from_db()
    assert "no review round for first v1: the project has no champion" in run.log_tail
    assert version.state == "candidate"
    assert not LoopRound.objects.exists()
