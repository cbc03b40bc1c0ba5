"""Evaluate a policy on a prompt set: reward, KL to a reference, perplexity, response lengths.

- **Reward**: each (prompt, response) is scored by a sequence-classification reward model
  (one logit) through ``rollout.score_answers``, in the layout it was trained on
  (``tokens.encode_for_scoring``: the chat template for a decoder, ``[CLS] conversation [SEP]
  answer [SEP]`` for a BERT-type encoder), so the review round's reward is the trained score.
- **KL to a reference**: on the tokens the policy itself generated,
  ``KL ≈ mean over responses of Σ_t [log π(y_t | x, y_<t) - log π_ref(y_t | x, y_<t)]``, the
  per-token log-ratio summed over the response (the "k1" estimator of Schulman, 2020, as used by
  InstructGPT's KL penalty). It is unbiased for KL(π‖π_ref) when responses are sampled from π
  at temperature 1 with top_p 1; under other sampling settings it is still the log-ratio on what
  reviewers will see, which is what a drift check needs, but not exactly the KL.
- **Perplexity** on given texts: ``exp(total negative log-likelihood / total predicted tokens)``,
  token-weighted over the set (not a mean of per-text perplexities).
- **Lengths**: new tokens per response, so that a longer-is-better bias shows next to the wins.

Loading, padding, log-probabilities and scoring are the engine's one inference stack
(``loading.load_for_inference``, ``rollout``). Plain functions and dataclasses; no Django.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rlhf.training import rollout
from rlhf.training.generation import (
    GenerationConfig,
    GenerationResult,
    ProgressCallback,
    Prompt,
    as_messages,
    encode_prompts,
    generate_responses,
    load_causal_lm,
)
from rlhf.training.loading import LoadedModel, load_for_inference


@dataclass(frozen=True)
class LengthStats:
    count: int
    mean: float
    median: float
    p90: float
    min: int
    max: int
    truncated_share: float
    """Share of responses that hit max_new_tokens (finish reason "length")."""


@dataclass(frozen=True)
class RewardStats:
    mean: float
    std: float
    """Population standard deviation of the per-response rewards."""
    rewards: list[float]


@dataclass(frozen=True)
class KLStats:
    mean: float
    """Mean over responses of the summed per-token log-ratio (nats per response)."""
    per_token_mean: float
    """Total log-ratio divided by total response tokens (nats per token)."""
    per_response: list[float]


@dataclass(frozen=True)
class PolicyEvaluation:
    prompts: int
    lengths: LengthStats
    reward: RewardStats | None
    kl_to_reference: KLStats | None
    generation: GenerationResult


# ---------------------------------------------------------------------------------------------
# Lengths


def length_stats(token_counts: Sequence[int], finish_reasons: Sequence[str] = ()) -> LengthStats:
    if not token_counts:
        raise ValueError("no responses to measure")
    ordered = sorted(token_counts)
    # p90 by the nearest-rank method: the smallest value with at least 90% of values at or below.
    rank = max(1, math.ceil(0.9 * len(ordered)))
    truncated = sum(1 for reason in finish_reasons if reason == "length")
    return LengthStats(
        count=len(ordered),
        mean=statistics.fmean(ordered),
        median=float(statistics.median(ordered)),
        p90=float(ordered[rank - 1]),
        min=ordered[0],
        max=ordered[-1],
        truncated_share=truncated / len(ordered) if finish_reasons else 0.0,
    )


# ---------------------------------------------------------------------------------------------
# Log-probabilities


def token_log_probs(
    loaded: LoadedModel,
    contexts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    *,
    batch_size: int = 8,
) -> list[list[float]]:
    """log p(continuation_t | context, continuation_<t) for every continuation token
    (``rollout.continuation_log_probs`` on a loaded model)."""
    return rollout.continuation_log_probs(
        loaded.model,
        contexts,
        continuations,
        pad_id=loaded.tokenizer.pad_token_id,
        device=loaded.device,
        precision=loaded.precision,
        batch_size=batch_size,
    )


def _same_vocabulary(a: LoadedModel, b: LoadedModel) -> None:
    if a.tokenizer.get_vocab() != b.tokenizer.get_vocab():
        raise ValueError("the policy and the reference use different tokenizers; KL needs one")


def kl_to_reference(
    policy: LoadedModel,
    reference: LoadedModel,
    prompts: Sequence[Prompt],
    responses: Sequence[Sequence[int]],
    *,
    system_prompt: str | None = None,
    batch_size: int = 8,
) -> KLStats:
    """The summed per-token log-ratio log π - log π_ref on the given response token ids."""
    _same_vocabulary(policy, reference)
    contexts = encode_prompts(policy.tokenizer, prompts, system_prompt)
    policy_lp = token_log_probs(policy, contexts, responses, batch_size=batch_size)
    reference_lp = token_log_probs(reference, contexts, responses, batch_size=batch_size)
    per_response = [
        sum(p - r for p, r in zip(p_row, r_row, strict=True))
        for p_row, r_row in zip(policy_lp, reference_lp, strict=True)
    ]
    total_tokens = sum(len(r) for r in responses)
    return KLStats(
        mean=statistics.fmean(per_response) if per_response else 0.0,
        per_token_mean=sum(per_response) / total_tokens if total_tokens else 0.0,
        per_response=per_response,
    )


def perplexity(loaded: LoadedModel, texts: Sequence[str], *, batch_size: int = 8) -> float:
    """Token-weighted perplexity of plain texts (the tokenizer's own special tokens added)."""
    encoded = loaded.tokenizer(list(texts))["input_ids"]
    contexts = [ids[:1] for ids in encoded]
    targets = [ids[1:] for ids in encoded]
    if not any(targets):
        raise ValueError("texts need at least two tokens each to have anything to predict")
    return rollout.perplexity(token_log_probs(loaded, contexts, targets, batch_size=batch_size))


# ---------------------------------------------------------------------------------------------
# Reward


def load_reward_model(model_dir: Path, *, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """A reward model folder ready to score (``loading.load_for_inference``); a folder without
    a trained one-output head is refused (its scores would be noise)."""
    loaded = load_for_inference(model_dir, kind="reward_model", device=device, precision=dtype)
    if loaded.model.tandem_new_head:
        raise ValueError(f"{model_dir} is not a reward model: it has no trained one-output head")
    return loaded


def score_rewards(
    reward_model: LoadedModel,
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    *,
    system_prompt: str | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
) -> RewardStats:
    """The reward of each (prompt, response); ``max_length`` defaults to the model's limit
    (``rollout.scoring_max_length``): a long prompt loses its oldest turns, then its start."""
    if len(prompts) != len(responses):
        raise ValueError("prompts and responses must pair up")
    tokenizer, model = reward_model.tokenizer, reward_model.model
    scores, _ = rollout.score_answers(
        model,
        tokenizer,
        [as_messages(p, system_prompt) for p in prompts],
        [[r] for r in responses],
        max_length=rollout.scoring_max_length(tokenizer, model, max_length),
        device=reward_model.device,
        precision=reward_model.precision,
        batch_size=batch_size,
    )
    rewards = [group[0] for group in scores]
    return RewardStats(
        mean=statistics.fmean(rewards) if rewards else 0.0,
        std=statistics.pstdev(rewards) if rewards else 0.0,
        rewards=rewards,
    )


# ---------------------------------------------------------------------------------------------
# The whole evaluation


def evaluate_policy(
    policy: LoadedModel,
    prompts: Sequence[Prompt],
    generation: GenerationConfig,
    *,
    reward_model: LoadedModel | None = None,
    reference: LoadedModel | None = None,
    batch_size: int = 8,
    on_progress: ProgressCallback | None = None,
) -> PolicyEvaluation:
    """Generate with the policy, then measure lengths, reward and KL on those responses."""
    result = generate_responses(policy, prompts, generation, on_progress=on_progress)
    responses = result.responses
    reward = None
    if reward_model is not None:
        reward = score_rewards(
            reward_model,
            prompts,
            [r.text for r in responses],
            system_prompt=generation.system_prompt,
            batch_size=batch_size,
        )
    kl = None
    if reference is not None:
        kl = kl_to_reference(
            policy,
            reference,
            prompts,
            [r.token_ids for r in responses],
            system_prompt=generation.system_prompt,
            batch_size=batch_size,
        )
    return PolicyEvaluation(
        prompts=len(prompts),
        lengths=length_stats(
            [r.new_tokens for r in responses], [r.finish_reason for r in responses]
        ),
        reward=reward,
        kl_to_reference=kl,
        generation=result,
    )


def evaluate_policy_folder(
    policy_dir: Path,
    prompts: Sequence[Prompt],
    generation: GenerationConfig,
    *,
    reward_model_dir: Path | None = None,
    reference_dir: Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 8,
    on_progress: ProgressCallback | None = None,
) -> PolicyEvaluation:
    """``evaluate_policy`` on folders (what a background job calls)."""
    policy = load_causal_lm(policy_dir, device=device, dtype=dtype)
    reward_model = (
        load_reward_model(reward_model_dir, device=device, dtype=dtype)
        if reward_model_dir
        else None
    )
    reference = load_causal_lm(reference_dir, device=device, dtype=dtype) if reference_dir else None
    return evaluate_policy(
        policy,
        prompts,
        generation,
        reward_model=reward_model,
        reference=reference,
        batch_size=batch_size,
        on_progress=on_progress,
    )
