"""Launch, cancel, re-queue and fencing of training runs (no training here: milliseconds each)."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from config.errors import Conflict, ValidationFailed
from rlhf.models import RunStatus, SnapshotStatus, TrainingRun, TrainingRunMetric
from rlhf.runs import services as run_services
from rlhf.runs.access import access_training_run
from rlhf.runs.execution import AttemptFence, RunReporter, _claim, training_run_execute
from rlhf.training.progress import ProgressEvent


def jobs(name="training_run_job"):
    return list(
        DBTaskResult.objects.filter(task_path=f"rlhf.runs.tasks.{name}").values_list(
            "args_kwargs", flat=True
        )
    )


def launch(project, engineer, snapshot, config, **extra):
    return run_services.training_run_launch(
        project=project,
        created_by=engineer,
        method="reward",
        snapshot=snapshot,
        config=config,
        **extra,
    )


def make_stale(run, seconds=60):
    TrainingRun.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_launch_records_the_whole_config_and_enqueues_one_job(
    project, engineer, snapshot, reward_config
):
    # when an engineer launches a reward run with a few fields set
    run = launch(project, engineer, snapshot, reward_config, name="first")

    # then the run is queued with every config field (defaults included) and the snapshot's data
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert run.attempt == 1
    assert run.config["max_steps"] == 8
    assert run.config["lr_scheduler"] == "linear"  # a default, stored too
    assert run.config["backbone"] == "encoder"
    assert run.method_title.startswith("Reward model, Bradley-Terry")
    assert run.data_path == snapshot.export_path
    # and exactly one job for attempt 1 was enqueued once the launch committed
    assert jobs() == [{"args": [], "kwargs": {"run_id": run.pk, "attempt": 1}}]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"learning_rate": 0}, "learning_rate", "must be > 0.0"),
        ({"max_steps": "many"}, "max_steps", "must be a number"),
        ({"lr_scheduler": "zigzag"}, "lr_scheduler", "must be one of"),
        ({"no_such_knob": 1}, "no_such_knob", "unknown field"),
        ({"base_model": "/etc"}, "base_model", "must be a folder under"),
        ({"distributed": "fsdp", "num_processes": 2, "device": "cpu"}, "distributed", "CUDA"),
        ({"distributed": "ddp", "num_processes": 1}, "num_processes", "at least 2"),
    ],
)
def test_launch_refuses_invalid_config_and_creates_nothing(
    project, engineer, snapshot, reward_config, change, field, message
):
    with pytest.raises(ValidationFailed) as refused:
        launch(project, engineer, snapshot, {**reward_config, **change})

    assert message in refused.value.extra["fields"][field]
    assert TrainingRun.objects.count() == 0
    assert jobs() == []


def test_launch_refuses_a_model_folder_of_another_projects_run(
    project, engineer, snapshot, reward_config, tiny_models, settings
):
    # given a run of another project whose trained model sits under the artifact root
    import shutil

    from annotation import services as annotation_services
    from rlhf.models import DatasetSnapshot

    other = annotation_services.project_create(name="Other lab", created_by=engineer, overlap=1)
    other_snapshot = DatasetSnapshot.objects.create(
        project=other, status=SnapshotStatus.READY, max_label_id=0, config={}
    )
    foreign = TrainingRun.objects.create(
        project=other, method="reward", method_title="Reward", config={},
        dataset_snapshot=other_snapshot, status=RunStatus.SUCCEEDED,
    )  # fmt: skip
    foreign_model = run_services.run_dir(foreign.pk) / "attempt-1" / "model"
    shutil.copytree(tiny_models["encoder"], foreign_model)
    # and a run of this project with the same model in its folder
    own = launch(project, engineer, snapshot, reward_config)
    own_model = run_services.run_dir(own.pk) / "attempt-1" / "model"
    shutil.copytree(tiny_models["encoder"], own_model)

    # when an engineer of this project names the foreign folder (or a malformed path)
    with pytest.raises(ValidationFailed) as refused:
        launch(project, engineer, snapshot, {**reward_config, "base_model": str(foreign_model)})
    with pytest.raises(ValidationFailed) as malformed:
        launch(project, engineer, snapshot, {**reward_config, "base_model": "/tmp/a\x00b"})

    # then both are refused and nothing was created; the project's own run folder is accepted
    assert refused.value.extra["fields"] == {"base_model": "belongs to a run of another project"}
    assert malformed.value.extra["fields"] == {"base_model": "is not a valid folder path"}
    assert TrainingRun.objects.filter(project=project).count() == 1
    accepted = launch(project, engineer, snapshot, {**reward_config, "base_model": str(own_model)})
    assert accepted.config["base_model"] == str(own_model)


def test_launch_refuses_a_snapshot_that_is_not_ready_or_has_no_rows(
    project, engineer, snapshot, reward_config
):
    snapshot.status = SnapshotStatus.RUNNING
    snapshot.save()
    with pytest.raises(ValidationFailed, match="not ready"):
        launch(project, engineer, snapshot, reward_config)

    snapshot.status = SnapshotStatus.READY
    snapshot.row_counts = {"sft": {"train": 5}}
    snapshot.save()
    with pytest.raises(ValidationFailed, match="no training rows"):
        launch(project, engineer, snapshot, reward_config)
    assert TrainingRun.objects.count() == 0


def test_cancel_of_a_queued_run_is_immediate_and_its_job_then_does_nothing(
    project, engineer, snapshot, reward_config
):
    run = launch(project, engineer, snapshot, reward_config)

    run_services.training_run_cancel(run=run, cancelled_by=engineer)

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert run.finished_at is not None
    assert "cancelled by eve-engineer" in run.log_tail
    assert training_run_execute(run_id=run.pk, attempt=1) == "skipped"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    with pytest.raises(Conflict):
        run_services.training_run_cancel(run=run, cancelled_by=engineer)


def test_cancel_of_a_running_run_asks_its_worker_to_stop(
    project, engineer, snapshot, reward_config
):
    run = launch(project, engineer, snapshot, reward_config)
    _claim(run.pk, 1)
    fence = AttemptFence(run.pk, 1)
    fence.beat()
    assert fence.should_stop() is False

    run_services.training_run_cancel(run=run, cancelled_by=engineer)
    fence.beat()

    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING  # the worker marks it cancelled when it stopped
    assert run.cancel_requested is True
    assert fence.should_stop() is True
    assert fence.lost is False


def test_a_run_its_worker_cannot_start_fails_instead_of_staying_queued_forever(
    project, engineer, snapshot, reward_config, monkeypatch
):
    # given a run that asks for a CUDA device, picked up by a worker that has none
    # (the worker's device probe is a child process: it inherits the environment)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    run = launch(project, engineer, snapshot, {**reward_config, "device": "cuda"})

    # when its job runs
    outcome = training_run_execute(run_id=run.pk, attempt=1)

    # then the run failed with the reason, and can be retried (its only job was consumed)
    run.refresh_from_db()
    assert outcome == "failed"
    assert run.status == RunStatus.FAILED
    assert run.error == (
        "ModelFolderError: device 'cuda' was asked for but no CUDA device is visible"
    )
    assert run.finished_at is not None
    assert run.worker == ""
    assert run.attempts_log == []
    assert "could not start on" in run.log_tail
    # and a second delivery of the same job changes nothing
    assert training_run_execute(run_id=run.pk, attempt=1) == "skipped"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED


def test_a_silent_running_attempt_is_requeued_as_the_next_attempt(
    project, engineer, snapshot, reward_config
):
    # given a running attempt 1 that recorded a checkpoint at step 4, then went silent
    run = launch(project, engineer, snapshot, reward_config)
    _claim(run.pk, 1)
    TrainingRun.objects.filter(pk=run.pk).update(
        checkpoints=[{"attempt": 1, "global_step": 4, "manifest_sha256": "ab", "path": "/x"}]
    )
    make_stale(run)

    # when the reaper runs
    released = run_services.training_run_requeue_stale()

    # then the run is queued again as attempt 2, with a job for attempt 2
    assert released == [run.pk]
    run.refresh_from_db()
    assert (run.status, run.attempt, run.worker) == (RunStatus.QUEUED, 2, "")
    assert run.attempts_log[0]["outcome"] == "lost"
    assert "resuming from step 4" in run.log_tail
    assert {"args": [], "kwargs": {"run_id": run.pk, "attempt": 2}} in jobs()
    # and a second reaper pass changes nothing
    assert run_services.training_run_requeue_stale() == []


def test_a_running_attempt_with_a_fresh_heartbeat_is_left_alone(
    project, engineer, snapshot, reward_config
):
    run = launch(project, engineer, snapshot, reward_config)
    _claim(run.pk, 1)

    assert run_services.training_run_requeue_stale() == []

    run.refresh_from_db()
    assert (run.status, run.attempt) == (RunStatus.RUNNING, 1)


def test_a_lost_attempt_with_a_pending_cancel_ends_cancelled_and_the_last_allowed_one_fails(
    project, engineer, snapshot, reward_config
):
    cancelled = launch(project, engineer, snapshot, reward_config)
    _claim(cancelled.pk, 1)
    run_services.training_run_cancel(run=cancelled, cancelled_by=engineer)
    exhausted = launch(project, engineer, snapshot, reward_config, max_attempts=1)
    _claim(exhausted.pk, 1)
    make_stale(cancelled)
    make_stale(exhausted)

    run_services.training_run_requeue_stale()

    cancelled.refresh_from_db()
    exhausted.refresh_from_db()
    assert (cancelled.status, cancelled.attempt) == (RunStatus.CANCELLED, 1)
    assert (exhausted.status, exhausted.attempt) == (RunStatus.FAILED, 1)
    assert "lost 1 times" in exhausted.error


def test_a_stale_attempt_cannot_write_anything(project, engineer, snapshot, reward_config):
    # given attempt 1 lost its run to attempt 2
    run = launch(project, engineer, snapshot, reward_config)
    _claim(run.pk, 1)
    stale = AttemptFence(run.pk, 1)
    reporter = RunReporter(stale, log_tail="", checkpoints=[])
    make_stale(run)
    run_services.training_run_requeue_stale()
    before = TrainingRun.objects.get(pk=run.pk)

    # when the old attempt reports a step and a checkpoint, heartbeats and tries to finish
    reporter(ProgressEvent(kind="step", step=3, total_steps=8, loss=0.5))
    checkpoint = {"path": "/tmp/x/step-00000004", "global_step": 4, "manifest_sha256": "ff"}
    reporter(ProgressEvent(kind="checkpoint", step=4, checkpoint=checkpoint))
    stale.beat()
    finished = reporter.flush(status=RunStatus.SUCCEEDED)

    # then nothing was written and the engine is told to stop
    after = TrainingRun.objects.get(pk=run.pk)
    assert finished is False
    assert stale.lost is True
    assert stale.should_stop() is True
    for field in ("status", "attempt", "revision", "progress", "log_tail", "checkpoints"):
        assert getattr(after, field) == getattr(before, field), field
    assert after.heartbeat_at == before.heartbeat_at
    assert TrainingRunMetric.objects.count() == 0
    # and its job, delivered again, does nothing either
    assert training_run_execute(run_id=run.pk, attempt=1) == "skipped"
    assert TrainingRun.objects.get(pk=run.pk).revision == before.revision


def test_retry_queues_a_failed_run_as_a_new_attempt(project, engineer, snapshot, reward_config):
    run = launch(project, engineer, snapshot, reward_config)
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.FAILED, error="boom")

    run_services.training_run_retry(run=run, retried_by=engineer)

    run.refresh_from_db()
    assert (run.status, run.attempt, run.error) == (RunStatus.QUEUED, 2, "")
    assert {"args": [], "kwargs": {"run_id": run.pk, "attempt": 2}} in jobs()
    with pytest.raises(Conflict):
        run_services.training_run_retry(run=run, retried_by=engineer)


def test_watchdog_reschedules_itself_while_the_attempt_lives_and_reaps_it_when_silent(
    project, engineer, snapshot, reward_config
):
    run = launch(project, engineer, snapshot, reward_config)
    _claim(run.pk, 1)
    assert len(jobs("training_run_watchdog_job")) == 1  # scheduled by the claim

    assert run_services.training_run_watch(run_id=run.pk, attempt=1) == "watching"
    assert len(jobs("training_run_watchdog_job")) == 2

    make_stale(run)
    assert run_services.training_run_watch(run_id=run.pk, attempt=1) == "done"
    run.refresh_from_db()
    assert (run.status, run.attempt) == (RunStatus.QUEUED, 2)


def test_access_gate_hides_foreign_runs_and_refuses_roles_without_the_capability(
    project, engineer, snapshot, reward_config, outsider, annotator
):
    run = launch(project, engineer, snapshot, reward_config)

    assert access_training_run(engineer, run.pk).pk == run.pk
    with pytest.raises(Http404):
        access_training_run(outsider, run.pk)
    with pytest.raises(Http404):
        access_training_run(engineer, run.pk + 999)
    with pytest.raises(PermissionDenied):
        access_training_run(annotator, run.pk)


def test_run_services_hooks_run_after_success_and_a_failing_hook_spares_the_others(
    project, engineer, snapshot, reward_config, monkeypatch
):
    run = launch(project, engineer, snapshot, reward_config)
    seen = []

    def broken(run):
        raise RuntimeError("registry down")

    monkeypatch.setattr(
        run_services, "training_run_succeeded_hooks", [broken, lambda r: seen.append(r.pk)]
    )
    run_services.training_run_succeeded(run)

    assert seen == [run.pk]
