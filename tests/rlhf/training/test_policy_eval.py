"""Policy evaluation on tiny random models, checked against direct forward passes."""

import math
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from rlhf.training.base_models import build_tiny_causal_lm, build_tiny_encoder
from rlhf.training.generation import GenerationConfig, encode_prompts, load_causal_lm
from rlhf.training.policy_eval import (
    evaluate_policy,
    kl_to_reference,
    length_stats,
    load_reward_model,
    perplexity,
    score_rewards,
    token_log_probs,
)
from rlhf.training.tokens import encode_for_scoring

PROMPTS = ["hi", "Write a short poem about the sea.", "Paris?"]


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("policy"), seed=0)


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("reference"), seed=1)


@pytest.fixture(scope="module")
def policy(policy_dir):
    return load_causal_lm(policy_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def reference(reference_dir):
    return load_causal_lm(reference_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def reward_dir(policy_dir, tmp_path_factory):
    """A decoder reward model: the tiny LM's body with a random one-logit head."""
    out = tmp_path_factory.mktemp("reward")
    torch.manual_seed(2)
    model = AutoModelForSequenceClassification.from_pretrained(policy_dir, num_labels=1)
    model.save_pretrained(out)
    load_causal_lm(policy_dir, device="cpu").tokenizer.save_pretrained(out)
    return out


def unpadded_log_probs(loaded, context, continuation):
    ids = torch.tensor([context + continuation])
    with torch.inference_mode():
        logits = loaded.model(ids).logits[0]  # (seq_len, vocab)
    log_probs = torch.log_softmax(logits, dim=-1)
    return [log_probs[len(context) - 1 + t, token].item() for t, token in enumerate(continuation)]


def test_length_statistics_by_hand():
    stats = length_stats([10, 1, 3, 2], ["length", "eos", "eos", "eos"])
    assert (stats.count, stats.mean, stats.median, stats.min, stats.max) == (4, 4.0, 2.5, 1, 10)
    assert stats.p90 == 10.0  # nearest rank: ceil(0.9 * 4) = 4th smallest
    assert stats.truncated_share == 0.25


def test_padded_batch_log_probs_equal_one_unpadded_pass_each(policy):
    # given contexts and continuations of different lengths (right padding in one batch)
    contexts = [[5, 6, 7, 8, 9], [10], [11, 12]]
    continuations = [[20, 21], [22, 23, 24, 25], [26]]

    # when scored in one batch
    batched = token_log_probs(policy, contexts, continuations, batch_size=3)

    # then each equals its own unpadded forward pass
    for got, ctx, cont in zip(batched, contexts, continuations, strict=True):
        assert got == pytest.approx(unpadded_log_probs(policy, ctx, cont), abs=1e-5)


def test_kl_of_a_policy_to_itself_is_exactly_zero(policy):
    responses = [[30, 31, 32], [33], [34, 35]]
    kl = kl_to_reference(policy, policy, PROMPTS, responses)
    assert kl.per_response == [0.0, 0.0, 0.0]
    assert kl.mean == 0.0


def test_kl_is_the_summed_log_ratio_on_the_generated_tokens(policy, reference):
    # given responses (token ids) to three prompts
    responses = [[30, 31, 32], [33], [34, 35]]

    # when measuring KL of the policy to the reference
    kl = kl_to_reference(policy, reference, PROMPTS, responses)

    # then each response's value is Σ_t log π(y_t) - log π_ref(y_t), from unpadded passes
    contexts = encode_prompts(policy.tokenizer, PROMPTS)
    expected = [
        sum(unpadded_log_probs(policy, c, r)) - sum(unpadded_log_probs(reference, c, r))
        for c, r in zip(contexts, responses, strict=True)
    ]
    assert kl.per_response == pytest.approx(expected, abs=1e-4)
    assert kl.mean == pytest.approx(sum(expected) / 3, abs=1e-4)
    assert kl.per_token_mean == pytest.approx(sum(expected) / 6, abs=1e-4)


def test_perplexity_matches_the_models_own_loss(policy):
    # given one text: perplexity is exp of the mean next-token loss the model reports itself
    text = "The quick brown fox jumps over the lazy dog."
    ids = torch.tensor([policy.tokenizer(text)["input_ids"]])
    with torch.inference_mode():
        loss = AutoModelForCausalLM.from_pretrained(policy.model_dir)(ids, labels=ids).loss
    assert perplexity(policy, [text]) == pytest.approx(math.exp(loss.item()), rel=1e-5)


def test_perplexity_over_texts_is_token_weighted(policy):
    texts = ["The sea is wide.", "Paris is the capital of France. Thank you!"]
    per_text = []
    for text in texts:
        ids = policy.tokenizer(text)["input_ids"]
        per_text.append((sum(unpadded_log_probs(policy, ids[:1], ids[1:])), len(ids) - 1))
    expected = math.exp(-sum(s for s, _ in per_text) / sum(n for _, n in per_text))
    assert perplexity(policy, texts) == pytest.approx(expected, rel=1e-5)


def test_rewards_in_a_batch_equal_rewards_one_at_a_time(reward_dir):
    reward_model = load_reward_model(reward_dir, device="cpu", dtype="float32")
    responses = ["Hello there.", "The sea is wide and deep and blue, and so on.", "Yes"]
    together = score_rewards(reward_model, PROMPTS, responses, batch_size=3)
    alone = [
        score_rewards(reward_model, [p], [r]).rewards[0]
        for p, r in zip(PROMPTS, responses, strict=True)
    ]
    assert together.rewards == pytest.approx(alone, abs=1e-5)
    assert together.mean == pytest.approx(sum(alone) / 3, abs=1e-5)
    assert len(set(together.rewards)) == 3


def test_an_encoder_reward_model_reads_prompt_and_response_as_a_pair(tmp_path):
    # given a BERT-type reward model (no chat template)
    build_tiny_encoder(tmp_path / "encoder")
    torch.manual_seed(3)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "encoder", num_labels=1)
    model.save_pretrained(tmp_path / "encoder")
    reward_model = load_reward_model(tmp_path / "encoder", device="cpu", dtype="float32")

    # when scoring, then it gives one finite reward per response
    stats = score_rewards(reward_model, PROMPTS, ["a", "b", "c"])
    assert len(stats.rewards) == 3
    assert all(math.isfinite(r) for r in stats.rewards)


def test_evaluate_policy_reports_lengths_reward_and_kl(policy, reference, reward_dir):
    # given a policy, a reference and a reward model
    reward_model = load_reward_model(reward_dir, device="cpu", dtype="float32")
    config = GenerationConfig(max_new_tokens=6, temperature=1.0, top_p=1.0, seed=0)

    # when evaluating on three prompts
    evaluation = evaluate_policy(
        policy, PROMPTS, config, reward_model=reward_model, reference=reference
    )

    # then the figures are those of the generated responses
    responses = evaluation.generation.responses
    assert evaluation.prompts == 3
    assert evaluation.lengths.mean == sum(r.new_tokens for r in responses) / 3
    expected_rewards = score_rewards(reward_model, PROMPTS, [r.text for r in responses]).rewards
    assert evaluation.reward.rewards == pytest.approx(expected_rewards, abs=1e-6)
    expected_kl = kl_to_reference(policy, reference, PROMPTS, [r.token_ids for r in responses])
    assert evaluation.kl_to_reference.mean == pytest.approx(expected_kl.mean, abs=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_scores_match_the_cpu(policy_dir, reference_dir, reward_dir, policy, reference):
    # given the same models on the GPU in float32
    gpu_policy = load_causal_lm(policy_dir, device="cuda", dtype="float32")
    gpu_reference = load_causal_lm(reference_dir, device="cuda", dtype="float32")
    responses = [[30, 31, 32], [33], [34, 35]]

    # then KL, perplexity and rewards agree with the CPU to float32 precision
    cpu_kl = kl_to_reference(policy, reference, PROMPTS, responses)
    gpu_kl = kl_to_reference(gpu_policy, gpu_reference, PROMPTS, responses)
    assert gpu_kl.per_response == pytest.approx(cpu_kl.per_response, abs=1e-3)
    text = "The sea is wide and deep and blue."
    assert perplexity(gpu_policy, [text]) == pytest.approx(perplexity(policy, [text]), rel=1e-3)
    cpu_rm = load_reward_model(reward_dir, device="cpu", dtype="float32")
    gpu_rm = load_reward_model(reward_dir, device="cuda", dtype="float32")
    answers = ["Hello there.", "The sea.", "Yes"]
    assert score_rewards(gpu_rm, PROMPTS, answers).rewards == pytest.approx(
        score_rewards(cpu_rm, PROMPTS, answers).rewards, abs=1e-3
    )


def test_an_encoder_scores_a_prompt_longer_than_its_positions_by_its_tail(tmp_path):
    # given a BERT-type reward model with 512 positions and a prompt of ~1,500 tokens
    build_tiny_encoder(tmp_path / "encoder")
    torch.manual_seed(3)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "encoder", num_labels=1)
    model.save_pretrained(tmp_path / "encoder")
    reward_model = load_reward_model(tmp_path / "encoder", device="cpu", dtype="float32")
    long_prompt = [{"role": "user", "content": "tell me about bread " * 300}]
    limit = model.config.max_position_embeddings
    # when scoring two responses to it
    stats = score_rewards(reward_model, [long_prompt, long_prompt], ["Bake it.", "No."])
    # then each is scored (no position overflow) on its last 512 tokens, the layout training
    # reads (the prompt's start gives way, tokens.encode_for_scoring), which hold the whole
    # response: the scores differ by response
    assert all(math.isfinite(r) for r in stats.rewards)
    assert stats.rewards[0] != stats.rewards[1]
    (full,), _ = encode_for_scoring(reward_model.tokenizer, long_prompt, ["Bake it."], sys.maxsize)
    (kept,), _ = encode_for_scoring(reward_model.tokenizer, long_prompt, ["Bake it."], limit)
    assert len(full) > limit
    assert kept == full[len(full) - limit :]
    with torch.inference_mode():
        expected = model(input_ids=torch.tensor([kept])).logits[0, 0].item()
    assert stats.rewards[0] == pytest.approx(expected, abs=1e-5)
