"""Reward models: TRL's RewardTrainer (Bradley-Terry loss) on Tandem's tokenisation.

Rows are tokenised here with the backbone's layout (``tokens.encode_for_scoring``), truncated
from the left so that none is dropped, and handed to TRL already tokenised. Two backbones:
- decoder: ``AutoModelForSequenceClassification`` over the policy's family (SmolLM2), scoring
  the last real token;
- encoder: a BERT-type model (all-MiniLM-L6-v2 unless ``base_model`` names another) scoring
  ``[CLS] conversation [SEP] answer [SEP]``.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch
from datasets import Dataset
from trl import RewardConfig as TRLRewardConfig
from trl import RewardTrainer
from trl.trainer.reward_trainer import DataCollatorForPreference

from rlhf.data.audit import SHOWN_SIDES_FILE
from rlhf.training import head_probe, hf, rollout
from rlhf.training.data import DataError
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
    """TRL's RewardTrainer with the seeded length-grouped sampler, an optional head rate and
    per-pair loss weights (a ``weight`` column, see ``weighted_pair_loss``)."""

    tandem_head_lr: float = 0.0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "score" in inputs:
            return self._score_loss(model, inputs, return_outputs)
        weight = inputs.pop("weight", None)
        if weight is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # TRL's pass gives the outputs (and logs its metrics); the loss is taken again, weighted.
        _, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        rewards_chosen, rewards_rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
        loss = weighted_pair_loss(rewards_chosen, rewards_rejected, weight, inputs.get("margin"))
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean(
                (rewards_chosen + rewards_rejected) ** 2
            )
        return (loss, outputs) if return_outputs else loss

    def _score_loss(self, model, inputs, return_outputs):
        """Regression on rubric scores: mean squared error between reward and target."""
        target = inputs.pop("score")  # (2 * batch,): the chosen-side rows, then the rejected
        outputs = model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False
        )
        rewards = outputs.logits.squeeze(-1)  # (2 * batch,)
        loss = torch.nn.functional.mse_loss(rewards, target.to(rewards.dtype))
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["score_mse"].append(float(loss.detach()))
        return (loss, outputs) if return_outputs else loss

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


def weighted_pair_loss(rewards_chosen, rewards_rejected, weight, margin=None):
    """Bradley-Terry loss with a weight per pair: sum(w * -log sigmoid(r_c - r_r - m)) / sum(w).

    rewards_chosen, rewards_rejected, weight, margin: (batch,). A batch whose weights are all 0
    gives loss 0 (and no gradient) rather than 0/0.
    """
    difference = rewards_chosen - rewards_rejected
    if margin is not None:
        difference = difference - margin
    per_pair = -torch.nn.functional.logsigmoid(difference)  # (batch,)
    weight = weight.to(per_pair.dtype)
    return (weight * per_pair).sum() / weight.sum().clamp_min(1e-12)


class WeightCollator:
    """TRL's preference collator, plus each row's ``weight`` as a (batch,) tensor."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, examples: list[dict]) -> dict:
        weights = [example.pop("weight") for example in examples]
        batch = self.inner(examples)
        batch["weight"] = torch.tensor(weights, dtype=torch.float32)
        return batch


def score_rows(rows: list[dict], dimension: str) -> list[dict]:
    """The rubric score rows of ``dimension`` (empty: the data's only dimension)."""
    dimensions = sorted({row["dimension"] for row in rows})
    if not dimension:
        if len(dimensions) > 1:
            raise DataError(
                f"the score rows hold several rubric dimensions {dimensions}: "
                "name one in score_dimension"
            )
        return rows
    picked = [row for row in rows if row["dimension"] == dimension]
    if rows and not picked:
        raise DataError(f"no score rows of dimension {dimension!r} (the data has {dimensions})")
    return picked


def tokenize_scores(
    rows: list[dict], tokenizer, max_length: int, *, mean: float, std: float
) -> tuple[dict, int]:
    """Scored answers packed two per example, as ``chosen_ids``/``rejected_ids`` with
    ``score_chosen``/``score_rejected`` (standardised), so TRL's preference collator and its
    dataset checks carry them unchanged; nothing is compared. An odd last row is paired with
    itself."""
    ids, targets, truncated = [], [], 0
    for row in rows:
        (answer,), cut = encode_for_scoring(
            tokenizer, row["prompt"], [row["completion"]], max_length
        )
        ids.append(answer)
        targets.append((row["score"] - mean) / std)
        truncated += cut
    if len(ids) % 2:
        ids.append(ids[-1])
        targets.append(targets[-1])
    return {
        "chosen_ids": ids[0::2],
        "rejected_ids": ids[1::2],
        "score_chosen": targets[0::2],
        "score_rejected": targets[1::2],
    }, truncated


class ScoreCollator:
    """TRL's preference collator, plus the targets as one (2 * batch,) tensor in its order:
    every example's first answer, then every example's second."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, examples: list[dict]) -> dict:
        first = [example.pop("score_chosen") for example in examples]
        second = [example.pop("score_rejected") for example in examples]
        batch = self.inner(examples)
        batch["score"] = torch.tensor(first + second, dtype=torch.float32)
        return batch


def score_fit(model, tokenizer, rows: list[dict], *, max_length, ctx, mean, std) -> dict:
    """Mean squared error and Pearson correlation of the rewards against the standardised
    scores of ``rows``."""
    if not rows:
        return {"rows": 0, "mse": None, "pearson": None}
    scores, truncated = rollout.score_answers(
        model,
        tokenizer,
        [row["prompt"] for row in rows],
        [[row["completion"]] for row in rows],
        max_length=max_length,
        device=ctx.device,
        precision=ctx.precision,
        batch_size=max(8, ctx.config.per_device_batch_size * 2),
    )
    predicted = torch.tensor([s[0] for s in scores], dtype=torch.float64)
    target = torch.tensor([(row["score"] - mean) / std for row in rows], dtype=torch.float64)
    pearson = None
    if len(rows) > 1 and predicted.std() > 0 and target.std() > 0:
        pearson = float(torch.corrcoef(torch.stack([predicted, target]))[0, 1])
    return {
        "rows": len(rows),
        "mse": float(((predicted - target) ** 2).mean()),
        "pearson": pearson,
        "truncated_rows": truncated,
    }


def effective_max_length(config, tokenizer) -> int:
    if getattr(tokenizer, "chat_template", None):
        return config.max_length
    return min(config.max_length, config.encoder_max_length)


def tokenize_pairs(
    rows: list[dict], tokenizer, max_length: int, *, use_margin: bool, use_weights: bool = False
) -> tuple[dict, int]:
    """Columns ``chosen_ids``/``rejected_ids`` (and ``margin``, and ``weight`` when
    ``use_weights`` and some row has one: a row without counts 1.0) plus the truncated-row
    count."""
    columns: dict[str, list] = {"chosen_ids": [], "rejected_ids": []}
    if use_margin:
        columns["margin"] = []
    if use_weights and any(row.get("weight") is not None for row in rows):
        columns["weight"] = [
            1.0 if row.get("weight") is None else float(row["weight"]) for row in rows
        ]
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
    ctx.method_result.reward_target = config.reward_target
    if config.reward_target == "scores":
        return _build_score_trainer(ctx, source, tokenizer, max_length, callbacks)
    train_columns, truncated = tokenize_pairs(
        ctx.splits.train,
        tokenizer,
        max_length,
        use_margin=config.use_margin,
        use_weights=config.use_weights,
    )
    ctx.truncated_rows = truncated
    weighted = "weight" in train_columns
    ctx.method_result.pair_weights = (
        "weighted"
        if weighted
        else "unweighted: use_weights is off"
        if not config.use_weights
        else "unweighted: the data has no weight column"
    )
    eval_dataset = None
    validation = ctx.splits.validation[: config.max_eval_examples]
    if validation and config.eval_every_steps:
        columns, _ = tokenize_pairs(validation, tokenizer, max_length, use_margin=config.use_margin)
        eval_dataset = Dataset.from_dict(columns)

    torch.manual_seed(config.seed)  # the new scalar head is initialised here
    model = load_sequence_classifier(source, pad_token_id=tokenizer.pad_token_id)
    ctx.record_loaded(model, role="reward model", source=source)
    ctx.method_result.head_init = _init_head(ctx, model, train_columns, tokenizer.pad_token_id)
    inner = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)
    return _assemble_trainer(
        ctx,
        model=model,
        tokenizer=tokenizer,
        source=source,
        train_columns=train_columns,
        eval_dataset=eval_dataset,
        collator=WeightCollator(inner) if weighted else inner,
        center_rewards_coefficient=config.center_rewards_coefficient or None,
        callbacks=callbacks,
    )


def _build_score_trainer(ctx, source, tokenizer, max_length, callbacks):
    """The trainer for reward_target "scores": regression on one rubric dimension."""
    config = ctx.config
    train_rows = score_rows(ctx.splits.train, config.score_dimension)
    dimension = config.score_dimension or train_rows[0]["dimension"]
    values = torch.tensor([row["score"] for row in train_rows], dtype=torch.float64)
    mean = float(values.mean())
    std = float(values.std()) if len(values) > 1 and float(values.std()) > 0 else 1.0
    ctx.method_result.score_target = {"dimension": dimension, "mean": mean, "std": std}
    train_columns, truncated = tokenize_scores(
        train_rows, tokenizer, max_length, mean=mean, std=std
    )
    ctx.truncated_rows = truncated
    ctx.method_result.pair_weights = "unweighted: scores are regressed, not weighed"
    eval_dataset = None
    validation = score_rows(ctx.splits.validation, dimension)[: config.max_eval_examples]
    if validation and config.eval_every_steps:
        columns, _ = tokenize_scores(validation, tokenizer, max_length, mean=mean, std=std)
        eval_dataset = Dataset.from_dict(columns)
    torch.manual_seed(config.seed)
    model = load_sequence_classifier(source, pad_token_id=tokenizer.pad_token_id)
    ctx.record_loaded(model, role="reward model", source=source)
    ctx.method_result.head_init = (
        {"mode": "trained", "why": "the backbone already has a trained head"}
        if not model.tandem_new_head
        else {"mode": "random", "why": "the linear probe fits pairs, not scores"}
    )
    inner = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)
    return _assemble_trainer(
        ctx,
        model=model,
        tokenizer=tokenizer,
        source=source,
        train_columns=train_columns,
        eval_dataset=eval_dataset,
        collator=ScoreCollator(inner),
        center_rewards_coefficient=None,  # centring is a pairwise-loss term
        callbacks=callbacks,
    )


def _assemble_trainer(
    ctx: hf.RunContext,
    *,
    model,
    tokenizer,
    source,
    train_columns: dict,
    eval_dataset,
    collator,
    center_rewards_coefficient: float | None,
    callbacks: list | None,
):
    """The trainer both reward targets share: LoRA on the backbone with the head trained in
    full, TRL's RewardConfig from the run's config, the counting collator, the head's own
    learning rate and length grouping. Returns (trainer, counting collator, tokenizer)."""
    config = ctx.config
    peft_config = None
    if config.use_lora:
        encoder = not getattr(tokenizer, "chat_template", None)
        # Encoders have no q_proj: their attention is query/key/value, so all-linear stands in.
        config_for_lora = (
            _with_targets(config, ["all-linear"])
            if encoder and "q_proj" in config.lora_target_modules
            else config
        )
        head = ["classifier", "pooler"] if encoder else ["score"]
        peft_config = lora_config(config_for_lora, task_type="SEQ_CLS", modules_to_save=head)
    args = TRLRewardConfig(
        **hf.trainer_arguments(ctx, has_eval=eval_dataset is not None),
        max_length=None,  # rows are already fitted to max_length by left truncation
        disable_dropout=not config.keep_dropout,
        center_rewards_coefficient=center_rewards_coefficient,
        pad_to_multiple_of=None,
        model_init_kwargs=None,
    )
    counting = hf.CountingCollator(collator)
    trainer = TandemRewardTrainer(
        model=model,
        args=args,
        data_collator=counting,
        train_dataset=Dataset.from_dict(train_columns),
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[hf.TandemCallback(ctx, counting), *(callbacks or [])],
    )
    trainer.tandem_head_lr = config.head_learning_rate
    if config.group_by_length:
        trainer.tandem_lengths = [
            max(len(c), len(r))
            for c, r in zip(train_columns["chosen_ids"], train_columns["rejected_ids"], strict=True)
        ]
    ctx.method_result.reward_backbone = config.backbone
    ctx.method_result.base_model = str(source)
    return trainer, counting, tokenizer


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


def shown_sides(source: str) -> dict[str, str]:
    """Preference row id -> the side its chosen answer was shown on, from the export's audit
    file (``rlhf.data.audit.SHOWN_SIDES_FILE``); empty for data without one."""
    path = Path(source) / SHOWN_SIDES_FILE
    if source == "memory" or not path.is_file():
        return {}
    return json.loads(path.read_text())


def train(ctx: hf.RunContext) -> dict:
    trainer, _, tokenizer = build_trainer(ctx)
    hf.train(trainer, ctx)
    metrics = {"train_loss": hf.final_loss(trainer)}
    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
        trainer.model = model
    max_length = effective_max_length(ctx.config, tokenizer)
    sides = shown_sides(ctx.splits.source)
    # Accuracy on every split: train (capped like the others) shows how far eval lags it.
    for split in ("train", "validation", "test"):
        rows = ctx.splits.split(split)[: ctx.config.max_eval_examples]
        if rows and ctx.config.reward_target == "scores":
            target = ctx.method_result.score_target
            rows = score_rows(ctx.splits.split(split), target["dimension"])
            result = score_fit(
                model,
                tokenizer,
                rows[: ctx.config.max_eval_examples],
                max_length=max_length,
                ctx=ctx,
                mean=target["mean"],
                std=target["std"],
            )
            metrics[split] = result
            ctx.reporter.emit("eval", step=trainer.state.global_step, metrics={split: result})
        elif rows:
            result = pairwise_accuracy(
                model,
                tokenizer,
                rows,
                max_length=max_length,
                device=ctx.device,
                precision=ctx.precision,
                batch_size=max(8, ctx.config.per_device_batch_size * 2),
                chosen_sides=[sides.get(row["id"]) for row in rows] if sides else None,
            )
            metrics[split] = result
            # The probes (nested tables) stay in the run's metrics, out of the curves.
            curve = {k: v for k, v in result.items() if k != "bias_probes"}
            ctx.reporter.emit("eval", step=trainer.state.global_step, metrics={split: curve})
    model_dir = hf.save_final(trainer, ctx, meta={"kind": "reward_model"})
    ctx.method_result.model_dir = str(model_dir)
    return metrics
