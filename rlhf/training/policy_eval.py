"""Evaluate a policy on a prompt set: reward, KL to a reference, perplexity, response lengths.

- **Reward**: each (prompt, response) is scored by a sequence-classification reward model
  (one logit). With a chat template the reward model reads the whole conversation through it;
  without one (a BERT-type encoder) it reads the prompt and the response as a text pair.
- **KL to a reference**: on the tokens the policy itself generated,
  ``KL ≈ mean over responses of Σ_t [log π(y_t | x, y_<t) - log π_ref(y_t | x, y_<t)]``, the
  per-token log-ratio summed over the response (the "k1" estimator of Schulman, 2020, as used by
  InstructGPT's KL penalty). It is unbiased for KL(π‖π_ref) when responses are sampled from π
  at temperature 1 with top_p 1; under other sampling settings it is still the log-ratio on what
  reviewers will see, which is what a drift check needs, but not exactly the KL.
- **Perplexity** on given texts: ``exp(total negative log-likelihood / total predicted tokens)``,
  token-weighted over the set (not a mean of per-text perplexities).
- **Lengths**: new tokens per response, so that a longer-is-better bias shows next to the wins.

Scoring pads on the RIGHT: positions then run 0..n-1 for every real token exactly as in an
unpadded forward pass, and the padding sits after the tokens that matter (causal attention never
looks at it). Plain functions and dataclasses; no Django.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf.training.generation import (
    GenerationConfig,
    GenerationResult,
    LoadedCausalLM,
    ProgressCallback,
    Prompt,
    as_messages,
    encode_prompts,
    generate_responses,
    load_causal_lm,
    require_safetensors,
    resolve_device,
    resolve_dtype,
)


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


def right_pad(sequences: Sequence[Sequence[int]], pad_id: int, device):
    import torch

    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return input_ids.to(device), attention_mask.to(device)


def token_log_probs(
    loaded: LoadedCausalLM,
    contexts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    *,
    batch_size: int = 8,
) -> list[list[float]]:
    """log p(continuation_t | context, continuation_<t) for every continuation token.

    Returns one list per pair, as long as its continuation. A context must hold at least one
    token (the first continuation token needs something to be predicted from).
    """
    import torch

    if len(contexts) != len(continuations):
        raise ValueError("contexts and continuations must pair up")
    if any(len(c) == 0 for c in contexts):
        raise ValueError("every context needs at least one token")
    pad_id = loaded.tokenizer.pad_token_id
    out: list[list[float]] = []
    for start in range(0, len(contexts), batch_size):
        sequences = [
            list(contexts[i]) + list(continuations[i])
            for i in range(start, min(start + batch_size, len(contexts)))
        ]
        input_ids, attention_mask = right_pad(sequences, pad_id, loaded.device)
        with torch.inference_mode():
            logits = loaded.model(input_ids=input_ids, attention_mask=attention_mask).logits
        # logits[:, t] predicts token t + 1.  logits: (batch, seq_len, vocab)
        log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (batch, seq_len-1, vocab)
        targets = input_ids[:, 1:].unsqueeze(-1)  # (batch, seq_len-1, 1)
        picked = log_probs.gather(-1, targets).squeeze(-1).cpu()  # (batch, seq_len-1)
        for row, i in enumerate(range(start, start + len(sequences))):
            first = len(contexts[i]) - 1  # prediction of the first continuation token
            out.append(picked[row, first : first + len(continuations[i])].tolist())
    return out


def _same_vocabulary(a: LoadedCausalLM, b: LoadedCausalLM) -> None:
    if a.tokenizer.get_vocab() != b.tokenizer.get_vocab():
        raise ValueError("the policy and the reference use different tokenizers; KL needs one")


def kl_to_reference(
    policy: LoadedCausalLM,
    reference: LoadedCausalLM,
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


def perplexity(loaded: LoadedCausalLM, texts: Sequence[str], *, batch_size: int = 8) -> float:
    """Token-weighted perplexity of plain texts (the tokenizer's own special tokens added)."""
    encoded = [loaded.tokenizer(text)["input_ids"] for text in texts]
    contexts = [ids[:1] for ids in encoded]
    targets = [ids[1:] for ids in encoded]
    if not any(targets):
        raise ValueError("texts need at least two tokens each to have anything to predict")
    log_probs = token_log_probs(loaded, contexts, targets, batch_size=batch_size)
    total = sum(sum(row) for row in log_probs)
    count = sum(len(row) for row in log_probs)
    return math.exp(-total / count)


# ---------------------------------------------------------------------------------------------
# Reward


@dataclass
class LoadedRewardModel:
    model: Any  # transformers AutoModelForSequenceClassification with one output
    tokenizer: Any
    device: Any


def load_reward_model(model_dir: Path, *, device: str = "auto", dtype: str = "auto"):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = Path(model_dir)
    require_safetensors(model_dir)
    torch_device = resolve_device(device)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir,
        dtype=resolve_dtype(dtype, torch_device),
        use_safetensors=True,
        trust_remote_code=False,
        local_files_only=True,
    )
    if model.config.num_labels != 1:
        raise ValueError(
            f"a reward model has one output; {model_dir} has {model.config.num_labels}"
        )
    tokenizer = AutoTokenizer.from_pretrained(
        model_dir, trust_remote_code=False, local_files_only=True
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        # Decoder classifiers find each row's last real token through the pad id.
        model.config.pad_token_id = tokenizer.pad_token_id
    model.to(torch_device)
    model.eval()
    return LoadedRewardModel(model=model, tokenizer=tokenizer, device=torch_device)


RewardInput = Callable[[Any, list[dict[str, str]], str], dict[str, list[int]]]


def reward_model_input(tokenizer, conversation: list[dict[str, str]], response: str):
    """Token ids the reward model reads for one (conversation, response) pair."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [*conversation, {"role": "assistant", "content": response}], tokenize=False
        )
        return tokenizer(text, add_special_tokens=False)
    prompt_text = "\n".join(f"{m['role']}: {m['content']}" for m in conversation)
    return tokenizer(prompt_text, response)


def score_rewards(
    reward_model: LoadedRewardModel,
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    *,
    system_prompt: str | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    build_input: RewardInput = reward_model_input,
) -> RewardStats:
    import torch

    if len(prompts) != len(responses):
        raise ValueError("prompts and responses must pair up")
    tokenizer = reward_model.tokenizer
    encoded = [
        build_input(tokenizer, as_messages(p, system_prompt), r)
        for p, r in zip(prompts, responses, strict=True)
    ]
    # Past the model's position limit (512 for BERT-type encoders) the forward pass fails. Keep
    # the first token ([CLS] / BOS, which an encoder pools) and the last ones: the response
    # being scored sits at the end, so the long prompt's start is what gives way.
    limit = getattr(reward_model.model.config, "max_position_embeddings", None)
    if max_length is None and limit:
        encoded = [
            {k: v[:1] + v[len(v) - limit + 1 :] for k, v in e.items()}
            if len(e["input_ids"]) > limit
            else e
            for e in encoded
        ]
    rewards: list[float] = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        if max_length is not None:
            chunk = [{k: v[:max_length] for k, v in e.items()} for e in chunk]
        batch = tokenizer.pad(chunk, padding=True, return_tensors="pt", padding_side="right")
        batch = {k: v.to(reward_model.device) for k, v in batch.items()}
        with torch.inference_mode():
            logits = reward_model.model(**batch).logits  # (batch, 1)
        rewards.extend(logits[:, 0].float().cpu().tolist())
    return RewardStats(
        mean=statistics.fmean(rewards) if rewards else 0.0,
        std=statistics.pstdev(rewards) if rewards else 0.0,
        rewards=rewards,
    )


# ---------------------------------------------------------------------------------------------
# The whole evaluation


def evaluate_policy(
    policy: LoadedCausalLM,
    prompts: Sequence[Prompt],
    generation: GenerationConfig,
    *,
    reward_model: LoadedRewardModel | None = None,
    reference: LoadedCausalLM | None = None,
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
