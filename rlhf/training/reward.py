"""Reward models: TRL's RewardTrainer (Bradley-Terry loss) on Tandem's tokenisation.

Rows are tokenised here with the backbone's layout (``tokens.encode_for_scoring``), truncated
from the left so that none is dropped, and handed to TRL already tokenised. Two backbones:
- decoder: ``AutoModelForSequenceClassification`` over the policy's family (SmolLM2), scoring
  the last real token;
- encoder: a BERT-type model (all-MiniLM-L6-v2 unless ``base_model`` names another) scoring
  ``[CLS] conversation [SEP] answer [SEP]``.
"""

from __future__ import annotations

import random
import time

import torch
from datasets import Dataset
from trl import RewardConfig as TRLRewardConfig
from trl import RewardTrainer
from trl.trainer.reward_trainer import DataCollatorForPreference

from rlhf.training import head_probe, hf
from rlhf.training.evaluation import pairwise_accuracy
from rlhf.training.loading import (
    HEAD_NAMES,
    load_sequence_classifier,
    load_tokenizer,
    lora_config,
    reward_model_source,
)
from rlhf.training.tokens import chat_template_sha256, encode_for_scoring

HEAD_MODULES = (*(f"{name}." for name in HEAD_NAMES), "pooler.")  # new or retrained on top


class TandemRewardTrainer(hf.LengthGroupedMixin, RewardTrainer):
    """TRL's RewardTrainer with the seeded length-grouped sampler and an optional head rate."""

    tandem_head_lr: float = 0.0

    def create_optimizer(self, *args, **kwargs):
        if not self.tandem_head_lr or self.optimizer is not None:
            return super().create_optimizer(*args, **kwargs)
        decay = set(self.get_decay_parameter_names(self.model))
        groups: dict[tuple[bool, bool], list] = {}
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                head = any(module in name for module in HEAD_MODULES)
                groups.setdefault((head, name in decay), []).append(param)
        self.optimizer = torch.optim.AdamW(
            [
                {
                    "params": params,
                    "lr": self.tandem_head_lr if head else self.args.learning_rate,
                    "weight_decay": self.args.weight_decay if decays else 0.0,
                }
                for (head, decays), params in groups.items()
            ],
            betas=(self.args.adam_beta1, self.args.adam_beta2),
            eps=self.args.adam_epsilon,
        )
        return self.optimizer


def effective_max_length(config, tokenizer) -> int:
    if getattr(tokenizer, "chat_template", None):
        return config.max_length
    return min(config.max_length, config.encoder_max_length)


def tokenize_pairs(
    rows: list[dict], tokenizer, max_length: int, *, use_margin: bool
) -> tuple[dict, int]:
    """Columns ``chosen_ids``/``rejected_ids`` (and ``margin``) plus the truncated-row count."""
    columns: dict[str, list] = {"chosen_ids": [], "rejected_ids": []}
    if use_margin:
        columns["margin"] = []
    truncated = 0
    for row in rows:
        (chosen, rejected), cut = encode_for_scoring(
            tokenizer, row["prompt"], [row["chosen"], row["rejected"]], max_length
        )
        columns["chosen_ids"].append(chosen)
        columns["rejected_ids"].append(rejected)
        if use_margin:
            columns["margin"].append(float(row.get("margin") or 0.0))
        truncated += cut
    return columns, truncated


def build_trainer(ctx: hf.RunContext, *, callbacks: list | None = None):
    """The configured RewardTrainer, its counting collator and the tokenizer (for benches too)."""
    config = ctx.config
    source = reward_model_source(config.backbone, config.base_model).resolve()
    tokenizer = load_tokenizer(source)
    ctx.chat_template_sha256 = chat_template_sha256(tokenizer)
    max_length = effective_max_length(config, tokenizer)
    train_columns, truncated = tokenize_pairs(
        ctx.splits.train, tokenizer, max_length, use_margin=config.use_margin
    )
    ctx.truncated_rows = truncated
    eval_dataset = None
    validation = ctx.splits.validation[: config.max_eval_examples]
    if validation and config.eval_every_steps:
        columns, _ = tokenize_pairs(validation, tokenizer, max_length, use_margin=config.use_margin)
        eval_dataset = Dataset.from_dict(columns)

    torch.manual_seed(config.seed)  # the new scalar head is initialised here
    model = load_sequence_classifier(source, pad_token_id=tokenizer.pad_token_id)
    ctx.record_loaded(model, role="reward model", source=source)
    ctx.method_result.head_init = _init_head(ctx, model, train_columns, tokenizer.pad_token_id)
    peft_config = None
    if config.use_lora:
        encoder = not getattr(tokenizer, "chat_template", None)
        if encoder and "q_proj" in config.lora_target_modules:
            config_for_lora = _with_targets(config, ["all-linear"])
        else:
            config_for_lora = config
        head = ["classifier", "pooler"] if encoder else ["score"]
        peft_config = lora_config(config_for_lora, task_type="SEQ_CLS", modules_to_save=head)

    args = TRLRewardConfig(
        **hf.trainer_arguments(ctx, has_eval=eval_dataset is not None),
        max_length=None,  # rows are already fitted to max_length by left truncation
        disable_dropout=not config.keep_dropout,
        center_rewards_coefficient=config.center_rewards_coefficient or None,
        pad_to_multiple_of=None,
        model_init_kwargs=None,
    )
    collator = hf.CountingCollator(DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id))
    trainer = TandemRewardTrainer(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=Dataset.from_dict(train_columns),
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[hf.TandemCallback(ctx, collator), *(callbacks or [])],
    )
    trainer.tandem_head_lr = config.head_learning_rate
    if config.group_by_length:
        trainer.tandem_lengths = [
            max(len(c), len(r))
            for c, r in zip(train_columns["chosen_ids"], train_columns["rejected_ids"], strict=True)
        ]
    ctx.method_result.reward_backbone = config.backbone
    ctx.method_result.base_model = str(source)
    return trainer, collator, tokenizer


def _init_head(ctx: hf.RunContext, model, columns: dict, pad_id: int) -> dict:
    """Probe a new head on the training pairs (see head_probe); say what was done."""
    config = ctx.config
    if not model.tandem_new_head:
        return {"mode": "trained", "why": "the backbone already has a trained head"}
    if config.head_init != "probe":
        return {"mode": "random"}
    if hf.resume_point(ctx):
        return {"mode": "checkpoint", "why": "resumed: the checkpoint holds the head"}
    if head_probe.linear_head(model) is None:
        return {"mode": "random", "why": "the head is not a single linear layer"}
    pairs = len(columns["chosen_ids"])
    sample = min(pairs, config.probe_max_pairs)
    picked = sorted(random.Random(config.seed).sample(range(pairs), sample))
    started = time.perf_counter()
    ctx.reporter.emit("log", message=f"fitting the new head on {len(picked)} pairs (linear probe)")
    result = head_probe.probe_head(
        model.to(ctx.device),
        [columns["chosen_ids"][i] for i in picked],
        [columns["rejected_ids"][i] for i in picked],
        [columns["margin"][i] for i in picked] if "margin" in columns else None,
        pad_id=pad_id,
        device=ctx.device,
        precision=ctx.precision,
        batch_size=max(8, config.per_device_batch_size * 2),
        seed=config.seed,
    )
    info = {"mode": "probe", **result.as_dict(), "seconds": round(time.perf_counter() - started, 1)}
    ctx.reporter.emit(
        "log",
        message=(
            f"head probed: cross-validated accuracy {result.cv_accuracy:.3f}, "
            f"L2 {result.l2:g}, {info['seconds']} s"
            + ("" if result.fitted else "; no signal held out, so the head starts at zero")
        ),
    )
    return info


def _with_targets(config, targets):
    from dataclasses import replace

    return replace(config, lora_target_modules=targets)


def train(ctx: hf.RunContext) -> dict:
    trainer, _, tokenizer = build_trainer(ctx)
    hf.train(trainer, ctx)
    metrics = {"train_loss": hf.final_loss(trainer)}
    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
        trainer.model = model
    max_length = effective_max_length(ctx.config, tokenizer)
    # Accuracy on every split: train (capped like the others) shows how far eval lags it.
    for split in ("train", "validation", "test"):
        rows = ctx.splits.split(split)[: ctx.config.max_eval_examples]
        if rows:
            result = pairwise_accuracy(
                model,
                tokenizer,
                rows,
                max_length=max_length,
                device=ctx.device,
                precision=ctx.precision,
                batch_size=max(8, ctx.config.per_device_batch_size * 2),
            )
            metrics[split] = result
            ctx.reporter.emit("eval", step=trainer.state.global_step, metrics={split: result})
    model_dir = hf.save_final(trainer, ctx, meta={"kind": "reward_model"})
    ctx.method_result.model_dir = str(model_dir)
    return metrics
