"""Encoder-decoder SFT: a tiny random T5 trains with LoRA or fully, is evaluated (perplexity,
BLEU/ROUGE on held-out corrections) and answers through the generation path; the other
methods refuse it with the field named."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from rlhf.training import (
    ConfigError,
    DatasetSplits,
    DPOConfig,
    KTOConfig,
    PPOConfig,
    RewardConfig,
    SFTConfig,
    run_training,
)
from rlhf.training.base_models import build_tiny_seq2seq
from rlhf.training.config import is_seq2seq, methods_for_base
from rlhf.training.evaluation import overlap_scores
from rlhf.training.generation import GenerationConfig, generate_responses, load_causal_lm
from rlhf.training.tokens import encode_seq2seq, seq2seq_source_ids, seq2seq_template_sha256

from .conftest import FAST, sft_rows
from .test_methods import adapter_moved, assert_moved, check_common

SPLITS = DatasetSplits(train=sft_rows(8), validation=sft_rows(2), test=sft_rows(4))


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    return build_tiny_seq2seq(tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="module")
def t5_adapter_run(tiny_t5, tmp_path_factory):
    out = tmp_path_factory.mktemp("t5-sft")
    events = []
    config = SFTConfig(
        base_model=str(tiny_t5), eval_generations=2, eval_max_new_tokens=4,
        **{**FAST, "checkpoint_every_steps": 1},
    )  # fmt: skip
    result = run_training("sft", config, SPLITS, out, progress=events.append)
    return result, events, out


def test_sft_trains_a_lora_adapter_on_a_t5_and_scores_held_out_corrections(t5_adapter_run, tiny_t5):
    result, events, out = t5_adapter_run
    check_common(result, events, out)
    assert adapter_moved(out / "model")
    adapter = json.loads((out / "model" / "adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_2_SEQ_LM"
    assert adapter["base_model_name_or_path"] == str(tiny_t5.resolve())
    assert result.details["artifact_kind"] == "lora_adapter"
    assert result.chat_template_sha256 == seq2seq_template_sha256()
    assert result.metrics["architecture"] == "seq2seq"
    assert math.isfinite(result.metrics["validation_perplexity"])
    generation = result.metrics["generation"]
    assert (generation["generations"], generation["references"]) == (2, "corrections")
    assert 0.0 <= generation["bleu"] <= 100.0
    assert 0.0 <= generation["rougeL_f"] <= 1.0
    assert [c["global_step"] for c in [result.last_checkpoint]] == [2]


def test_sft_fine_tunes_every_weight_of_a_t5(tiny_t5, tmp_path):
    config = SFTConfig(base_model=str(tiny_t5), use_lora=False, eval_generations=0, **FAST)
    events = []
    result = run_training("sft", config, SPLITS, tmp_path, progress=events.append)
    check_common(result, events, tmp_path)
    assert result.details["artifact_kind"] == "full_weights"
    name = "decoder.block.0.layer.0.SelfAttention.q.weight"
    assert_moved(
        load_file(str(tiny_t5 / "model.safetensors"))[name],
        load_file(str(tmp_path / "model" / "model.safetensors"))[name],
    )


def test_a_trained_t5_adapter_answers_through_the_generation_path(t5_adapter_run):
    _, _, out = t5_adapter_run
    loaded = load_causal_lm(out / "model", device="cpu", dtype="fp32")
    assert loaded.model.config.is_encoder_decoder
    config = GenerationConfig(max_new_tokens=5, temperature=0.0, backend="transformers")
    prompts = ["How do I make tea?", [{"role": "user", "content": "And soup?"}]]

    first = generate_responses(loaded, prompts, config)
    again = generate_responses(loaded, prompts, config)

    assert [r.prompt_index for r in first.responses] == [0, 1]
    assert [r.token_ids for r in first.responses] == [r.token_ids for r in again.responses]
    # the answer is what the decoder wrote after its start token, for the source SFT trained on
    source = seq2seq_source_ids(loaded.tokenizer, [{"role": "user", "content": "And soup?"}], 512)
    assert first.responses[1].prompt_tokens == len(source[0])
    direct = loaded.model.generate(
        input_ids=torch.tensor([source[0]]), max_new_tokens=5, do_sample=False, num_beams=1
    )  # (1, 1 + new_tokens)
    assert direct[0, 0] == loaded.model.config.decoder_start_token_id
    expected = direct[0, 1:].tolist()
    eos = loaded.tokenizer.eos_token_id
    expected = expected[: expected.index(eos) + 1] if eos in expected else expected
    assert first.responses[1].token_ids == expected
    assert 1 <= first.responses[1].new_tokens <= 5


@pytest.mark.parametrize(
    ("method", "config_cls", "extra"),
    [
        ("reward", RewardConfig, {}),
        ("dpo", DPOConfig, {}),
        ("kto", KTOConfig, {}),
        ("ppo", PPOConfig, {"reward_model": "rm"}),
    ],
)
def test_methods_other_than_sft_refuse_a_seq2seq_base_naming_the_field(
    method, config_cls, extra, tiny_t5
):
    with pytest.raises(ConfigError) as refused:
        config_cls(base_model=str(tiny_t5), **extra).validate()
    assert set(refused.value.errors) == {"base_model"}
    assert "encoder-decoder" in refused.value.errors["base_model"]


def test_the_methods_offered_follow_the_base_models_architecture(tiny_t5, tiny_lm, tmp_path):
    assert is_seq2seq(str(tiny_t5))
    assert not is_seq2seq(str(tiny_lm))
    assert methods_for_base(str(tiny_t5)) == ("sft",)
    assert "dpo" in methods_for_base(str(tiny_lm))
    # an adapter over a T5 is seq2seq too (its base decides)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tiny_t5)})
    )
    assert methods_for_base(str(adapter)) == ("sft",)
    assert not is_seq2seq(str(tmp_path / "missing"))
    assert not is_seq2seq("")


def test_seq2seq_encoding_cuts_the_oldest_text_and_ends_both_sides_with_eos(tiny_t5):
    from rlhf.training.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_t5)
    eos = tokenizer.eos_token_id
    long_prompt = [
        {"role": "user", "content": "An early question " * 20},
        {"role": "assistant", "content": "An early answer."},
        {"role": "user", "content": "What now?"},
    ]
    source, target, truncated = encode_seq2seq(tokenizer, long_prompt, "Paris.", 32)
    assert truncated
    assert len(source) == 32
    assert source[-1] == eos
    assert tokenizer.decode(source[:-1]).endswith("user: What now?\nassistant:")
    assert target == [*tokenizer("Paris.", add_special_tokens=False)["input_ids"], eos]
    short, _, cut = encode_seq2seq(tokenizer, long_prompt[-1:], "Paris.", 32)
    assert not cut
    assert tokenizer.decode(short[:-1]) == "user: What now?\nassistant:"


def test_overlap_scores_are_bleu_and_rouge_of_the_answers():
    same = overlap_scores(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert same["bleu"] == pytest.approx(100.0)
    assert (same["rouge1_f"], same["rougeL_f"]) == (1.0, 1.0)
    disjoint = overlap_scores(["dogs bark loudly"], ["the cat sat on the mat"])
    assert (disjoint["bleu"], disjoint["rouge1_f"], disjoint["rougeL_f"]) == (0.0, 0.0, 0.0)
    assert overlap_scores([], []) == {"generations": 0}
