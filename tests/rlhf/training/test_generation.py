"""Batched generation on a tiny random Llama: same tokens as one-at-a-time, safe loading."""

import json
import sys
import types
from pathlib import Path

import pytest
import torch

from rlhf.training import generation
from rlhf.training.base_models import build_tiny_causal_lm
from rlhf.training.generation import (
    GenerationConfig,
    generate_from_folder,
    generate_responses,
    load_causal_lm,
    trim_at_eos,
)
from rlhf.training.rollout import batches_by_length
from rlhf.training.rollout import pad_left as left_pad

PROMPTS = [
    "hi",
    "Write a short poem about the sea. The sea is wide and deep and blue.",
    "Paris?",
    [{"role": "system", "content": "Please answer briefly."}, {"role": "user", "content": "2+2"}],
    "def add(a, b): return a + b",
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return load_causal_lm(tiny_dir, device="cpu", dtype="float32")


def token_ids(result):
    return [r.token_ids for r in result.responses]


def test_batched_greedy_equals_one_at_a_time_token_for_token(tiny):
    # given five prompts of different lengths (so the batch needs left padding)
    config = GenerationConfig(max_new_tokens=12, temperature=0.0, batch_size=5)

    # when they are generated in one batch and then one by one
    batched = generate_responses(tiny, PROMPTS, config)
    alone = generate_responses(tiny, PROMPTS, GenerationConfig(**{**vars(config), "batch_size": 1}))

    # then every response has exactly the same tokens, in the prompts' order
    assert token_ids(batched) == token_ids(alone)
    assert [r.prompt_index for r in batched.responses] == [0, 1, 2, 3, 4]
    assert all(r.new_tokens == 12 and r.finish_reason == "length" for r in batched.responses)


def test_sampling_depends_on_the_prompt_and_seed_not_on_the_batch(tiny):
    # given sampling settings with a seed
    config = GenerationConfig(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=7, batch_size=5)

    # when the prompts are sampled together, and the fourth alone with its recorded seed
    together = generate_responses(tiny, PROMPTS, config)
    fourth = together.responses[3]
    alone = generate_responses(
        tiny, [PROMPTS[3]], GenerationConfig(**{**vars(config), "seed": fourth.params["seed"]})
    )

    # then the fourth response is reproduced token for token, and seeds are per response
    assert alone.responses[0].token_ids == fourth.token_ids
    assert [r.params["seed"] for r in together.responses] == [7, 8, 9, 10, 11]
    assert generate_responses(tiny, PROMPTS, config).responses == together.responses


def test_a_vanishing_top_p_is_greedy(tiny):
    # given nucleus sampling that keeps only the most likely token
    sampled = GenerationConfig(max_new_tokens=8, temperature=1.3, top_p=1e-9, batch_size=5)

    # when generating
    result = generate_responses(tiny, PROMPTS, sampled)

    # then the tokens are the greedy ones
    greedy = generate_responses(tiny, PROMPTS, GenerationConfig(max_new_tokens=8, temperature=0))
    assert token_ids(result) == token_ids(greedy)


def test_responses_stop_at_end_of_sequence_and_say_why(tiny_dir):
    # given a model whose generation config names one more stop token: greedy's 4th token of
    # the first prompt, so that prompt stops early while its batch mates run to the budget
    loaded = load_causal_lm(tiny_dir, device="cpu", dtype="float32")
    config = GenerationConfig(max_new_tokens=10, temperature=0.0, batch_size=5)
    free_run = generate_responses(loaded, PROMPTS, config).responses[0].token_ids
    stop_token = free_run[3]
    stop_at = free_run.index(stop_token)
    loaded.model.generation_config.eos_token_id = [loaded.tokenizer.eos_token_id, stop_token]

    # when generating in a batch and alone
    batched = generate_responses(loaded, PROMPTS, config).responses
    alone = generate_responses(
        loaded, PROMPTS, GenerationConfig(**{**vars(config), "batch_size": 1})
    )

    # then the first response ends with the stop token and is counted up to it, inclusive
    first = batched[0]
    assert first.finish_reason == "eos"
    assert first.token_ids == free_run[: stop_at + 1]
    assert first.new_tokens == stop_at + 1
    assert [r.token_ids for r in batched] == [r.token_ids for r in alone.responses]
    assert {r.finish_reason for r in batched if stop_token not in r.token_ids} <= {"length"}


def test_generation_params_and_token_counts_are_recorded(tiny):
    # given a chat prompt
    config = GenerationConfig(max_new_tokens=5, temperature=0.8, top_p=0.5, seed=3)

    # when generating
    response = generate_responses(tiny, ["hi"], config).responses[0]

    # then the response carries the sampling settings and the templated prompt's token count
    templated = tiny.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert templated.endswith("<|im_start|>assistant\n")
    assert response.prompt_tokens == len(tiny.tokenizer(templated)["input_ids"])
    assert response.params == {
        "temperature": 0.8,
        "top_p": 0.5,
        "max_new_tokens": 5,
        "seed": 3,
        "batch_size": 16,
        "system_prompt": None,
        "backend": "transformers",
        "dtype": "float32",
    }
    assert response.text == tiny.tokenizer.decode(response.token_ids, skip_special_tokens=True)


def test_progress_is_reported_after_every_batch(tiny):
    calls = []
    generate_responses(
        tiny,
        PROMPTS,
        GenerationConfig(max_new_tokens=2, temperature=0, batch_size=2),
        on_progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_batches_group_prompts_by_length_longest_first():
    assert batches_by_length([3, 9, 1, 9, 5], batch_size=2) == [[1, 3], [4, 0], [2]]


def test_left_padding_puts_every_prompt_against_the_right_edge():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0, device="cpu")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_trim_at_eos_keeps_the_stop_token_and_drops_the_padding_after_it():
    assert trim_at_eos([4, 2, 2, 2], eos_ids=[2]) == ([4, 2], "eos")
    assert trim_at_eos([4, 5, 6], eos_ids=[2]) == ([4, 5, 6], "length")


def test_a_folder_with_pickle_weights_only_is_refused(tmp_path):
    # given a folder that holds a config and a pickle checkpoint, no safetensors
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")

    # when / then loading refuses before reading any weights
    with pytest.raises(ValueError, match="safetensors"):
        load_causal_lm(tmp_path, device="cpu")


def test_a_lora_adapter_folder_loads_on_its_base_and_generates(tiny_dir, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    # given a LoRA adapter with non-zero weights saved next to (not inside) its base
    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()

    # when the adapter folder is loaded (base found through adapter_config.json) and merged
    loaded = load_causal_lm(tmp_path / "adapter", device="cpu", dtype="float32")

    # then its logits are those of base + adapter, not of the base alone
    reference = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_dir), tmp_path / "adapter"
    )
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        merged_logits = loaded.model(ids).logits
        adapter_logits = reference(ids).logits
        base_logits = AutoModelForCausalLM.from_pretrained(tiny_dir)(ids).logits
    assert loaded.is_adapter
    torch.testing.assert_close(merged_logits, adapter_logits, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(merged_logits, base_logits, atol=1e-3)
    result = generate_responses(loaded, ["hi"], GenerationConfig(max_new_tokens=3, temperature=0))
    assert result.responses[0].new_tokens == 3


def test_vllm_is_used_when_available_and_its_results_are_mapped(tiny_dir, monkeypatch):
    # given a stand-in vllm module (vLLM itself needs a GPU) that echoes fixed completions
    seen = {}

    class FakeLLM:
        def __init__(self, model, trust_remote_code, load_format):
            seen.update(model=model, trust_remote_code=trust_remote_code, load_format=load_format)

        def generate(self, prompts, sampling):
            seen["sampling"] = sampling
            eos = 2
            completions = [
                types.SimpleNamespace(token_ids=[10, 11, eos], text="ab", finish_reason="stop"),
                types.SimpleNamespace(token_ids=[12, 13, 14], text="cde", finish_reason="length"),
            ]
            return [types.SimpleNamespace(outputs=[c]) for c in completions]

    fake = types.ModuleType("vllm")
    fake.LLM = FakeLLM
    fake.SamplingParams = lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(generation, "vllm_usable", lambda: True)

    # when generating from the folder with the default backend
    config = GenerationConfig(max_new_tokens=3, temperature=0.5, seed=4)
    result = generate_from_folder(tiny_dir, ["hi", "Paris?"], config)

    # then vLLM ran with remote code off, safetensors only, one seed per response
    assert result.backend == "vllm"
    assert seen["trust_remote_code"] is False
    assert seen["load_format"] == "safetensors"
    assert [s["seed"] for s in seen["sampling"]] == [4, 5]
    assert [(r.new_tokens, r.finish_reason) for r in result.responses] == [
        (3, "eos"),
        (3, "length"),
    ]


def test_the_transformers_backend_never_touches_vllm(tiny_dir, monkeypatch):
    monkeypatch.setattr(generation, "vllm_usable", lambda: pytest.fail("vllm probed"))
    config = GenerationConfig(max_new_tokens=2, temperature=0, backend="transformers")
    result = generate_from_folder(tiny_dir, ["hi"], config, device="cpu")
    assert result.backend == "transformers"


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
def test_on_a_gpu_batched_greedy_equals_one_at_a_time(tiny_dir):
    loaded = load_causal_lm(tiny_dir, device="cuda", dtype="float32")
    config = GenerationConfig(max_new_tokens=12, temperature=0.0, batch_size=5)
    batched = generate_responses(loaded, PROMPTS, config)
    alone = generate_responses(
        loaded, PROMPTS, GenerationConfig(**{**vars(config), "batch_size": 1})
    )
    assert token_ids(batched) == token_ids(alone)


@pytest.mark.gpu
@needs_cuda
def test_on_a_gpu_sampling_is_reproducible_per_response_in_bfloat16(tiny_dir):
    # given the automatic dtype (bfloat16 on a GPU that has it) and per-response seeds
    loaded = load_causal_lm(tiny_dir, device="cuda", dtype="auto")
    config = GenerationConfig(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=11, batch_size=5)

    # when sampling twice, and the third prompt alone with its recorded seed
    first = generate_responses(loaded, PROMPTS, config).responses
    second = generate_responses(loaded, PROMPTS, config).responses
    alone = generate_responses(
        loaded, [PROMPTS[2]], GenerationConfig(**{**vars(config), "seed": first[2].params["seed"]})
    ).responses[0]

    # then the runs agree and the lone prompt reproduces its batched response
    assert [r.token_ids for r in first] == [r.token_ids for r in second]
    assert alone.token_ids == first[2].token_ids
    assert first[0].params["dtype"] == ("bfloat16" if torch.cuda.is_bf16_supported() else "float32")
