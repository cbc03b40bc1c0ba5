"""Quality caches, gold tasks, pauses and adjudication, through the annotation services."""

import json
import random

import pytest

from annotation import services
from annotation.models import Label, TaskKind, TaskStatus
from annotation.quality import selectors as qs
from annotation.quality import services as quality
from annotation.quality.aggregation import AggregationConfig
from annotation.quality.models import (
    Adjudication,
    AnnotatorQuality,
    GoldTask,
    ProjectQuality,
    QualityDirty,
    TaskQuality,
)
from annotation.roles import Role
from config.errors import Conflict, ValidationFailed

pytestmark = pytest.mark.django_db


def _a_of(task):
    return task.items.get(position=0).response_id


def _caches(project):
    return (
        {r.kind: (r.stats, r.pairs) for r in ProjectQuality.objects.filter(project=project)},
        {
            r.annotator_id: r.stats
            for r in AnnotatorQuality.objects.filter(project=project)
            if r.stats
        },
        {r.task_id: r.facts for r in TaskQuality.objects.filter(project=project)},
    )


# -- the refresh cycle ------------------------------------------------------------------------


def test_a_submitted_label_reaches_the_report_through_the_hook(
    immediate_tasks, no_gold_draws, project, annotators, make_task, label_as
):
    # given a pairwise task and an annotator
    make_task()
    (ann,) = annotators(1)
    # when they submit a label (the hook runs after commit; the job runs at once here)
    label_as(project, ann, {"choice": "A", "strength": "clear"})
    # then the stored report counts it, and nothing is left dirty
    report = qs.quality_report(project)
    assert report["progress"]["labels"] == 1
    assert report["kinds"]["pairwise"]["distribution"] == {"A": 1}
    assert [r["name"] for r in report["annotators"]] == ["ann0"]
    assert not QualityDirty.objects.filter(project=project).exists()


def test_incremental_refreshes_equal_a_full_recompute(
    queued_tasks, no_gold_draws, project, annotators, make_task, label_as, rng
):
    # given pairwise and ranking tasks labelled in several rounds, with refreshes between
    project.overlap = 3
    project.save()
    for _ in range(3):
        make_task(TaskKind.RANKING)
    for _ in range(4):
        make_task()
    people = annotators(4)
    choices = ["A", "B", "tie", "both_bad"]
    for round_ in range(4):
        for user in people:
            lease = services.task_claim_next(project=project, annotator=user)
            if lease is None:
                continue
            if round_ == 1 and user == people[0]:
                services.task_skip(task=lease.task, annotator=user, reason="unsure")
                quality.quality_mark_dirty(project_id=project.pk, task_ids=[lease.task_id])
            elif lease.task.kind == TaskKind.RANKING:
                ids = list(lease.shown_order)
                rng.shuffle(ids)
                label_as(project, user, {"ranking": [[ids[0]], ids[1:]]}, duration_ms=2_000)
            else:
                label_as(project, user, {"choice": rng.choice(choices)}, duration_ms=9_000)
        quality.quality_refresh(project_id=project.pk)
    # and a label edited afterwards
    label = Label.objects.filter(task__project=project, kind=TaskKind.PAIRWISE).first()
    services.label_edit(label=label, editor=label.annotator, payload={"choice": "both_bad"})
    quality.quality_mark_dirty(project_id=project.pk, task_ids=[label.task_id])
    quality.quality_refresh(project_id=project.pk)
    incremental = _caches(project)
    report = qs.quality_report(project)

    # when everything is rebuilt from the labels
    result = quality.quality_recompute(project_id=project.pk)

    # then the caches are the same, count for count
    assert result.tasks == len(incremental[2]) >= 4
    assert _caches(project) == incremental
    rebuilt = qs.quality_report(project)
    assert rebuilt["kinds"] == report["kinds"]
    assert rebuilt["annotators"] == report["annotators"]
    assert sum(k["skips"] for k in report["kinds"].values()) == 1
    assert report["kinds"]["ranking"]["kendall_w_tasks"] >= 1


def test_imported_preference_pairs_without_a_strength_are_counted(
    queued_tasks, no_gold_draws, project, admin_user, annotators, label_as
):
    # given a pair imported from a preference file (its label has an outcome, no strength)
    from annotation.importers import import_file

    row = {"prompt": "hi", "chosen": "a kind answer", "rejected": "a rude answer"}
    import_file(project=project, data=json.dumps(row).encode(), filename="hh.jsonl",
                kind="preferences", created_by=admin_user)  # fmt: skip
    # and an annotator's label on the same task, which marks it for the next refresh
    (ann,) = annotators(1)
    label_as(project, ann, {"choice": "tie"})
    # when the caches are refreshed, then rebuilt from the labels
    quality.quality_refresh(project_id=project.pk)
    refreshed = _caches(project)
    quality.quality_recompute(project_id=project.pk)
    # then both labels count for the outcome; only the annotator's is on the strength scale
    report = qs.quality_report(project)
    assert report["progress"]["labels"] == 2
    assert sum(report["kinds"]["pairwise"]["distribution"].values()) == 2
    assert report["kinds"]["pairwise"]["distribution"]["tie"] == 1
    assert _caches(project) == refreshed


# -- position bias, end to end -------------------------------------------------------------------


def test_side_biased_annotator_is_flagged_and_gold_agreeing_one_is_not(
    queued_tasks, no_gold_draws, project, member, make_task, label_as
):
    # given 60 pairwise tasks whose better response (by construction) is A, labelled by two
    # annotators who see the sides in random order
    tasks = [make_task() for _ in range(60)]
    better = {t.pk: _a_of(t) for t in tasks}
    lefty, careful = member(Role.ANNOTATOR, "lefty"), member(Role.ANNOTATOR, "careful")

    def always_left(lease):
        return {"choice": "left"}

    def picks_better(lease):
        side = "left" if lease.shown_order[0] == better[lease.task_id] else "right"
        return {"choice": side}

    for _ in tasks:
        label_as(project, lefty, choose=always_left)
        label_as(project, careful, choose=picks_better)

    # when the caches are refreshed
    quality.quality_refresh(project_id=project.pk)

    # then the always-left annotator is flagged (p < 0.01) and the careful one is not
    rows = {r["name"]: r for r in qs.quality_report(project)["annotators"]}
    assert rows["lefty"]["position_bias"]["share_left"] == 1.0
    assert rows["lefty"]["position_bias"]["p_value"] < 0.01
    assert rows["lefty"]["position_bias"]["flagged"]
    assert "position_bias" in rows["lefty"]["alerts"]
    assert not rows["careful"]["position_bias"]["flagged"]
    assert rows["careful"]["position_bias"]["p_value"] > 0.01
    assert "position_bias" not in rows["careful"]["alerts"]


# -- gold ------------------------------------------------------------------------------------------


def test_marking_gold_takes_the_task_out_of_the_ordinary_queue(
    queued_tasks, no_gold_draws, project, admin_user, annotators, make_task
):
    gold_task = make_task()
    ordinary = make_task()
    (ann,) = annotators(1)

    quality.gold_mark(task=gold_task, payload={"choice": "A"}, by=admin_user)

    gold_task.refresh_from_db()
    assert gold_task.required_labels == quality.GOLD_REQUIRED_LABELS
    assert GoldTask.objects.get(task=gold_task).expected["outcome"] == "A"
    lease = services.task_claim_next(project=project, annotator=ann)
    assert lease.task_id == ordinary.pk


def test_gold_is_served_at_the_projects_rate(
    queued_tasks, project, admin_user, annotators, make_task
):
    # given one gold task among ordinary ones and a gold rate of 30%
    project.options = {"quality": {"gold_rate": 0.3}}
    project.save()
    gold_task = make_task()
    for _ in range(3):
        make_task()
    quality.gold_mark(task=gold_task, payload={"choice": "B"}, by=admin_user)
    (ann,) = annotators(1)

    # then draws pick it about 30% of the time
    draws = random.Random(3)
    picks = [quality.gold_pick_for(ann, project, rng=draws) for _ in range(1000)]
    assert 250 <= sum(p == gold_task.pk for p in picks) <= 350
    assert set(picks) == {None, gold_task.pk}
    # and never again once the annotator was served it
    project.options = {"quality": {"gold_rate": 1.0}}
    project.save()
    assert services.task_claim_next(project=project, annotator=ann).task_id == gold_task.pk
    assert all(quality.gold_pick_for(ann, project, rng=draws) is None for _ in range(50))


def test_claim_serves_gold_through_the_preemptor(
    queued_tasks, project, admin_user, annotators, make_task
):
    project.options = {"quality": {"gold_rate": 1.0}}
    project.save()
    make_task()
    gold_task = make_task()
    quality.gold_mark(task=gold_task, payload={"choice": "A"}, by=admin_user)
    (ann,) = annotators(1)

    lease = services.task_claim_next(project=project, annotator=ann)

    assert lease.task_id == gold_task.pk


def test_failing_gold_pauses_the_annotator_until_reinstated(
    queued_tasks, project, admin_user, member, make_task, label_as
):
    # given five gold tasks (expected: A) served to every claim, and a threshold of 70%
    project.options = {"quality": {"gold_rate": 1.0, "gold_min_answers": 5}}
    project.save()
    golds = [make_task() for _ in range(5)]
    for t in golds:
        quality.gold_mark(task=t, payload={"choice": "A"}, by=admin_user)
    make_task()
    sloppy = member(Role.ANNOTATOR, "sloppy")
    good = member(Role.ANNOTATOR, "good")
    # when one annotator answers B on all of them and the other answers A
    for _ in golds:
        label_as(project, sloppy, {"choice": "B"})
        label_as(project, good, {"choice": "A"})
    quality.quality_refresh(project_id=project.pk)

    # then the first is paused, told why, and counted as failing; the second is not
    assert qs.annotators_failing_gold(project) == {sloppy.pk}
    with pytest.raises(quality.AnnotatorPaused, match="0 of your last 5 check items"):
        services.task_claim_next(project=project, annotator=sloppy)
    assert services.task_claim_next(project=project, annotator=good) is not None
    row = next(r for r in qs.quality_report(project)["annotators"] if r["name"] == "sloppy")
    assert row["gold_accuracy"] == 0.0
    assert "paused" in row["alerts"]
    # and once reinstated they may claim again (judged on new gold answers only)
    quality.annotator_reinstate(project=project, annotator=sloppy)
    project.options = {"quality": {"gold_rate": 0}}
    project.save()
    assert services.task_claim_next(project=project, annotator=sloppy) is not None
    with pytest.raises(Conflict):
        quality.annotator_reinstate(project=project, annotator=sloppy)


def test_labels_before_promotion_are_not_gold_answers(
    queued_tasks, no_gold_draws, project, admin_user, annotators, make_task, label_as
):
    # given a task both annotators labelled A (unanimous)
    project.overlap = 2
    project.save()
    make_task()
    people = annotators(2)
    for user in people:
        label_as(project, user, {"choice": "A"})
    quality.quality_refresh(project_id=project.pk)
    # when unanimous tasks with 2+ labels are promoted
    promoted = quality.gold_promote_unanimous(project=project, by=admin_user, min_labels=2)
    quality.quality_refresh(project_id=project.pk)
    # then the task is gold, its earlier labels are no gold answers, and it is not in review
    assert promoted == 1
    gold = GoldTask.objects.get()
    assert gold.source == "promoted"
    assert gold.task.status == TaskStatus.OPEN
    assert all(r["gold_answered"] == 0 for r in qs.quality_report(project)["annotators"])
    assert qs.review_queue(project) == []


def test_gold_needs_a_checkable_answer(queued_tasks, project, admin_user, make_task):
    task = make_task(TaskKind.CORRECTION)
    with pytest.raises(ValidationFailed):
        quality.gold_mark(task=task, payload={"corrected_text": "x"}, by=admin_user)
    with pytest.raises(ValidationFailed):
        quality.gold_mark(task=make_task(), payload={"choice": "C"}, by=admin_user)
    assert not GoldTask.objects.exists()


# -- adjudication and final labels ---------------------------------------------------------------


def _three_way_project(project, annotators, make_task, label_as, votes):
    project.overlap = 3
    project.save()
    tasks = [make_task() for _ in votes]
    people = annotators(3)
    for i, user in enumerate(people):
        for _ in votes:
            lease = services.task_claim_next(project=project, annotator=user)
            task_votes = votes[tasks.index(lease.task)]
            label_as(project, user, {"choice": task_votes[i]})
    quality.quality_refresh(project_id=project.pk)
    return tasks, people


def test_review_queue_lists_lowest_agreement_first(
    queued_tasks, no_gold_draws, project, annotators, make_task, label_as
):
    votes = [("A", "A", "A"), ("A", "B", "tie"), ("A", "A", "B")]
    tasks, _ = _three_way_project(project, annotators, make_task, label_as, votes)

    queue = qs.review_queue(project)

    # the unanimous task needs no review
    assert [row["task_id"] for row in queue] == [tasks[1].pk, tasks[2].pk]
    assert [row["agreement"] for row in queue] == [0.0, pytest.approx(1 / 3, abs=1e-4)]


def test_adjudication_records_the_decision_and_overrides_the_vote(
    queued_tasks, no_gold_draws, project, annotators, make_task, label_as, member
):
    votes = [("A", "B", "tie"), ("A", "A", "B"), ("B", "B", "B")]
    tasks, people = _three_way_project(project, annotators, make_task, label_as, votes)
    reviewer = member(Role.REVIEWER, "rev")
    # a decision without a reason is refused, and nothing changes
    with pytest.raises(ValidationFailed):
        quality.adjudication_decide(task=tasks[0], reviewer=reviewer, payload={"choice": "B"},
                                    reason="  ")  # fmt: skip
    assert not Adjudication.objects.exists()
    # the reviewer sees every label and who gave it
    view = qs.review_task_view(tasks[0])
    assert sorted(lb["annotator"] for lb in view["labels"]) == ["ann0", "ann1", "ann2"]
    assert view["outcome_counts"] == {"A": 1, "B": 1, "tie": 1}

    quality.adjudication_decide(
        task=tasks[0], reviewer=reviewer, payload={"choice": "B"}, reason="B cites its source"
    )

    assert all(lb.reviewed_at for lb in tasks[0].labels.all())
    assert tasks[0].pk not in [r["task_id"] for r in qs.review_queue(project)]
    final = {
        row["task_id"]: row
        for row in qs.final_labels(project, config=AggregationConfig(policy="majority"))
    }
    assert (final[tasks[0].pk]["value"], final[tasks[0].pk]["provenance"]) == ("B", "adjudicated")
    assert (final[tasks[1].pk]["value"], final[tasks[1].pk]["provenance"]) == ("A", "majority")
    assert (final[tasks[2].pk]["value"], final[tasks[2].pk]["provenance"]) == ("B", "unanimous")
    weights = {w["annotator_id"]: w["weight"] for w in final[tasks[0].pk]["labels"]}
    assert weights == {people[0].pk: 0.0, people[1].pk: 1.0, people[2].pk: 0.0}
    unanimous = qs.final_labels(project, config=AggregationConfig(policy="unanimous"))
    assert [r["provenance"] for r in unanimous] == ["adjudicated", None, "unanimous"]
    weighted = qs.final_labels(project, config=AggregationConfig(policy="dawid_skene"))
    assert {r["provenance"] for r in weighted} == {"adjudicated", "weighted"}
    assert all(0 <= w["weight"] <= 1 for r in weighted for w in r["labels"])
    excluded = qs.final_labels(
        project, config=AggregationConfig(), exclude_annotators=[people[0].pk]
    )
    assert all(people[0].pk not in [w["annotator_id"] for w in r["labels"]] for r in excluded)
