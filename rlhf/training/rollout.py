"""The engine's inference loops, shared by training, generation and every evaluation.

- padding (``pad_left`` for generation, ``pad_right`` for scoring);
- sampling answers (``generate``, the online methods' and SFT evaluation's loop);
- scoring sequences with a classifier (``classifier_outputs``), and (prompt, answers) groups
  with a reward model in the layout it was trained on (``score_answers``);
- log-probabilities of continuations (``continuation_log_probs``) and ``perplexity``.

Scoring pads on the RIGHT: positions then run 0..n-1 for every real token exactly as in an
unpadded forward pass, and the padding sits after the tokens that matter (causal attention never
looks at it). Rows are batched by length, so little of a batch is padding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from rlhf.training.loading import autocast
from rlhf.training.tokens import encode_for_scoring


def pad_left(
    sequences: Sequence[Sequence[int]], pad_id: int, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, longest) ids and attention mask, padded on the left as generation needs."""
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, longest - len(seq) :] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, longest - len(seq) :] = 1
    return (ids, mask) if device is None else (ids.to(device), mask.to(device))


def pad_right(
    sequences: Sequence[Sequence[int]], pad_id: int, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, longest) ids and attention mask, padded on the right as scoring needs."""
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return (ids, mask) if device is None else (ids.to(device), mask.to(device))


def batches_by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches, longest first (stable for equal lengths).

    Longest first: each batch holds similar lengths, and an out-of-memory error shows in the
    first batch rather than the last.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@torch.no_grad()
def generate(
    model,
    prompts: list[list[int]],
    *,
    pad_id: int,
    eos_id: int,
    max_new_tokens: int,
    device: str,
    precision: str,
    temperature: float = 1.0,
    do_sample: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample answers; returns (query_ids, query_mask, response_ids), responses padded with pad_id.

    query: (batch, prompt_len) left-padded; response: (batch, <= max_new_tokens).
    """
    query, query_mask = pad_left(prompts, pad_id)
    query, query_mask = query.to(device), query_mask.to(device)
    was_training = model.training
    model.eval()
    options = {"do_sample": do_sample, "top_k": 0, "top_p": 1.0}
    if do_sample:
        options["temperature"] = temperature
    with autocast(device, precision):
        output = model.generate(
            input_ids=query,
            attention_mask=query_mask,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad_id,
            eos_token_id=eos_id,
            **options,
        )
    model.train(was_training)
    response = output[:, query.shape[1] :]
    return query, query_mask, response


def score(model, sequences: list[list[int]], **options) -> list[float]:
    """A sequence classifier's scalar for each sequence, in input order (fp32 outputs).

    ``options``: those of ``classifier_outputs`` (pad_id, device, precision, batch_size).
    """
    if not sequences:
        return []
    return classifier_outputs(model, sequences, **options)[:, 0].tolist()


@torch.no_grad()
def classifier_outputs(
    model,
    sequences: list[list[int]],
    *,
    pad_id: int,
    device: str,
    precision: str,
    batch_size: int = 16,
) -> torch.Tensor:
    """A sequence classifier's output rows (``[len(sequences), outputs]``, fp32, input order).

    Sequences are batched by length so that little of each batch is padding.
    """
    if not sequences:
        raise ValueError("no sequences to score")
    rows_out: list[torch.Tensor | None] = [None] * len(sequences)
    was_training = model.training
    model.eval()
    for rows in batches_by_length([len(s) for s in sequences], batch_size):
        ids, mask = pad_right([sequences[i] for i in rows], pad_id, device)
        with autocast(device, precision):
            logits = model(input_ids=ids, attention_mask=mask).logits  # (batch, outputs)
        for i, values in zip(rows, logits.float().cpu(), strict=True):
            rows_out[i] = values
    model.train(was_training)
    return torch.stack(rows_out)


def scoring_max_length(tokenizer, model, requested: int | None = None) -> int:
    """The longest sequence a reward model reads: ``requested`` (else its position limit), and
    at most 512 tokens for an encoder (BERT-type models are trained at 512 or less)."""
    limit = getattr(model.config, "max_position_embeddings", None) or requested or 512
    length = min(requested or limit, limit)
    return length if getattr(tokenizer, "chat_template", None) else min(length, 512)


def score_answers(
    model,
    tokenizer,
    prompts: Sequence[list[dict]],
    answers: Sequence[Sequence[str]],
    *,
    max_length: int,
    device: str,
    precision: str,
    batch_size: int = 16,
) -> tuple[list[list[float]], int]:
    """A reward model's score of each answer to each prompt, and how many groups were cut.

    ``answers[i]`` are the answers to ``prompts[i]``, encoded together with the backbone's
    layout (``tokens.encode_for_scoring``), so that a preference pair shares one truncation of
    its prompt. The one scoring path of training, evaluate-reward and review rounds.
    """
    sequences, sizes, truncated = [], [], 0
    for prompt, group in zip(prompts, answers, strict=True):
        encoded, cut = encode_for_scoring(tokenizer, prompt, list(group), max_length)
        sequences += encoded
        sizes.append(len(encoded))
        truncated += cut
    flat = score(
        model,
        sequences,
        pad_id=tokenizer.pad_token_id,
        device=device,
        precision=precision,
        batch_size=batch_size,
    )
    scores, start = [], 0
    for size in sizes:
        scores.append(flat[start : start + size])
        start += size
    return scores, truncated


@torch.no_grad()
def continuation_log_probs(
    model,
    contexts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    *,
    pad_id: int,
    device: str,
    precision: str,
    batch_size: int = 8,
) -> list[list[float]]:
    """log p(continuation_t | context, continuation_<t) for every continuation token.

    One list per pair, as long as its continuation. A context must hold at least one token (the
    first continuation token needs something to be predicted from).
    """
    if len(contexts) != len(continuations):
        raise ValueError("contexts and continuations must pair up")
    if any(len(c) == 0 for c in contexts):
        raise ValueError("every context needs at least one token")
    out: list[list[float] | None] = [None] * len(contexts)
    was_training = model.training
    model.eval()
    lengths = [len(c) + len(t) for c, t in zip(contexts, continuations, strict=True)]
    for rows in batches_by_length(lengths, batch_size):
        sequences = [[*contexts[i], *continuations[i]] for i in rows]
        ids, mask = pad_right(sequences, pad_id, device)
        with autocast(device, precision):
            logits = model(input_ids=ids, attention_mask=mask).logits  # (batch, seq, vocab)
        # logits[:, t] predicts token t + 1.
        log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (batch, seq-1, vocab)
        picked = log_probs.gather(-1, ids[:, 1:, None]).squeeze(-1).cpu()  # (batch, seq-1)
        for row, i in enumerate(rows):
            first = len(contexts[i]) - 1  # the prediction of the first continuation token
            out[i] = picked[row, first : first + len(continuations[i])].tolist()
    model.train(was_training)
    return out


def perplexity(log_probs: Sequence[Sequence[float]]) -> float | None:
    """exp(total negative log-likelihood / total predicted tokens): token-weighted, not a mean
    of per-text perplexities. None when there is no token to predict."""
    count = sum(len(row) for row in log_probs)
    if not count:
        return None
    return math.exp(-sum(sum(row) for row in log_probs) / count)
