"""Each attempt in a child process of its own: a kill by the kernel re-queues the run with the
reason and the next attempt resumes; a cancel kills the whole process group; a run's record
names the model it loaded; contradictory settings are refused; DDP over two CPU processes
(gloo, through ``accelerate launch``) trains as one process with the same global batch does."""

import os
import signal
from pathlib import Path

import pytest

from config.errors import ValidationFailed
from rlhf.models import RunStatus, TrainingRun, TrainingRunMetric
from rlhf.runs import services as run_services
from rlhf.runs.execution import _claim, training_run_execute
from tests.rlhf.runs.conftest import wait_for
from tests.rlhf.runs.test_run_execution import in_thread, launch, loss_steps


def child_pid(run) -> int:
    return wait_for(
        lambda: (TrainingRun.objects.get(pk=run.pk).attempts_log or [{}])[-1].get("pid"),
        timeout=120,
        what="the training process to start",
    )


def group_gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def losses(run, attempt=None) -> dict[int, float]:
    points = TrainingRunMetric.objects.filter(run=run, name="loss")
    if attempt is not None:
        points = points.filter(attempt=attempt)
    return dict(points.values_list("step", "value"))


def test_an_encoder_backbone_with_the_prefilled_decoder_base_model_is_refused(
    project, engineer, snapshot, reward_config, tiny_models
):
    # given the form's pre-filled decoder folder left in place while the backbone says encoder
    config = {**reward_config, "backbone": "encoder", "base_model": str(tiny_models["lm"])}

    with pytest.raises(ValidationFailed) as refused:
        launch(project, engineer, snapshot, config)

    # then base_model is named with what it holds, and nothing was created
    reason = refused.value.extra["fields"]["base_model"]
    assert reason.startswith(
        "holds a decoder (LlamaForCausalLM (llama)), but backbone is 'encoder': leave base_model"
    )
    assert TrainingRun.objects.count() == 0


def test_a_run_records_and_logs_the_model_it_loaded(project, engineer, snapshot, reward_config):
    run = launch(project, engineer, snapshot, {**reward_config, "max_steps": 2})

    assert training_run_execute(run_id=run.pk, attempt=1) == "succeeded"

    run.refresh_from_db()
    [loaded] = run.result["loaded_models"]
    assert loaded["role"] == "reward model"
    assert loaded["architecture"] == "BertForSequenceClassification"
    assert loaded["model_type"] == "bert"
    assert loaded["source"] == str(Path(reward_config["base_model"]).resolve())
    assert loaded["parameters"] > 0
    millions = loaded["parameters"] / 1e6
    assert (
        f"loaded reward model: BertForSequenceClassification ({millions:.2f}M parameters, "
        f"2 layers) from {loaded['source']}"
    ) in run.log_tail
    # and the attempt ran in a child process, one process, whose group is gone
    entry = run.attempts_log[0]
    assert entry["world_size"] == 1
    assert run.result["world_size"] == 1
    assert f"training process {entry['pid']} started (1 process)" in run.log_tail
    assert entry["pid"] != os.getpid()
    assert group_gone(entry["pid"])


def test_a_training_process_killed_by_the_kernel_requeues_its_run_and_it_resumes(
    project, engineer, snapshot, reward_config
):
    # given attempt 1 training in its child, past its first recorded checkpoint
    run = launch(project, engineer, snapshot, {**reward_config, "max_steps": 400})
    thread, outcome = in_thread(run.pk, 1)
    pid = child_pid(run)
    wait_for(
        lambda: (
            (r := TrainingRun.objects.get(pk=run.pk)).checkpoints
            and r.progress.get("step", 0) > r.checkpoints[0]["global_step"]
        ),
        timeout=120,
        what="a checkpoint and a step after it",
    )

    # when the kernel kills the training process (as the out-of-memory killer does)
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=60)

    # then the worker survived, and re-queued the run as attempt 2 with the reason
    assert outcome == {"value": "requeued"}
    run.refresh_from_db()
    assert (run.status, run.attempt) == (RunStatus.QUEUED, 2)
    assert run.attempts_log[0]["outcome"] == "killed"
    assert f"training process {pid} was killed by SIGKILL" in run.log_tail
    assert "re-queued as attempt 2, resuming from step" in run.log_tail
    assert group_gone(pid)
    resume_step = max(c["global_step"] for c in run.checkpoints)

    # when attempt 2 runs (a few more steps, to keep the test quick)
    last = resume_step + 2
    TrainingRun.objects.filter(pk=run.pk).update(config={**run.config, "max_steps": last})
    assert training_run_execute(run_id=run.pk, attempt=2) == "succeeded"

    # then it resumed from attempt 1's newest recorded checkpoint
    run.refresh_from_db()
    assert run.result["resumed_from_step"] == resume_step
    assert loss_steps(run) == list(range(1, last + 1))
    assert [e["outcome"] for e in run.attempts_log] == ["killed", "succeeded"]


def test_a_killed_attempt_with_no_attempts_left_fails_with_the_reason(
    project, engineer, snapshot, reward_config
):
    run = run_services.training_run_launch(
        project=project, created_by=engineer, method="reward", snapshot=snapshot,
        config=reward_config, max_attempts=1,
    )  # fmt: skip
    _claim(run.pk, 1)

    outcome = run_services.training_run_release_killed(
        run_id=run.pk, attempt=1, reason="training process was killed by SIGKILL", output="boom"
    )

    run.refresh_from_db()
    assert outcome == "failed"
    assert run.status == RunStatus.FAILED
    assert run.error == (
        "training process was killed by SIGKILL (attempt 1 of max_attempts=1)\n\nlast output:\nboom"
    )
    assert run.attempts_log[0]["outcome"] == "killed"
    # and a stale attempt number changes nothing
    before = run.revision
    assert (
        run_services.training_run_release_killed(run_id=run.pk, attempt=1, reason="x", output="")
        == "lost"
    )
    run.refresh_from_db()
    assert run.revision == before


def test_cancel_kills_the_training_process_group(project, engineer, snapshot, reward_config):
    run = launch(project, engineer, snapshot, {**reward_config, "max_steps": 400})
    thread, outcome = in_thread(run.pk, 1)
    pid = child_pid(run)
    wait_for(
        lambda: TrainingRun.objects.get(pk=run.pk).progress.get("step", 0) >= 1,
        timeout=120,
        what="step 1",
    )

    run_services.training_run_cancel(run=run, cancelled_by=engineer)
    thread.join(timeout=60)

    assert outcome == {"value": "cancelled"}
    assert group_gone(pid)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert "training process group killed" in run.log_tail


@pytest.mark.slow
def test_ddp_over_two_cpu_processes_matches_one_process_and_resumes_after_a_sigkill(
    project, engineer, snapshot, reward_config
):
    # given the same run twice: one process with batch 4, and DDP over 2 processes of batch 2
    # (24 steps: on an idle machine 8 were over before the kill landed, and resuming from the
    # final step is a different case, tested in tests/rlhf/training/test_resume.py)
    common = {**reward_config, "max_steps": 24, "checkpoint_every_steps": 2, "precision": "fp32",
              "group_by_length": False, "learning_rate": 1e-4}  # fmt: skip
    single = launch(project, engineer, snapshot, {**common, "per_device_batch_size": 4})
    ddp = launch(project, engineer, snapshot, {**common, "distributed": "ddp", "num_processes": 2})
    assert training_run_execute(run_id=single.pk, attempt=1) == "succeeded"

    # when the DDP run's training process is killed after its first checkpoint
    thread, outcome = in_thread(ddp.pk, 1)
    pid = child_pid(ddp)
    wait_for(
        lambda: TrainingRun.objects.get(pk=ddp.pk).checkpoints,
        timeout=240,
        what="a checkpoint of the DDP run",
    )
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=60)
    assert outcome == {"value": "requeued"}
    resume_step = max(c["global_step"] for c in TrainingRun.objects.get(pk=ddp.pk).checkpoints)
    # and its next attempt runs
    outcome_two = training_run_execute(run_id=ddp.pk, attempt=2)
    assert outcome_two == "succeeded", TrainingRun.objects.get(pk=ddp.pk).log_tail[-3000:]

    # then it resumed, trained on 2 processes, and its loss follows the one-process run's
    ddp.refresh_from_db()
    single.refresh_from_db()
    assert ddp.result["world_size"] == 2
    assert ddp.result["distributed"] == "ddp"
    assert [e["world_size"] for e in ddp.attempts_log] == [2, 2]
    assert ddp.result["resumed_from_step"] == resume_step
    assert resume_step < 24, "the kill landed after the last step: nothing was resumed"
    assert loss_steps(ddp) == list(range(1, 25))
    one, two = losses(single), losses(ddp)
    assert one.keys() == two.keys()
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-3, abs=1e-4), step
    assert ddp.metrics["validation"]["accuracy"] == single.metrics["validation"]["accuracy"]
