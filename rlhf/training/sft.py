"""Supervised fine-tuning through TRL's SFTTrainer on demonstrations and corrections.

Each conversation is tokenised with the base model's chat template and fitted to
``max_length`` by dropping its oldest turns; the loss covers the final assistant answer (or the
whole conversation when ``assistant_only_loss`` is off). Evaluation: perplexity of the answers
on the validation split, then BLEU and ROUGE of greedy answers against held-out references,
preferring rows that came from annotators' corrections.

An encoder-decoder base (T5-family) trains through ``seq2seq.py`` instead, with the same
contract and the same evaluation.
"""

from __future__ import annotations

from datasets import Dataset
from trl import SFTConfig as TRLSFTConfig
from trl import SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from rlhf.training import hf, seq2seq
from rlhf.training.config import is_seq2seq
from rlhf.training.evaluation import generation_scores, overlap_scores, perplexity
from rlhf.training.loading import check_model_folder, load_causal_lm, load_tokenizer, lora_config
from rlhf.training.tokens import chat_template_sha256, encode_decoder


class TandemSFTTrainer(hf.LengthGroupedMixin, SFTTrainer):
    """TRL's SFTTrainer with the seeded length-grouped sampler."""


def tokenize_conversations(
    rows: list[dict], tokenizer, max_length: int, *, answer_only: bool
) -> tuple[dict, int]:
    columns: dict[str, list] = {"input_ids": [], "labels": []}
    truncated = 0
    for row in rows:
        messages = row["messages"]
        encoded = encode_decoder(tokenizer, messages[:-1], [messages[-1]["content"]], max_length)
        prompt, answer = encoded.prompt_ids, encoded.completion_ids[0]
        columns["input_ids"].append(prompt + answer)
        columns["labels"].append(([-100] * len(prompt) if answer_only else prompt) + answer)
        truncated += encoded.truncated
    return columns, truncated


def build_trainer(ctx: hf.RunContext, *, callbacks: list | None = None):
    config = ctx.config
    parent = check_model_folder(config.base_model).resolve()
    tokenizer = load_tokenizer(parent)
    ctx.chat_template_sha256 = chat_template_sha256(tokenizer)
    columns, truncated = tokenize_conversations(
        ctx.splits.train, tokenizer, config.max_length, answer_only=config.assistant_only_loss
    )
    ctx.truncated_rows = truncated
    model = load_causal_lm(parent)
    ctx.record_loaded(model, role="policy", source=parent)
    args = TRLSFTConfig(
        **hf.trainer_arguments(ctx, has_eval=False),
        max_length=config.max_length,  # rows already fit: no cut applies
        packing=False,
        padding_free=False,
        pad_to_multiple_of=None,
        shuffle_dataset=False,  # the sampler shuffles, seeded, per epoch
        dataset_kwargs={},
    )
    collator = hf.CountingCollator(
        DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)
    )
    trainer = TandemSFTTrainer(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=Dataset.from_dict(columns),
        processing_class=tokenizer,
        peft_config=lora_config(config, task_type="CAUSAL_LM") if config.use_lora else None,
        callbacks=[hf.TandemCallback(ctx, collator), *(callbacks or [])],
    )
    if config.group_by_length:
        trainer.tandem_lengths = [len(ids) for ids in columns["input_ids"]]
    ctx.method_result.base_model = str(parent)
    return trainer, tokenizer


def train(ctx: hf.RunContext) -> dict:
    config = ctx.config
    parent = check_model_folder(config.base_model).resolve()
    encoder_decoder = is_seq2seq(str(parent))
    if encoder_decoder:
        trainer, tokenizer = seq2seq.build_trainer(ctx, parent)
    else:
        trainer, tokenizer = build_trainer(ctx)
    hf.train(trainer, ctx)
    metrics: dict = {"train_loss": hf.final_loss(trainer)}
    if encoder_decoder:
        metrics["architecture"] = "seq2seq"
    model = trainer.model
    measure = seq2seq.perplexity if encoder_decoder else perplexity
    validation = ctx.splits.validation[: config.max_eval_examples]
    if validation:
        metrics["validation_perplexity"] = measure(
            model,
            tokenizer,
            validation,
            max_length=config.max_length,
            device=ctx.device,
            precision=ctx.precision,
        )
    held_out = ctx.splits.test or ctx.splits.validation
    corrections = [r for r in held_out if r.get("source") == "correction"]
    chosen = (corrections or held_out)[: config.eval_generations]
    if chosen and config.eval_generations:
        if encoder_decoder:
            answers = seq2seq.greedy_answers(
                model,
                tokenizer,
                [r["messages"][:-1] for r in chosen],
                max_length=config.max_length,
                max_new_tokens=config.eval_max_new_tokens,
                device=ctx.device,
                precision=ctx.precision,
            )
            metrics["generation"] = overlap_scores(
                answers, [r["messages"][-1]["content"] for r in chosen]
            )
        else:
            metrics["generation"] = generation_scores(
                model,
                tokenizer,
                chosen,
                max_length=config.max_length,
                max_new_tokens=config.eval_max_new_tokens,
                device=ctx.device,
                precision=ctx.precision,
            )
        metrics["generation"]["references"] = "corrections" if corrections else "held-out answers"
    ctx.reporter.emit("eval", step=trainer.state.global_step, metrics=metrics)
    model_dir = hf.save_policy(trainer, ctx)
    ctx.method_result.model_dir = str(model_dir)
    return metrics
