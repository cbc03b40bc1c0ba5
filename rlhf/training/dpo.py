"""DPO through TRL's DPOTrainer, against an explicitly chosen reference model.

The reference is the parent version (``base_model``) unless ``reference_model`` names another
folder. With LoRA and the parent as reference, TRL computes reference log-probabilities by
disabling the adapter; since an adapter parent is merged into its base on load, "adapter
disabled" is exactly the parent. Full fine-tuning loads the reference folder as a second,
frozen model. Which one was used is recorded in the result (``reference_model``).
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from trl import DPOConfig as TRLDPOConfig
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from rlhf.training import hf
from rlhf.training.loading import check_model_folder, load_causal_lm, load_tokenizer, lora_config
from rlhf.training.tokens import chat_template_sha256, encode_decoder


class TandemDPOTrainer(hf.LengthGroupedMixin, DPOTrainer):
    """TRL's DPOTrainer fed rows Tandem already tokenised (and fitted by left truncation)."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(dataset.column_names):
            return dataset
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)


def tokenize_pairs(rows: list[dict], tokenizer, max_length: int) -> tuple[dict, int]:
    columns: dict[str, list] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    truncated = 0
    for row in rows:
        encoded = encode_decoder(
            tokenizer, row["prompt"], [row["chosen"], row["rejected"]], max_length
        )
        columns["prompt_ids"].append(encoded.prompt_ids)
        columns["chosen_ids"].append(encoded.completion_ids[0])
        columns["rejected_ids"].append(encoded.completion_ids[1])
        truncated += encoded.truncated
    return columns, truncated


def build_trainer(ctx: hf.RunContext, *, callbacks: list | None = None):
    config = ctx.config
    parent = check_model_folder(config.base_model).resolve()
    tokenizer = load_tokenizer(parent)
    ctx.chat_template_sha256 = chat_template_sha256(tokenizer)
    train_columns, truncated = tokenize_pairs(ctx.splits.train, tokenizer, config.max_length)
    ctx.truncated_rows = truncated
    eval_dataset = None
    validation = ctx.splits.validation[: config.max_eval_examples]
    if validation:
        eval_dataset = Dataset.from_dict(
            tokenize_pairs(validation, tokenizer, config.max_length)[0]
        )

    model = load_causal_lm(parent)
    ctx.record_loaded(model, role="policy", source=parent)
    reference_path = Path(config.reference_model).resolve() if config.reference_model else parent
    ref_model = None
    if config.use_lora and reference_path == parent:
        ctx.method_result.reference_model = f"{parent} (the parent: LoRA adapter disabled)"
    else:
        ref_model = load_causal_lm(reference_path)
        ref_model.requires_grad_(False)
        ctx.record_loaded(ref_model, role="reference", source=reference_path)
        ctx.method_result.reference_model = str(reference_path)
    peft_config = lora_config(config, task_type="CAUSAL_LM") if config.use_lora else None

    args = TRLDPOConfig(
        **hf.trainer_arguments(ctx, has_eval=eval_dataset is not None),
        beta=config.beta,
        loss_type=[config.loss_type],
        label_smoothing=config.label_smoothing,
        max_length=config.max_length,  # rows already fit: TRL's keep_start cut never applies
        truncation_mode="keep_start",
        disable_dropout=True,
        precompute_ref_log_probs=False,
        pad_to_multiple_of=None,
    )
    collator = hf.CountingCollator(
        DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id, max_length=config.max_length)
    )
    trainer = TandemDPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        data_collator=collator,
        train_dataset=Dataset.from_dict(train_columns),
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[hf.TandemCallback(ctx, collator), *(callbacks or [])],
    )
    if config.group_by_length:
        trainer.tandem_lengths = [
            len(p) + max(len(c), len(r))
            for p, c, r in zip(
                train_columns["prompt_ids"],
                train_columns["chosen_ids"],
                train_columns["rejected_ids"],
                strict=True,
            )
        ]
    ctx.method_result.base_model = str(parent)
    return trainer, collator, tokenizer


def train(ctx: hf.RunContext) -> dict:
    trainer, _, _ = build_trainer(ctx)
    return hf.train_policy(trainer, ctx)
