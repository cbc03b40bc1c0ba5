"""Claiming tasks: overlap k exactly, leases that expire, skips and preloading."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import services
from annotation.models import Lease, LeaseState, TaskStatus
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
