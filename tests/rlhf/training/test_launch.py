"""What a folder holds and what a run may ask for: backbone contradictions, strategies per
method, the launched command, and a child's failure report."""

import json
import sys

import pytest

from rlhf.training.architecture import backbone_conflict, describe_loaded, folder_family
from rlhf.training.config import ConfigError, PPOConfig, RewardConfig, RLOOConfig
from rlhf.training.launch import train_command, write_failure


def test_folder_family_reads_the_config_of_decoders_and_encoders(tiny_lm, tiny_encoder):
    assert folder_family(tiny_lm) == ("decoder", "LlamaForCausalLM (llama)")
    assert folder_family(tiny_encoder) == ("encoder", "BertModel (bert)")


def test_an_encoder_backbone_with_a_decoder_base_model_is_refused_naming_base_model(tiny_lm):
    field, reason = backbone_conflict("encoder", str(tiny_lm))
    assert field == "base_model"
    assert "holds a decoder (LlamaForCausalLM (llama)), but backbone is 'encoder'" in reason


def test_a_decoder_backbone_with_an_encoder_base_model_is_refused_naming_backbone(tiny_encoder):
    field, reason = backbone_conflict("decoder", str(tiny_encoder))
    assert field == "backbone"
    assert "base_model holds an encoder (BertModel (bert))" in reason


def test_matching_backbones_and_the_packaged_encoder_are_accepted(tiny_lm, tiny_encoder):
    assert backbone_conflict("decoder", str(tiny_lm)) is None
    assert backbone_conflict("encoder", str(tiny_encoder)) is None
    assert backbone_conflict("encoder", "") is None


def test_the_engine_refuses_the_contradiction_too(tiny_lm, tmp_path):
    from rlhf.training.loading import ModelFolderError, reward_model_source

    with pytest.raises(ModelFolderError, match="base_model holds a decoder"):
        reward_model_source("encoder", str(tiny_lm))


def test_describe_loaded_names_architecture_parameters_and_folder(tiny_encoder):
    from transformers import BertModel

    model = BertModel.from_pretrained(tiny_encoder)
    info = describe_loaded(model, role="reward model", source=tiny_encoder)
    assert info == {
        "role": "reward model",
        "architecture": "BertModel",
        "model_type": "bert",
        "layers": 2,
        "parameters": sum(p.numel() for p in model.parameters()),
        "source": str(tiny_encoder.resolve()),
    }


def test_ppo_says_it_trains_in_one_process_only():
    with pytest.raises(ConfigError) as refused:
        PPOConfig(reward_model="/rm", distributed="ddp", num_processes=2).validate()
    assert refused.value.errors == {
        "distributed": "PPO trains in one process only ('none'); RLOO and GRPO support ddp, "
        "fsdp and deepspeed"
    }
    RLOOConfig(reward_model="/rm", distributed="ddp", num_processes=2).validate()


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"distributed": "fsdp", "num_processes": 2, "device": "cpu"}, "distributed", "CUDA"),
        ({"distributed": "deepspeed", "num_processes": 2, "device": "cpu"}, "distributed", "CUDA"),
        ({"distributed": "ddp", "num_processes": 1}, "num_processes", "at least 2"),
        ({"num_processes": 4}, "num_processes", "unless distributed is set"),
    ],
)
def test_strategies_that_cannot_run_are_refused_with_the_field(values, field, message):
    with pytest.raises(ConfigError) as refused:
        RewardConfig(**values).validate()
    assert message in refused.value.errors[field]


def test_a_ddp_run_is_started_by_accelerate_launch_with_its_own_port(tmp_path):
    config = RewardConfig(distributed="ddp", num_processes=2)
    command = train_command("reward", tmp_path / "c.json", "data", tmp_path, config, port=29611)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert command[command.index("--num_processes") + 1] == "2"
    assert command[command.index("--main_process_port") + 1] == "29611"
    assert command[command.index("rlhf.training") + 1] == "reward"
    single = train_command("reward", tmp_path / "c.json", "data", tmp_path, RewardConfig())
    assert single[:4] == [sys.executable, "-m", "rlhf.training", "reward"]


def test_a_failure_report_names_the_exception_per_rank(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    try:
        raise ValueError("no rows")
    except ValueError as exc:
        write_failure(tmp_path, exc)
    report = json.loads((tmp_path / "failure-rank1.json").read_text())
    assert report["error"] == "ValueError: no rows"
    assert "Traceback" in report["traceback"]


def test_the_probe_names_the_device_or_why_this_machine_cannot_run(capsys):
    from rlhf.training.__main__ import main

    assert main(["probe", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out) == {"device": "cpu"}

    assert main(["probe", "--device", "cpu", "--distributed", "fsdp", "--num-processes", "2"]) == 2
    assert json.loads(capsys.readouterr().out) == {
        "error": "ValueError: distributed 'fsdp' needs CUDA GPUs; on a CPU use 'ddp'"
    }


def test_a_method_that_names_nothing_it_loaded_still_records_the_model_it_trains(
    tiny_encoder, tmp_path
):
    from types import SimpleNamespace

    from transformers import BertModel

    from rlhf.training import hf
    from rlhf.training.config import SFTConfig
    from rlhf.training.data import DatasetSplits
    from rlhf.training.progress import Reporter

    events = []
    model = BertModel.from_pretrained(tiny_encoder)
    trainer = SimpleNamespace(
        model=model,
        train=lambda resume_from_checkpoint=None: None,
        state=SimpleNamespace(global_step=0),
        add_callback=lambda callback: None,
        remove_callback=lambda callback: None,
    )
    ctx = hf.RunContext(
        method="sft", config=SFTConfig(base_model=str(tiny_encoder)),
        splits=DatasetSplits(train=[], validation=[], test=[]), out_dir=tmp_path,
        reporter=Reporter(events.append, None), device="cpu", precision="fp32", resume=False,
    )  # fmt: skip

    hf.train(trainer, ctx)

    [info] = ctx.loaded_models
    assert (info["role"], info["architecture"]) == ("trained model", "BertModel")
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert [e.message for e in events] == [hf.loaded_line(info)]
