"""Config dataclasses: documented, JSON-serialisable, validated, explicit about TRL defaults."""

import json
from dataclasses import asdict, fields

import pytest

from rlhf.training.config import (
    CONFIG_CLASSES,
    METHOD_SPECS,
    METHOD_TITLES,
    METHODS,
    ConfigError,
    RewardConfig,
    RLOOConfig,
    config_from_dict,
    config_schema,
)
from rlhf.training.data import SHAPE_FOR_METHOD
from rlhf.training.methods import MethodResult, result_details


@pytest.mark.parametrize("method", sorted(CONFIG_CLASSES))
def test_every_field_is_documented_and_round_trips_through_json(method):
    cls = CONFIG_CLASSES[method]
    for f in fields(cls):
        assert len(f.metadata.get("help", "")) > 20, f"{method}.{f.name} lacks documentation"
    stored = json.loads(
        json.dumps(
            asdict(
                cls(reward_model="rm") if "reward_model" in {f.name for f in fields(cls)} else cls()
            )
        )
    )
    assert asdict(config_from_dict(method, stored)) == stored


def test_defaults_are_explicit_about_speed_knobs_trl_would_otherwise_turn_on():
    config = RewardConfig()
    assert config.gradient_checkpointing is False
    assert config.precision == "auto"
    assert config.group_by_length is True
    assert config.compile_model is False


@pytest.mark.parametrize("method", ["ppo", "rloo", "grpo"])
def test_sampling_methods_refuse_compilation(method):
    with pytest.raises(ConfigError) as caught:
        config_from_dict(method, {"reward_model": "/models/rm", "compile_model": True})
    assert caught.value.errors == {
        "compile_model": "not available for sampling methods (PPO, RLOO, GRPO)"
    }
    assert "compile_model" not in {entry["name"] for entry in config_schema(method)}
    assert "compile_model" in {entry["name"] for entry in config_schema("dpo")}


def test_invalid_values_are_all_reported_by_field():
    with pytest.raises(ConfigError) as caught:
        config_from_dict(
            "reward", {"learning_rate": 0, "backbone": "gpt", "max_length": 4, "use_lora": "yes"}
        )
    assert set(caught.value.errors) == {"learning_rate", "backbone", "max_length", "use_lora"}


def test_unknown_fields_are_refused():
    with pytest.raises(ConfigError) as caught:
        config_from_dict("dpo", {"beta": 0.1, "betta": 0.2})
    assert caught.value.errors == {"betta": "unknown field"}


def test_online_methods_need_a_reward_model_and_whole_groups():
    with pytest.raises(ConfigError) as caught:
        RLOOConfig(per_device_batch_size=6, num_generations=4).validate()
    assert set(caught.value.errors) == {"reward_model", "per_device_batch_size"}


def test_schema_lists_each_field_with_default_and_help():
    schema = {entry["name"]: entry for entry in config_schema("ppo")}
    assert schema["clip_range"]["default"] == 0.2
    assert schema["precision"]["choices"] == ["auto", "bf16", "fp16", "fp32"]
    assert "GAE" in schema["lam"]["help"]


def test_the_method_table_is_the_one_source_of_method_facts():
    # given the table, then every derived name agrees with it, in the table's order
    assert METHODS == ("sft", "reward", "dpo", "kto", "ppo", "rloo", "grpo")
    for name, spec in METHOD_SPECS.items():
        assert (CONFIG_CLASSES[name], METHOD_TITLES[name]) == (spec.config_class, spec.title)
        assert SHAPE_FOR_METHOD[name] == spec.data_shape
        # a method needs a reward model exactly when its config has a folder for one
        names = {f.name for f in fields(spec.config_class)}
        assert ("reward_model" in names) == spec.needs_reward_model
        assert spec.paired_data == (spec.data_shape == "preference")
    online = [name for name, spec in METHOD_SPECS.items() if spec.samples_answers]
    assert online == ["ppo", "rloo", "grpo"]
    assert METHOD_SPECS["ppo"].accepted_shapes == ("prompt_only", "preference", "sft")
    assert METHOD_SPECS["dpo"].accepted_shapes == ("preference",)


def test_a_method_result_puts_only_its_own_facts_in_the_details():
    result = METHOD_SPECS["reward"].result_class(
        model_dir="m", global_step=3, base_model="b", head_init={"mode": "random"}
    )
    assert result_details(result) == {"head_init": {"mode": "random"}}
    assert result_details(MethodResult(artifact_kind="lora_adapter")) == {
        "artifact_kind": "lora_adapter"
    }
