"""Killed runs resume from their newest valid checkpoint and continue the global step."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhf.training import DatasetSplits, PPOConfig, RewardConfig, TrainingStopped, run_training

from .conftest import FAST, preference_rows, prompt_rows

REPO = Path(__file__).resolve().parents[3]
KILLED_CONFIG = {**FAST, "max_steps": 6, "checkpoint_every_steps": 1, "per_device_batch_size": 4}

# The child reports each step slowly so the parent can kill it between checkpoints.
CHILD = """
import sys, time
import torch
torch.set_num_threads(1)
from rlhf.training import DatasetSplits, RewardConfig, run_training
from tests.rlhf.training.conftest import preference_rows
from tests.rlhf.training.test_resume import KILLED_CONFIG

def slow(event):
    if event.kind == "step":
        time.sleep(0.3)

config = RewardConfig(base_model=sys.argv[1], **KILLED_CONFIG)
run_training("reward", config, DatasetSplits(train=preference_rows(24)), sys.argv[2], progress=slow)
"""


def test_a_run_killed_with_sigkill_resumes_and_matches_an_uninterrupted_run(tiny_lm, tmp_path):
    # Given a training process killed right after its second checkpoint
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tiny_lm), str(killed)], cwd=REPO, env=env
    )
    deadline = time.monotonic() + 240
    while not (killed / "checkpoints" / "step-00000002").exists():
        assert child.poll() is None, "the child ended before it could be killed"
        assert time.monotonic() < deadline, "no second checkpoint within 4 minutes"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (killed / "model").exists()

    # When the same run starts again
    events = []
    config = RewardConfig(base_model=str(tiny_lm), **KILLED_CONFIG)
    splits = DatasetSplits(train=preference_rows(24))
    result = run_training("reward", config, splits, killed, progress=events.append)

    # Then it continues from the newest checkpoint to the end, numbering steps globally
    resumed = result.resumed_from_step
    assert 2 <= resumed < 6
    assert next(e.step for e in events if e.kind == "step") == resumed + 1
    assert result.global_step == 6
    # ...taking its reward head from the checkpoint instead of fitting a new one
    assert result.details["head_init"]["mode"] == "checkpoint"
    # ...and lands on the same weights as a run that was never interrupted (same data order)
    straight = tmp_path / "straight"
    run_training("reward", config, splits, straight)
    name = "model.layers.1.mlp.down_proj.weight"
    after_kill = load_file(str(killed / "model" / "model.safetensors"))[name]
    uninterrupted = load_file(str(straight / "model" / "model.safetensors"))[name]
    assert torch.allclose(after_kill, uninterrupted, atol=1e-6)


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(tiny_lm, tmp_path):
    config = RewardConfig(
        base_model=str(tiny_lm), **{**FAST, "max_steps": 3, "checkpoint_every_steps": 1}
    )
    splits = DatasetSplits(train=preference_rows(12))
    run_training("reward", config, splits, tmp_path)
    weights = tmp_path / "checkpoints" / "step-00000003" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])

    result = run_training("reward", config, splits, tmp_path)

    assert result.resumed_from_step == 2
    assert result.refused_checkpoints == [
        ["step-00000003", "model.safetensors does not match its recorded sha256"]
    ]
    assert result.global_step == 3


def test_ppo_fenced_before_its_checkpoint_resumes_from_the_previous_one(
    tiny_lm, tmp_path_factory, tmp_path
):
    reward_dir = tmp_path_factory.mktemp("ppo-reward")
    run_training(
        "reward",
        RewardConfig(base_model=str(tiny_lm), **FAST),
        DatasetSplits(train=preference_rows(8)),
        reward_dir,
    )
    config = PPOConfig(
        base_model=str(tiny_lm),
        reward_model=str(reward_dir / "model"),
        max_new_tokens=4,
        mini_batch_size=2,
        **{**FAST, "max_steps": 3, "checkpoint_every_steps": 1, "per_device_batch_size": 4},
    )
    splits = DatasetSplits(train=prompt_rows(12))
    steps = []

    def progress(event):
        if event.kind == "step":
            steps.append(event.step)

    # Given an attempt that loses its fencing token after step 2, before writing step 2
    with pytest.raises(TrainingStopped):
        run_training(
            "ppo", config, splits, tmp_path, progress=progress, should_stop=lambda: len(steps) >= 2
        )
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000001"]

    # When a new attempt starts
    events = []
    result = run_training("ppo", config, splits, tmp_path, progress=events.append)

    # Then it resumes at step 1 and finishes at step 3
    assert result.resumed_from_step == 1
    assert [e.step for e in events if e.kind == "step"] == [2, 3]
    assert result.global_step == 3


def test_a_run_killed_after_its_final_checkpoint_resumes_without_training_past_max_steps(
    tiny_lm, tmp_path
):
    # Given a run whose last checkpoint is at max_steps, killed before it saved its model
    config = RewardConfig(
        base_model=str(tiny_lm), **{**FAST, "max_steps": 3, "checkpoint_every_steps": 1}
    )
    splits = DatasetSplits(train=preference_rows(12))
    run_training("reward", config, splits, tmp_path)
    final = tmp_path / "model" / "model.safetensors"
    finished_weights = load_file(str(final))
    shutil.rmtree(tmp_path / "model")

    # When the same run starts again
    events = []
    result = run_training("reward", config, splits, tmp_path, progress=events.append)

    # Then it trains no step (not one past max_steps), ends at max_steps and saves the
    # checkpoint's weights as the model
    assert result.resumed_from_step == 3
    assert [e.step for e in events if e.kind == "step"] == []
    assert result.global_step == 3
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir())[-1] == "step-00000003"
    resaved = load_file(str(final))
    assert resaved.keys() == finished_weights.keys()
    for name, tensor in finished_weights.items():
        assert torch.equal(resaved[name], tensor), name
