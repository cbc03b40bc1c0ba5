"""Submitting and editing labels: canonical payloads, idempotency, conflicts, history."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import services
from annotation.models import IdempotencyRecord, Label, LabelRevision, Lease, Task, TaskKind
from config.errors import Conflict, Unprocessable, ValidationFailed


def claim(project, user, **kw):
    return services.task_claim_next(project=project, annotator=user, **kw)


def test_pairwise_left_is_stored_in_canonical_positions(project, annotator, make_task):
    # given a pairwise task whose sides the annotator saw in some order
    task = make_task()
    lease = claim(project, annotator)
    left, right = lease.shown_order
    a, b = task.items.order_by("position").values_list("response_id", flat=True)
    # when they choose the left response, strongly
    label = services.label_submit(
        task=task, annotator=annotator,
        payload={"choice": "left", "strength": "strong", "rationale": "more precise"},
        duration_ms=4200,
    ).label  # fmt: skip
    # then the label names the winner by id and canonical position, and keeps the shown order
    assert label.payload == {
        "outcome": "A" if left == a else "B",
        "strength": "strong",
        "winner": left,
        "chosen_side": "left",
        "rationale": "more precise",
    }
    assert label.shown_order == [left, right]
    assert label.duration_ms == 4200
    assert {left, right} == {a, b}


def test_sides_are_randomised_across_annotators(project, member, make_task):
    # given 40 tasks with overlap 2, labelled by two annotators
    project.overlap = 1
    project.save()
    tasks = [make_task() for _ in range(40)]
    user = member()
    swapped = 0
    for task in tasks:
        lease = claim(project, user)
        first = task.items.get(position=0).response_id
        swapped += lease.shown_order[0] != first
        services.label_submit(task=lease.task, annotator=user, payload={"choice": "tie"})
    # then roughly half were shown swapped (binomial(40, .5): 8..32 holds with p > 0.9999)
    assert 8 <= swapped <= 32


def test_tie_and_both_bad_carry_no_strength(project, annotator, make_task):
    task = make_task()
    claim(project, annotator)
    with pytest.raises(ValidationFailed):
        services.label_submit(
            task=task, annotator=annotator, payload={"choice": "tie", "strength": "strong"}
        )
    assert not Label.objects.exists()
    label = services.label_submit(task=task, annotator=annotator, payload={"choice": "both_bad"})
    assert label.label.payload["outcome"] == "both_bad"
    assert label.label.payload["strength"] is None


def test_ranking_with_ties(project, annotator, make_task):
    task = make_task(TaskKind.RANKING)
    claim(project, annotator)
    a, b, c = task.items.order_by("position").values_list("response_id", flat=True)
    label = services.label_submit(
        task=task, annotator=annotator, payload={"ranking": [[c], [b, a]]}
    ).label
    assert label.payload["ranking"] == [[c], sorted([a, b])]


def test_ranking_must_place_every_response_once(project, annotator, make_task):
    task = make_task(TaskKind.RANKING)
    claim(project, annotator)
    a, b, c = task.items.order_by("position").values_list("response_id", flat=True)
    for bad in ([[a], [b]], [[a], [b], [b, c]], [[a], [b], [c], [999]]):
        with pytest.raises(ValidationFailed):
            services.label_submit(task=task, annotator=annotator, payload={"ranking": bad})
    assert not Label.objects.exists()


def test_rubric_scores_every_dimension_in_range(project, annotator, make_task):
    task = make_task(TaskKind.RUBRIC)
    claim(project, annotator)
    (rid,) = task.items.values_list("response_id", flat=True)
    with pytest.raises(ValidationFailed):
        services.label_submit(
            task=task, annotator=annotator,
            payload={"scores": {str(rid): {"helpfulness": 6, "harmlessness": 3, "honesty": 3}}},
        )  # fmt: skip
    label = services.label_submit(
        task=task, annotator=annotator,
        payload={"scores": {str(rid): {"helpfulness": 5, "harmlessness": 3, "honesty": 1}}},
    ).label  # fmt: skip
    assert label.payload["scores"] == {
        str(rid): {"helpfulness": 5, "harmlessness": 3, "honesty": 1}
    }


def test_correction_stores_original_diff_and_edit_distance(project, annotator, make_task):
    task = make_task(TaskKind.CORRECTION, responses=["The capitol of France is Paris."])
    claim(project, annotator)
    label = services.label_submit(
        task=task, annotator=annotator,
        payload={"corrected_text": "The capital of France is Paris."},
    ).label  # fmt: skip
    assert label.payload["original_text"] == "The capitol of France is Paris."
    assert label.payload["corrected_text"] == "The capital of France is Paris."
    assert label.payload["edit_distance"] == 1
    assert "-The capitol of France is Paris." in label.payload["diff"]
    assert "+The capital of France is Paris." in label.payload["diff"]
    assert label.payload["unchanged"] is False


def test_retry_with_the_same_key_returns_the_stored_label(project, annotator, make_task):
    task = make_task()
    claim(project, annotator)
    body = {"payload": {"choice": "right"}, "flags": ["unsafe"]}
    first = services.label_submit(
        task=task, annotator=annotator, idempotency_key="key-0001", **body
    )
    again = services.label_submit(
        task=task, annotator=annotator, idempotency_key="key-0001", **body
    )
    assert (first.replayed, again.replayed) == (False, True)
    assert again.label.pk == first.label.pk
    assert Label.objects.count() == 1
    assert Task.objects.get(pk=task.pk).label_count == 1


def test_a_reused_key_with_another_body_is_422_and_changes_nothing(project, annotator, make_task):
    task = make_task()
    claim(project, annotator)
    services.label_submit(
        task=task, annotator=annotator, payload={"choice": "right"}, idempotency_key="key-0002"
    )
    before = list(Label.objects.values_list("id", "payload"))
    with pytest.raises(Unprocessable) as refused:
        services.label_submit(
            task=task, annotator=annotator, payload={"choice": "left"}, idempotency_key="key-0002"
        )
    assert refused.value.code == "idempotency_key_reused"
    assert list(Label.objects.values_list("id", "payload")) == before
    assert IdempotencyRecord.objects.count() == 1


def test_a_second_submit_without_the_key_is_a_conflict(project, annotator, make_task):
    task = make_task()
    claim(project, annotator)
    label = services.label_submit(task=task, annotator=annotator, payload={"choice": "right"})
    with pytest.raises(Conflict) as refused:
        services.label_submit(task=task, annotator=annotator, payload={"choice": "left"})
    assert refused.value.code == "already_labelled"
    assert refused.value.extra["label_id"] == label.label.pk
    assert Label.objects.get().payload["chosen_side"] == "right"


def test_submit_without_a_lease_is_refused(project, annotator, make_task):
    task = make_task()
    with pytest.raises(Conflict) as refused:
        services.label_submit(task=task, annotator=annotator, payload={"choice": "left"})
    assert refused.value.code == "no_lease"
    assert not Label.objects.exists()


def test_late_submit_is_accepted_while_the_task_has_room(project, member, make_task):
    task = make_task()
    a = member()
    claim(project, a)
    Lease.objects.filter(annotator=a).update(expires_at=timezone.now() - timedelta(minutes=1))
    label = services.label_submit(task=task, annotator=a, payload={"choice": "left"})
    assert label.label.task_id == task.pk


def test_late_submit_is_refused_when_others_filled_the_task(project, member, make_task):
    # given overlap 2, a's lease expired and b and c completed the task
    task = make_task()
    a, b, c = member(), member(), member()
    claim(project, a)
    Lease.objects.filter(annotator=a).update(expires_at=timezone.now() - timedelta(minutes=1))
    for user in (b, c):
        claim(project, user)
        services.label_submit(task=task, annotator=user, payload={"choice": "left"})
    # when a submits late, then it is refused and the task keeps exactly two labels
    with pytest.raises(Conflict) as refused:
        services.label_submit(task=task, annotator=a, payload={"choice": "left"})
    assert refused.value.code in {"lease_lost"}
    assert Task.objects.get(pk=task.pk).label_count == 2
    assert Label.objects.filter(task=task).count() == 2


def test_edit_keeps_history_until_reviewed(project, annotator, make_task):
    task = make_task()
    claim(project, annotator)
    label = services.label_submit(task=task, annotator=annotator, payload={"choice": "left"}).label
    edited = services.label_edit(label=label, editor=annotator, payload={"choice": "tie"})
    assert (edited.version, edited.payload["outcome"]) == (2, "tie")
    revision = LabelRevision.objects.get(label=label)
    assert (revision.version, revision.payload["chosen_side"]) == (1, "left")
    Label.objects.filter(pk=label.pk).update(reviewed_at=timezone.now())
    with pytest.raises(Conflict) as refused:
        services.label_edit(label=label, editor=annotator, payload={"choice": "right"})
    assert refused.value.code == "reviewed"
    assert Label.objects.get(pk=label.pk).payload["outcome"] == "tie"


def test_only_the_author_edits(project, member, make_task):
    task = make_task()
    a, b = member(), member()
    claim(project, a)
    label = services.label_submit(task=task, annotator=a, payload={"choice": "left"}).label
    with pytest.raises(Conflict):
        services.label_edit(label=label, editor=b, payload={"choice": "tie"})
    assert Label.objects.get(pk=label.pk).version == 1


def test_flags_are_validated(project, annotator, make_task):
    task = make_task()
    claim(project, annotator)
    with pytest.raises(ValidationFailed):
        services.label_submit(
            task=task, annotator=annotator, payload={"choice": "left"}, flags=["evil"]
        )
    label = services.label_submit(
        task=task, annotator=annotator, payload={"choice": "left"},
        flags=["spam", "unsafe", "spam"],
    ).label  # fmt: skip
    assert label.flags == ["spam", "unsafe"]


def test_a_live_lease_on_a_task_filled_after_the_overlap_was_lowered_is_a_conflict(
    project, member, make_task
):
    # given overlap 2, a task leased by a and b, then the overlap lowered to 1 and a's label in
    task = make_task()
    a, b = member(), member()
    claim(project, a)
    claim(project, b)
    services.project_update(project=project, overlap=1)
    services.label_submit(task=task, annotator=a, payload={"choice": "left"})
    # when b submits on a lease that is still live
    with pytest.raises(Conflict) as refused:
        services.label_submit(task=task, annotator=b, payload={"choice": "left"})
    # then it is refused as a conflict (not a database error) and the task keeps one label
    assert refused.value.code == "task_full"
    assert Task.objects.filter(pk=task.pk).values_list("label_count", "status").get() == (1, "done")
    assert list(Label.objects.filter(task=task).values_list("annotator_id", flat=True)) == [a.pk]
