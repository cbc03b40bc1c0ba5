"""The same training paths on a CUDA device (skipped without one)."""

import pytest
import torch

from rlhf.training import DatasetSplits, DPOConfig, PPOConfig, RewardConfig, run_training

from .conftest import FAST, preference_rows, prompt_rows

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

ON_GPU = {**FAST, "device": "cuda", "precision": "auto"}


def test_reward_and_dpo_train_on_the_gpu_in_bf16(tiny_lm, tmp_path):
    splits = DatasetSplits(train=preference_rows(8), validation=preference_rows(4))
    reward = run_training(
        "reward", RewardConfig(base_model=str(tiny_lm), **ON_GPU), splits, tmp_path / "rm"
    )
    dpo = run_training("dpo", DPOConfig(base_model=str(tiny_lm), **ON_GPU), splits, tmp_path / "d")
    for result in (reward, dpo):
        assert result.device == "cuda"
        assert result.precision == "bf16"
        assert result.global_step == 2
    assert reward.metrics["validation"]["pairs"] == 4


def test_ppo_rolls_out_and_trains_on_the_gpu(tiny_lm, tmp_path):
    rm = run_training(
        "reward",
        RewardConfig(base_model=str(tiny_lm), **ON_GPU),
        DatasetSplits(train=preference_rows(8)),
        tmp_path / "rm",
    )
    config = PPOConfig(
        base_model=str(tiny_lm),
        reward_model=rm.model_dir,
        max_new_tokens=4,
        mini_batch_size=2,
        **{**ON_GPU, "per_device_batch_size": 4},
    )
    result = run_training("ppo", config, DatasetSplits(train=prompt_rows(8)), tmp_path / "ppo")
    assert result.device == "cuda"
    assert result.global_step == 2
