"""Batched answer sampling and sequence scoring, the two inference loops the methods share."""

from __future__ import annotations

import torch

from rlhf.training.models import autocast


def pad_left(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, longest) ids and attention mask, padded on the left as generation needs."""
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, longest - len(seq) :] = torch.tensor(seq)
            mask[row, longest - len(seq) :] = 1
    return ids, mask


def pad_right(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids, mask


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
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    rows_out: list[torch.Tensor | None] = [None] * len(sequences)
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        ids, mask = pad_right([sequences[i] for i in rows], pad_id)
        with autocast(device, precision):
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for i, values in zip(rows, logits.float().cpu(), strict=True):
            rows_out[i] = values
    model.train(was_training)
    return torch.stack(rows_out)
