"""The worker side in this process: a tiny reward model trains, stops on cancel, is fenced off
when its run is re-queued, and the next attempt resumes from its checkpoint."""

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from annotation import services as annotation_services
from config.errors import ValidationFailed
from models_registry.run_versions import run_versions_of, training_run_candidate
from models_registry.services import model_version_register
from rlhf.models import RunStatus, TrainingRun, TrainingRunMetric
from rlhf.runs import services as run_services
from rlhf.runs.execution import training_run_execute
from rlhf.training.base_models import sha256_file
from tests.rlhf.runs.conftest import wait_for


def launch(project, engineer, snapshot, config):
    return run_services.training_run_launch(
        project=project, created_by=engineer, method="reward", snapshot=snapshot, config=config
    )


def in_thread(run_id, attempt):
    """Run one attempt in a thread, like a worker would; returns (thread, outcome box)."""
    outcome = {}

    def target():
        try:
            outcome["value"] = training_run_execute(run_id=run_id, attempt=attempt)
        except BaseException as exc:  # surfaced by the test
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def loss_steps(run, attempt=None):
    points = TrainingRunMetric.objects.filter(run=run, name="loss")
    if attempt is not None:
        points = points.filter(attempt=attempt)
    return sorted(points.values_list("step", flat=True))


def test_a_run_succeeds_with_metrics_artifacts_and_its_record(
    project, engineer, snapshot, reward_config, monkeypatch
):
    # given a queued run and a registry hook
    registered = []
    hooks = [*run_services.training_run_succeeded_hooks, lambda r: registered.append(r.pk)]
    monkeypatch.setattr(run_services, "training_run_succeeded_hooks", hooks)
    run = launch(project, engineer, snapshot, reward_config)

    # when a worker executes it
    assert training_run_execute(run_id=run.pk, attempt=1) == "succeeded"

    # then it succeeded at the last step with its record filled in
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert run.result["global_step"] == 8
    assert run.progress["step"] == 8
    assert run.device == "cpu"
    assert run.library_versions["torch"]
    assert run.library_versions["trl"]
    assert run.code_version
    assert run.attempts_log[0]["outcome"] == "succeeded"
    assert "succeeded at step 8" in run.log_tail
    # one loss point per step, plus throughput and the final evaluation
    assert loss_steps(run) == list(range(1, 9))
    names = set(TrainingRunMetric.objects.filter(run=run).values_list("name", flat=True))
    assert {"accuracy", "tokens_per_s", "learning_rate", "validation/accuracy"} <= names
    assert "validation" in run.metrics
    # the artifacts are on disk with the recorded hashes
    files = {a["path"]: a for a in run.artifacts}
    assert {"model/model.safetensors", "model/tokenizer.json", "config.json"} <= set(files)
    assert {"result.json", "metrics.jsonl"} <= set(files)
    for path, artifact in files.items():
        assert sha256_file(Path(run.artifact_dir) / path) == artifact["sha256"], path
    # the checkpoints the engine wrote were recorded (those are the only ones ever resumed)
    assert [c["global_step"] for c in run.checkpoints] == [2, 4, 6, 8]
    # and every succeeded-hook saw the committed run once
    assert registered == [run.pk]
    # the first of them registered the model as a candidate reward model, files hashed
    version = training_run_candidate(run=run)
    assert (version.kind, version.state, version.name) == ("reward", "candidate", "reward-model")
    assert version.training_run_id == run.pk
    assert version.dataset_snapshot_id == run.dataset_snapshot_id
    assert version.launched_by == engineer
    registered_files = dict(version.artifacts.values_list("path", "sha256"))
    assert registered_files["model.safetensors"] == files["model/model.safetensors"]["sha256"]


def test_a_policy_run_starts_from_a_registered_version_and_registers_its_adapter_under_it(
    project, engineer, snapshot, tiny_models
):
    # given the tiny causal LM registered (approved) as the project's base model
    base = model_version_register(
        project=project, folder=tiny_models["lm"], name="tiny-lm", registered_by=engineer,
        approve_as_base=True,
    )  # fmt: skip
    # when a LoRA DPO run starts from that version and succeeds
    run = run_services.training_run_launch(
        project=project, created_by=engineer, method="dpo", snapshot=snapshot,
        base_model_version=base, name="Tiny DPO",
        config={"max_steps": 2, "per_device_batch_size": 2, "max_length": 64,
                "checkpoint_every_steps": 0, "lora_r": 4, "lora_alpha": 8},
    )  # fmt: skip
    assert run.config["base_model"] == base.artifact_dir
    assert training_run_execute(run_id=run.pk, attempt=1) == "succeeded"

    # then its adapter is a candidate policy whose parent is the version it started from
    run.refresh_from_db()
    assert run_versions_of(run=run).base_model_version == base
    version = training_run_candidate(run=run)
    assert (version.kind, version.name, version.is_adapter) == ("policy", "tiny-dpo", True)
    assert version.parent == base
    assert version.base_model == base
    assert version.config["method"] == "dpo"


def test_launch_refuses_a_version_of_the_wrong_kind_or_project(
    project, engineer, snapshot, tiny_models, outsider
):
    policy = model_version_register(
        project=project, folder=tiny_models["lm"], name="tiny-lm", approve_as_base=True
    )
    other = annotation_services.project_create(name="Elsewhere", created_by=outsider, overlap=1)
    foreign = model_version_register(
        project=other, folder=tiny_models["lm"], name="tiny-lm", approve_as_base=True
    )
    config = {"max_steps": 2}

    with pytest.raises(ValidationFailed, match="not a reward model"):
        run_services.training_run_launch(
            project=project, created_by=engineer, method="grpo", snapshot=snapshot,
            base_model_version=policy, reward_model_version=policy, config=config,
        )  # fmt: skip
    with pytest.raises(ValidationFailed, match="another project"):
        run_services.training_run_launch(
            project=project, created_by=engineer, method="dpo", snapshot=snapshot,
            base_model_version=foreign, config=config,
        )  # fmt: skip
    assert TrainingRun.objects.count() == 0


def test_cancel_stops_a_running_run_cleanly(project, engineer, snapshot, reward_config):
    run = launch(project, engineer, snapshot, {**reward_config, "max_steps": 400})
    thread, outcome = in_thread(run.pk, 1)
    wait_for(
        lambda: TrainingRun.objects.get(pk=run.pk).progress.get("step", 0) >= 2,
        timeout=120,
        what="step 2",
    )

    run_services.training_run_cancel(run=run, cancelled_by=engineer)
    thread.join(timeout=60)

    assert outcome == {"value": "cancelled"}
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert run.finished_at is not None
    assert 2 <= run.progress["step"] < 400
    assert "cancelled at step" in run.log_tail
    assert run.artifacts == []
    assert not (Path(run_services.run_dir(run.pk)) / "attempt-1" / "model").exists()


@pytest.mark.slow
def test_a_fenced_off_attempt_stops_without_writing_and_the_next_resumes_its_checkpoint(
    project, engineer, snapshot, reward_config
):
    # given attempt 1 training, past its first recorded checkpoint
    config = {**reward_config, "max_steps": 200, "checkpoint_every_steps": 3}
    run = launch(project, engineer, snapshot, config)
    thread, outcome = in_thread(run.pk, 1)
    wait_for(
        lambda: (
            (r := TrainingRun.objects.get(pk=run.pk)).checkpoints
            and r.progress.get("step", 0) > r.checkpoints[0]["global_step"]
        ),
        timeout=120,
        what="a checkpoint and a step after it",
    )

    # when the run is re-queued under it (as if its heartbeat had been missed)
    # (the reaper skips a row the worker holds locked mid-write, so it may take two passes)
    later = timezone.now() + timedelta(seconds=3600)
    wait_for(
        lambda: run_services.training_run_requeue_stale(now=later) == [run.pk],
        timeout=10,
        what="the reaper to release the run",
    )
    requeued = TrainingRun.objects.get(pk=run.pk)
    points_then = TrainingRunMetric.objects.filter(run=run).count()
    thread.join(timeout=60)

    # then attempt 1 stopped and wrote nothing after losing the run
    assert outcome == {"value": "lost"}
    after = TrainingRun.objects.get(pk=run.pk)
    assert (after.status, after.attempt) == (RunStatus.QUEUED, 2)
    assert after.revision == requeued.revision
    assert after.checkpoints == requeued.checkpoints
    assert after.log_tail == requeued.log_tail
    assert TrainingRunMetric.objects.filter(run=run).count() == points_then
    resume_step = max(c["global_step"] for c in after.checkpoints)

    # when attempt 2 runs (4 more steps, to keep the test quick)
    last = resume_step + 4
    TrainingRun.objects.filter(pk=run.pk).update(config={**after.config, "max_steps": last})
    assert training_run_execute(run_id=run.pk, attempt=2) == "succeeded"

    # then it resumed from attempt 1's newest recorded checkpoint and the global step went on
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert run.result["resumed_from_step"] == resume_step
    assert run.result["global_step"] == last
    assert loss_steps(run, attempt=2) == list(range(resume_step + 1, last + 1))
    # and the curve has each step once: attempt 1's points after the checkpoint were replaced
    assert loss_steps(run) == list(range(1, last + 1))
    assert [e["outcome"] for e in run.attempts_log] == ["lost", "succeeded"]


def test_a_recorded_checkpoint_survives_the_lost_attempt_pruning_it(
    project, engineer, snapshot, reward_config
):
    # given attempt 1 running, and its child announcing two checkpoints the worker records
    from rlhf.runs.execution import AttemptFence, RunReporter, _seed_checkpoints, attempt_dir
    from rlhf.training import checkpoints
    from rlhf.training.progress import ProgressEvent

    run = launch(project, engineer, snapshot, reward_config)
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, attempt=1)
    child_dir = attempt_dir(run.pk, 1) / "checkpoints"
    reporter = RunReporter(AttemptFence(run.pk, 1), log_tail="", checkpoints=[])
    for step in (3, 6):
        staging = child_dir.parent / f".staging-{step}"
        staging.mkdir(parents=True)
        (staging / "model.safetensors").write_bytes(b"weights %d" % step)
        info = checkpoints.commit(staging, child_dir, global_step=step, meta={})
        reporter(
            ProgressEvent(
                kind="checkpoint",
                step=step,
                checkpoint={
                    "path": str(info.path),
                    "global_step": step,
                    "manifest_sha256": info.manifest_sha256,
                },
            )
        )
    recorded = TrainingRun.objects.get(pk=run.pk).checkpoints
    assert [c["global_step"] for c in recorded] == [3, 6]

    # when the run is re-queued while the child trains on, committing and pruning (keep 2)
    # the two checkpoints the run recorded before it is killed
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.QUEUED, attempt=2)
    for step in (9, 12):
        staging = child_dir.parent / f".staging-{step}"
        staging.mkdir(parents=True)
        (staging / "model.safetensors").write_bytes(b"weights %d" % step)
        checkpoints.commit(staging, child_dir, global_step=step, meta={})
        checkpoints.prune(child_dir, 2, grace_s=0)  # the child prunes at once
    assert sorted(p.name for p in child_dir.iterdir()) == ["step-00000009", "step-00000012"]

    # then attempt 2's folder is seeded with the newest recorded one, which its child resumes
    run.refresh_from_db()
    out_dir = attempt_dir(run.pk, 2)
    _seed_checkpoints(run, out_dir, 2)
    trusted = {c["manifest_sha256"] for c in run.checkpoints}
    info, refused = checkpoints.latest_valid(out_dir / "checkpoints", trusted=trusted)
    assert refused == []
    assert info is not None
    assert (info.global_step, info.manifest_sha256) == (6, recorded[1]["manifest_sha256"])
