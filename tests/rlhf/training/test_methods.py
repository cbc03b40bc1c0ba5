"""Every method trains a few steps on tiny random models: finite loss, parameters that move,
the result and progress contract the platform builds on."""

import hashlib
import math

import pytest
import torch
from safetensors.torch import load_file

from rlhf.training import (
    DatasetSplits,
    DPOConfig,
    GRPOConfig,
    PPOConfig,
    RewardConfig,
    RLOOConfig,
    SFTConfig,
    TrainingStopped,
    run_training,
)

from .conftest import FAST, preference_rows, prompt_rows, sft_rows

PREFERENCES = DatasetSplits(train=preference_rows(8), validation=preference_rows(4, long_every=0))
PROMPTS = DatasetSplits(train=prompt_rows(8))


def tensors(folder, name):
    return load_file(str(folder / name))


def assert_moved(before: torch.Tensor, after: torch.Tensor):
    assert before.shape == after.shape
    assert not torch.equal(before, after)


def adapter_moved(model_dir):
    # LoRA's B matrices start at zero: any non-zero entry means the adapter trained.
    weights = tensors(model_dir, "adapter_model.safetensors")
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b
    return any(bool(t.abs().sum() > 0) for t in lora_b)


def check_common(result, events, out_dir, *, steps=2):
    assert result.global_step == steps
    assert result.dropped_rows == 0
    # Preparation may log before training starts (a reward head's probe); nothing else may.
    kinds = [e.kind for e in events if e.kind != "log"]
    assert kinds[0] == "start"
    assert kinds[-1] == "end"
    step_events = [e for e in events if e.kind == "step"]
    assert [e.step for e in step_events] == list(range(1, steps + 1))
    assert all(math.isfinite(e.loss) for e in step_events)
    assert step_events[-1].total_steps == steps
    for artifact in result.artifacts:
        data = (out_dir / artifact.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == artifact.sha256
    assert not any(a.path.endswith((".bin", ".pt", ".pth")) for a in result.artifacts)
    assert result.library_versions["trl"]
    assert len(result.chat_template_sha256) == 64


@pytest.fixture(scope="module")
def reward_model(tiny_lm, tmp_path_factory):
    out = tmp_path_factory.mktemp("reward-run")
    run_training("reward", RewardConfig(base_model=str(tiny_lm), **FAST), PREFERENCES, out)
    return out / "model"


def test_reward_model_on_a_decoder_trains_and_reports_pairwise_accuracy(tiny_lm, tmp_path):
    events = []
    result = run_training(
        "reward",
        RewardConfig(base_model=str(tiny_lm), **FAST),
        PREFERENCES,
        tmp_path,
        progress=events.append,
    )
    check_common(result, events, tmp_path)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert_moved(
        tensors(tiny_lm, "model.safetensors")[name],
        tensors(tmp_path / "model", "model.safetensors")[name],
    )
    validation = result.metrics["validation"]
    assert validation["pairs"] == 4
    assert 0.0 <= validation["accuracy"] <= 1.0
    assert isinstance(validation["ties"], int)
    assert validation["nothing_learned"] is (validation["loss"] >= 0.69)
    assert result.truncated_rows == 2  # rows 0 and 4 carry long histories
    assert result.method_title.startswith("Reward model, Bradley-Terry")


def test_a_compiled_reward_model_takes_the_same_steps_as_an_eager_one(tiny_lm, tmp_path):
    # Given two runs of the same seed, one asking for torch.compile
    config = {"base_model": str(tiny_lm), "head_init": "random", **FAST}
    eager, compiled = [], []
    run_training(
        "reward", RewardConfig(**config), PREFERENCES, tmp_path / "eager", progress=eager.append
    )
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()

    # When the second one trains
    run_training(
        "reward",
        RewardConfig(**config, compile_model=True),
        PREFERENCES,
        tmp_path / "compiled",
        progress=compiled.append,
    )

    # Then dynamo really compiled graphs, the losses match step by step, and the saved model
    # loads under its plain names (no torch.compile wrapper prefix)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    losses = [[e.loss for e in events if e.kind == "step"] for events in (eager, compiled)]
    assert len(losses[1]) == 2
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    saved = tensors(tmp_path / "compiled" / "model", "model.safetensors")
    assert set(saved) == set(tensors(tmp_path / "eager" / "model", "model.safetensors"))


def test_reward_model_on_an_encoder_uses_the_margin(tiny_encoder, tmp_path):
    config = RewardConfig(base_model=str(tiny_encoder), backbone="encoder", use_margin=True, **FAST)
    events = []
    result = run_training("reward", config, PREFERENCES, tmp_path, progress=events.append)
    check_common(result, events, tmp_path)
    name = "bert.encoder.layer.0.attention.self.query.weight"
    before = tensors(tiny_encoder, "model.safetensors")
    before = before.get(name, before.get(name.removeprefix("bert.")))
    assert_moved(before, tensors(tmp_path / "model", "model.safetensors")[name])


def test_dpo_with_lora_uses_the_parent_as_reference(tiny_lm, tmp_path):
    events = []
    result = run_training(
        "dpo",
        DPOConfig(base_model=str(tiny_lm), **FAST),
        PREFERENCES,
        tmp_path,
        progress=events.append,
    )
    check_common(result, events, tmp_path)
    assert adapter_moved(tmp_path / "model")
    assert result.reference_model == f"{tiny_lm} (the parent: LoRA adapter disabled)"
    assert "eval_rewards/accuracies" in result.metrics["validation"]


def test_dpo_full_fine_tuning_loads_the_named_reference(tiny_lm, tmp_path):
    config = DPOConfig(
        base_model=str(tiny_lm), use_lora=False, reference_model=str(tiny_lm), **FAST
    )
    events = []
    result = run_training("dpo", config, PREFERENCES, tmp_path, progress=events.append)
    check_common(result, events, tmp_path)
    assert result.reference_model == str(tiny_lm)
    name = "model.layers.0.mlp.up_proj.weight"
    assert_moved(
        tensors(tiny_lm, "model.safetensors")[name],
        tensors(tmp_path / "model", "model.safetensors")[name],
    )


def test_sft_trains_lora_and_scores_held_out_corrections(tiny_lm, tmp_path):
    config = SFTConfig(base_model=str(tiny_lm), eval_generations=2, eval_max_new_tokens=4, **FAST)
    splits = DatasetSplits(train=sft_rows(8), validation=sft_rows(2), test=sft_rows(4))
    events = []
    result = run_training("sft", config, splits, tmp_path, progress=events.append)
    check_common(result, events, tmp_path)
    assert adapter_moved(tmp_path / "model")
    assert math.isfinite(result.metrics["validation_perplexity"])
    generation = result.metrics["generation"]
    assert generation["generations"] == 2
    assert generation["references"] == "corrections"
    assert 0.0 <= generation["rougeL_f"] <= 1.0


@pytest.mark.parametrize(("method", "config_cls"), [("rloo", RLOOConfig), ("grpo", GRPOConfig)])
def test_rloo_and_grpo_train_against_the_reward_model(
    method, config_cls, tiny_lm, reward_model, tmp_path
):
    config = config_cls(
        base_model=str(tiny_lm),
        reward_model=str(reward_model),
        num_generations=2,
        max_new_tokens=4,
        **{**FAST, "per_device_batch_size": 4},
    )
    events = []
    result = run_training(method, config, PROMPTS, tmp_path, progress=events.append)
    check_common(result, events, tmp_path)
    assert adapter_moved(tmp_path / "model")
    assert result.reward_model == str(reward_model)
    assert "reward" in [e for e in events if e.kind == "step"][-1].metrics


def test_ppo_trains_policy_and_value_model(tiny_lm, reward_model, tmp_path):
    config = PPOConfig(
        base_model=str(tiny_lm),
        reward_model=str(reward_model),
        max_new_tokens=4,
        mini_batch_size=2,
        **{**FAST, "per_device_batch_size": 4},
    )
    events = []
    result = run_training("ppo", config, PROMPTS, tmp_path, progress=events.append)
    check_common(result, events, tmp_path)
    assert adapter_moved(tmp_path / "model")
    assert result.metrics["last"]["response_length"] <= 4
    name = "score.weight"
    assert_moved(
        tensors(reward_model, "model.safetensors")[name],
        tensors(tmp_path / "model" / "value_model", "model.safetensors")[name],
    )
    last = [e for e in events if e.kind == "step"][-1].metrics
    assert {"score", "kl", "kl_coef", "policy_loss", "value_loss", "clip_fraction"} <= set(last)


def test_a_stop_request_ends_the_run_before_anything_is_written(tiny_lm, tmp_path):
    # Given a caller whose fencing token is lost after the first step
    steps_seen = []

    def progress(event):
        if event.kind == "step":
            steps_seen.append(event.step)

    config = RewardConfig(base_model=str(tiny_lm), **{**FAST, "checkpoint_every_steps": 1})
    # When
    with pytest.raises(TrainingStopped):
        run_training(
            "reward",
            config,
            PREFERENCES,
            tmp_path,
            progress=progress,
            should_stop=lambda: len(steps_seen) >= 1,
        )
    # Then: no checkpoint and no model were published
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
    assert not (tmp_path / "model").exists()
    assert not (tmp_path / "result.json").exists()
