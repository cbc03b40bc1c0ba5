"""Claiming tasks: overlap k exactly, leases that expire, skips and preloading."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import services
from annotation.models import Label, Lease, LeaseState, TaskStatus
from annotation.services import claims, hooks
from config.errors import Conflict


def submit_left(task, user):
    return services.label_submit(task=task, annotator=user, payload={"choice": "left"})


def test_claim_gives_an_unlabelled_task_with_a_lease(project, annotator, make_task):
    # given a project with one open task
    task = make_task()
    # when the annotator asks for the next task
    lease = services.task_claim_next(project=project, annotator=annotator)
    # then they hold an active lease on it, expiring after the project's lease time
    assert lease.task_id == task.pk
    assert lease.state == LeaseState.ACTIVE
    expected = timezone.now() + timedelta(seconds=project.lease_seconds)
    assert abs((lease.expires_at - expected).total_seconds()) < 5
    assert sorted(lease.shown_order) == sorted(task.items.values_list("response_id", flat=True))


def test_claim_returns_the_lease_already_held(project, annotator, make_task):
    make_task(), make_task()
    first = services.task_claim_next(project=project, annotator=annotator)
    again = services.task_claim_next(project=project, annotator=annotator)
    assert again.pk == first.pk


def test_preloading_excludes_the_current_task_and_caps_held_leases(project, annotator, make_task):
    # given three open tasks
    t1, t2, t3 = make_task(), make_task(), make_task()
    # when the page asks for the current task and then preloads the next
    current = services.task_claim_next(project=project, annotator=annotator)
    upcoming = services.task_claim_next(
        project=project, annotator=annotator, exclude_task_ids=[current.task_id]
    )
    # then the two are different tasks, in queue order
    assert [current.task_id, upcoming.task_id] == [t1.pk, t2.pk]
    # and a third claim while holding two is refused (the cap is two)
    with pytest.raises(Conflict) as refused:
        services.task_claim_next(
            project=project, annotator=annotator, exclude_task_ids=[t1.pk, t2.pk]
        )
    assert refused.value.code == "too_many_leases"
    assert not Lease.objects.filter(task=t3).exists()


def test_overlap_k_means_exactly_k_different_annotators(project, member, make_task):
    # given overlap 2 and one task
    task = make_task()
    a, b, c = member(), member(), member()
    # when two annotators claim it
    assert services.task_claim_next(project=project, annotator=a).task_id == task.pk
    assert services.task_claim_next(project=project, annotator=b).task_id == task.pk
    # then a third gets nothing while both leases are live
    assert services.task_claim_next(project=project, annotator=c) is None
    # and after both submit the task is done with exactly two labels
    submit_left(task, a)
    submit_left(task, b)
    task.refresh_from_db()
    assert (task.label_count, task.status) == (2, TaskStatus.DONE)
    assert services.task_claim_next(project=project, annotator=c) is None


def test_an_annotator_never_gets_a_task_they_labelled(project, annotator, make_task):
    task = make_task()
    services.task_claim_next(project=project, annotator=annotator)
    submit_left(task, annotator)
    # the task still needs a second label, but not from this annotator
    assert services.task_claim_next(project=project, annotator=annotator) is None


def test_expired_leases_are_reclaimed_by_others(project, member, make_task):
    # given overlap 2, a task leased by two annotators whose leases then expire
    task = make_task()
    a, b, c = member(), member(), member()
    services.task_claim_next(project=project, annotator=a)
    services.task_claim_next(project=project, annotator=b)
    Lease.objects.filter(task=task).update(expires_at=timezone.now() - timedelta(seconds=1))
    # when a third annotator asks
    lease = services.task_claim_next(project=project, annotator=c)
    # then the freed slot is theirs
    assert lease.task_id == task.pk


def test_skip_is_recorded_and_not_offered_again(project, annotator, make_task):
    task = make_task()
    services.task_claim_next(project=project, annotator=annotator)
    lease = services.task_skip(task=task, annotator=annotator, reason="not my language")
    assert (lease.state, lease.skip_reason) == (LeaseState.SKIPPED, "not my language")
    assert services.task_claim_next(project=project, annotator=annotator) is None


def test_heartbeat_extends_a_live_lease(project, annotator, make_task):
    task = make_task()
    lease = services.task_claim_next(project=project, annotator=annotator)
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() + timedelta(seconds=5))
    renewed = services.lease_heartbeat(task=task, annotator=annotator)
    assert renewed.expires_at > timezone.now() + timedelta(seconds=project.lease_seconds - 5)


def test_heartbeat_on_an_expired_lease_whose_slot_was_taken_is_refused(project, member, make_task):
    # given overlap 2: a's lease expired and two others took the two slots
    task = make_task()
    a, b, c = member(), member(), member()
    services.task_claim_next(project=project, annotator=a)
    Lease.objects.filter(annotator=a).update(expires_at=timezone.now() - timedelta(seconds=1))
    services.task_claim_next(project=project, annotator=b)
    services.task_claim_next(project=project, annotator=c)
    # when a heartbeats, then it is told the lease is lost, and nothing changes
    with pytest.raises(Conflict) as lost:
        services.lease_heartbeat(task=task, annotator=a)
    assert lost.value.code == "lease_lost"
    assert Lease.objects.get(annotator=a).expires_at < timezone.now()


def test_priority_orders_the_queue(project, annotator, make_task):
    low = make_task()
    high = make_task()
    high.priority = 5
    high.save()
    assert services.task_claim_next(project=project, annotator=annotator).task_id == high.pk
    assert low.pk < high.pk


def test_an_expired_lease_of_ones_own_is_renewed_in_place(project, annotator, make_task):
    # given an annotator whose lease on the only task expired
    task = make_task()
    first = services.task_claim_next(project=project, annotator=annotator)
    Lease.objects.filter(pk=first.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    # when they ask again
    again = services.task_claim_next(project=project, annotator=annotator)
    # then the same lease row is live again, with the same sides, and no second row exists
    assert (again.pk, again.task_id, again.state) == (first.pk, task.pk, LeaseState.ACTIVE)
    assert again.shown_order == first.shown_order
    assert again.expires_at > timezone.now()
    assert Lease.objects.filter(task=task, annotator=annotator).count() == 1


def test_a_task_labelled_without_a_lease_is_not_offered(project, annotator, make_task):
    # given a label by the annotator that came in without a lease (as imports do)
    imported, other = make_task(), make_task()
    Label.objects.create(
        task=imported, annotator=annotator, kind=imported.kind, payload={"outcome": "A"}
    )
    # when they ask for a task, then they get the other one
    assert services.task_claim_next(project=project, annotator=annotator).task_id == other.pk


def test_a_claim_rechecks_the_task_under_its_lock(project, member, make_task, monkeypatch):
    # given overlap 2: a task whose second slot another annotator took after the candidate
    # query ran (simulated by taking it just before the re-check)
    task, spare = make_task(), make_task()
    a, b, c = member(), member(), member()
    services.task_claim_next(project=project, annotator=a)
    real = claims._leases_under_lock

    def slot_taken_meanwhile(task_, annotator, now):
        if task_.pk == task.pk and not Lease.objects.filter(task=task, annotator=b).exists():
            claims._grant_lease(task_, b, now, None)
        return real(task_, annotator, now)

    monkeypatch.setattr(claims, "_leases_under_lock", slot_taken_meanwhile)
    # when a third annotator claims
    lease = services.task_claim_next(project=project, annotator=c)
    # then they are moved on to the next task, and the full one keeps exactly k leases
    assert lease.task_id == spare.pk
    assert Lease.objects.filter(task=task, state=LeaseState.ACTIVE).count() == 2


def test_claim_and_submit_stay_within_their_query_budget(
    project, annotator, make_task, django_assert_max_num_queries, monkeypatch
):
    # The annotation loop's cost is mostly round trips to the database; pin them so a change
    # that adds one per request is a decision, not an accident (bench/annotation_load.py).
    # Hooks (quality control) bring their own queries and are pinned by their own tests.
    for name in ("claim_guards", "claim_preemptors", "label_submitted_hooks"):
        monkeypatch.setattr(hooks, name, [])
    make_task(), make_task()
    # held, candidate, task, leases, items, insert, and the two statements opening and closing
    # the transaction (a savepoint here, inside the test's transaction)
    with django_assert_max_num_queries(8):
        lease = services.task_claim_next(project=project, annotator=annotator)
    task = lease.task
    # lock, key, lease, items, label, task, lease, key, and the two around the transaction
    with django_assert_max_num_queries(10):
        services.label_submit(
            task=task, annotator=annotator, payload={"choice": "left"}, idempotency_key="k" * 16
        )
    assert Label.objects.filter(task=task, annotator=annotator).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_claims_and_submits_never_lock_the_project_row(project, annotator, make_task):
    # given another transaction holding the project's row (an admin saving settings)
    import psycopg
    from django.db import connection

    make_task()
    settings_dict = connection.settings_dict
    other = psycopg.connect(
        dbname=settings_dict["NAME"],
        user=settings_dict["USER"],
        host=settings_dict["HOST"],
        port=settings_dict["PORT"] or 5432,
        password=settings_dict["PASSWORD"] or None,
    )
    try:
        # An UPDATE takes FOR NO KEY UPDATE: it blocks FOR UPDATE (what select_for_update()
        # takes on every joined row) but not the KEY SHARE locks of foreign-key checks.
        other.execute("UPDATE annotation_project SET name = name WHERE id = %s", [project.pk])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
        # when an annotator claims and submits, then neither waits for that lock
        lease = services.task_claim_next(project=project, annotator=annotator)
        label = submit_left(lease.task, annotator).label
        assert label.task_id == lease.task_id
    finally:
        other.rollback()
        other.close()
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")


def test_lowering_the_overlap_completes_tasks_that_already_have_more_labels(
    project, member, make_task
):
    # given overlap 3 and a task with two labels
    services.project_update(project=project, overlap=3)
    task = make_task()
    a, b, c = member(), member(), member()
    for user in (a, b):
        services.task_claim_next(project=project, annotator=user)
        submit_left(task, user)
    # when the overlap is lowered to 1
    services.project_update(project=project, overlap=1)
    # then the task is done with the two labels it has, and nobody is offered it again
    task.refresh_from_db()
    assert (task.label_count, task.required_labels, task.status) == (2, 2, TaskStatus.DONE)
    assert services.task_claim_next(project=project, annotator=c) is None


def test_changing_the_overlap_leaves_gold_tasks_open_to_everyone(project, admin_user, make_task):
    # given a gold task (it takes a label from every annotator served it)
    from annotation.quality.services import GOLD_REQUIRED_LABELS, gold_mark

    task = make_task()
    gold_mark(task=task, payload={"choice": "A"}, by=admin_user)
    # when the project's overlap changes
    services.project_update(project=project, overlap=3)
    # then the gold task still takes everyone's label
    task.refresh_from_db()
    assert (task.required_labels, task.status) == (GOLD_REQUIRED_LABELS, TaskStatus.OPEN)
