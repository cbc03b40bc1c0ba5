"""Supervised fine-tuning of an encoder-decoder (T5-family, ``AutoModelForSeq2SeqLM``) base.

The conversation (role lines ending with the assistant's cue, ``tokens.encode_seq2seq``) is the
encoder's input and the final answer the decoder's target; the loss is the target's token
cross-entropy (the encoder side has no loss, so ``assistant_only_loss`` holds by construction).
Training runs through transformers' ``Trainer`` (TRL's SFTTrainer assumes a decoder) with the
same arguments, seeded length-grouped batches, progress, checkpoints, resume and saving as every
other method (``hf``); LoRA uses peft's ``SEQ_2_SEQ_LM`` task type.

Evaluation mirrors decoder SFT: perplexity of the validation answers, then BLEU and ROUGE of
greedy answers to held-out conversations, preferring annotators' corrections.
"""

from __future__ import annotations

import math

import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from rlhf.training import hf
from rlhf.training.loading import autocast, load_causal_lm, load_tokenizer, lora_config
from rlhf.training.tokens import encode_seq2seq, seq2seq_source_ids, seq2seq_template_sha256

IGNORE = -100  # label positions the loss skips (padding)


class TandemSeq2SeqTrainer(hf.LengthGroupedMixin, Trainer):
    """transformers' Trainer with the seeded length-grouped sampler."""


class Seq2SeqCollator:
    """Right-pads sources (with an attention mask) and targets (with -100); the model shifts
    the targets right into its decoder inputs."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, examples: list[dict]) -> dict:
        width = max(len(e["input_ids"]) for e in examples)
        target_width = max(len(e["labels"]) for e in examples)
        input_ids = [
            e["input_ids"] + [self.pad_id] * (width - len(e["input_ids"])) for e in examples
        ]
        mask = [[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in examples]
        labels = [e["labels"] + [IGNORE] * (target_width - len(e["labels"])) for e in examples]
        return {
            "input_ids": torch.tensor(input_ids),  # (batch, source_len)
            "attention_mask": torch.tensor(mask),  # (batch, source_len)
            "labels": torch.tensor(labels),  # (batch, target_len)
        }


def tokenize(rows: list[dict], tokenizer, max_length: int) -> tuple[dict, int]:
    columns: dict[str, list] = {"input_ids": [], "labels": []}
    truncated = 0
    for row in rows:
        messages = row["messages"]
        source, target, cut = encode_seq2seq(
            tokenizer, messages[:-1], messages[-1]["content"], max_length
        )
        columns["input_ids"].append(source)
        columns["labels"].append(target)
        truncated += cut
    return columns, truncated


def build_trainer(ctx: hf.RunContext, parent, *, callbacks: list | None = None):
    config = ctx.config
    tokenizer = load_tokenizer(parent)
    ctx.chat_template_sha256 = seq2seq_template_sha256()
    columns, truncated = tokenize(ctx.splits.train, tokenizer, config.max_length)
    ctx.truncated_rows = truncated
    model = load_causal_lm(parent)  # an AutoModelForSeq2SeqLM for this folder
    if config.use_lora:
        from peft import get_peft_model

        torch.manual_seed(config.seed)  # the adapter's initial weights
        model = get_peft_model(model, lora_config(config, task_type="SEQ_2_SEQ_LM"))
    collator = hf.CountingCollator(Seq2SeqCollator(tokenizer.pad_token_id))
    trainer = TandemSeq2SeqTrainer(
        model=model,
        args=TrainingArguments(**hf.trainer_arguments(ctx, has_eval=False)),
        data_collator=collator,
        train_dataset=Dataset.from_dict(columns),
        processing_class=tokenizer,
        callbacks=[hf.TandemCallback(ctx, collator), *(callbacks or [])],
    )
    if config.group_by_length:
        trainer.tandem_lengths = [
            len(s) + len(t) for s, t in zip(columns["input_ids"], columns["labels"], strict=True)
        ]
    ctx.method_result.base_model = str(parent)
    return trainer, tokenizer


@torch.no_grad()
def perplexity(
    model, tokenizer, rows: list[dict], *, max_length: int, device: str, precision: str,
    batch_size: int = 8,
) -> float | None:  # fmt: skip
    """exp(mean NLL per answer token) of the final answers given their conversations."""
    columns, _ = tokenize(rows, tokenizer, max_length)
    collate = Seq2SeqCollator(tokenizer.pad_token_id)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    examples = [{"input_ids": s, "labels": t} for s, t in zip(*columns.values(), strict=True)]
    for start in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[start : start + batch_size]).items()}
        with autocast(device, precision):
            logits = model(**batch).logits  # (batch, target_len, vocab)
        nll = torch.nn.functional.cross_entropy(
            logits.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE,
            reduction="sum",
        )  # fmt: skip
        total += float(nll)
        count += int((batch["labels"] != IGNORE).sum())
    model.train(was_training)
    return math.exp(total / count) if count else None


@torch.no_grad()
def greedy_answers(
    model, tokenizer, prompts: list[list[dict]], *, max_length: int, max_new_tokens: int,
    device: str, precision: str, batch_size: int = 8,
) -> list[str]:  # fmt: skip
    """The model's greedy answer to each conversation, decoded without special tokens."""
    collate = Seq2SeqCollator(tokenizer.pad_token_id)
    was_training = model.training
    model.eval()
    answers = []
    for start in range(0, len(prompts), batch_size):
        sources = [
            {"input_ids": seq2seq_source_ids(tokenizer, p, max_length)[0], "labels": [IGNORE]}
            for p in prompts[start : start + batch_size]
        ]
        batch = collate(sources)
        with autocast(device, precision):
            output = model.generate(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )  # (batch, 1 + new_tokens): the decoder's start token first
        answers += tokenizer.batch_decode(output[:, 1:], skip_special_tokens=True)
    model.train(was_training)
    return answers
