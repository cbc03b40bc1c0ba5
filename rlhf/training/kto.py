"""KTO (Ethayarajh et al. 2024) through TRL's KTOTrainer, on unpaired desirable/undesirable answers.

The rows are the export's ``kto`` file (an answer that only won a comparison is desirable; one
that only lost, or was marked "both bad", undesirable; an unchanged correction desirable) plus
its ``flags`` file: an answer flagged with one of ``config.undesirable_flags`` is undesirable,
added when the kto file lacks it and relabelled when the kto file calls it desirable.

Tokenisation, truncation, reference model, progress, checkpoints and the saved policy are
DPO's (``dpo.py``): rows are encoded by ``encode_decoder`` (oldest turns cut first, counted), the
reference is the parent (LoRA: the adapter disabled) unless ``reference_model`` names another.

KTO's KL term is estimated from mismatched pairs: each prompt with the answer of its batch
neighbour. TRL precomputes those neighbours over a fixed sequential order; here the collator
pairs them inside each real batch, so batches can be length-grouped and reshuffled every epoch
(as every other method's are) and the mismatched answers are always the batch's own.
"""

from __future__ import annotations

import json
from pathlib import Path

from datasets import Dataset
from trl import KTOConfig as TRLKTOConfig
from trl import KTOTrainer
from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference

from rlhf.training import hf
from rlhf.training.data import DataError
from rlhf.training.loading import check_model_folder, load_causal_lm, load_tokenizer, lora_config
from rlhf.training.tokens import chat_template_sha256, encode_decoder


class TandemKTOTrainer(hf.LengthGroupedMixin, KTOTrainer):
    """TRL's KTOTrainer fed rows Tandem already tokenised (and fitted by left truncation)."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if {"prompt_ids", "completion_ids", "label"} <= set(dataset.column_names):
            return dataset
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)


class MismatchedCompletions:
    """Adds ``KL_completion_ids`` to a batch: row i's prompt with row i-1's answer (rotated by
    one, as TRL does), the batch's own answers paired with other prompts."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples):
        answers = [example["completion_ids"] for example in examples]
        rotated = answers[-1:] + answers[:-1]
        return self.collator(
            [
                {**example, "KL_completion_ids": answer}
                for example, answer in zip(examples, rotated, strict=True)
            ]
        )


def _key(row: dict) -> tuple[str, str]:
    return json.dumps(row["prompt"], sort_keys=True, ensure_ascii=False), row["completion"]


def usable_rows(rows: list[dict], undesirable_flags: list[str]) -> tuple[list[dict], int]:
    """The split's KTO rows with flagged answers made undesirable; flags rows of other flags
    are left out. Returns the rows and how many kto rows a flag relabelled."""
    flagged = {_key(r) for r in rows if r.get("flag") in undesirable_flags}
    out, seen, relabelled = [], set(), 0
    for row in rows:
        if row.get("flag") is not None:
            continue
        key = _key(row)
        if key in flagged and row["label"]:
            row = {**row, "label": False, "source": f"{row.get('source') or 'kto'}+flag"}
            relabelled += 1
        out.append(row)
        seen.add(key)
    for row in rows:
        key = _key(row)
        if row.get("flag") in undesirable_flags and key not in seen:
            out.append({**row, "source": f"flag:{row['flag']}"})
            seen.add(key)
    return out, relabelled


def tokenize_unpaired(rows: list[dict], tokenizer, max_length: int) -> tuple[dict, int]:
    columns: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "label": []}
    truncated = 0
    for row in rows:
        encoded = encode_decoder(tokenizer, row["prompt"], [row["completion"]], max_length)
        columns["prompt_ids"].append(encoded.prompt_ids)
        columns["completion_ids"].append(encoded.completion_ids[0])
        columns["label"].append(bool(row["label"]))
        truncated += encoded.truncated
    return columns, truncated


def build_trainer(ctx: hf.RunContext, *, callbacks: list | None = None):
    config = ctx.config
    splits = ctx.splits
    relabelled = 0
    for name in ("train", "validation", "test"):
        rows, changed = usable_rows(splits.split(name), list(config.undesirable_flags))
        setattr(splits, name, rows)
        relabelled += changed
    train_rows = splits.train
    if not train_rows:
        raise DataError("no KTO training rows are left once flags are applied")
    desirable = sum(1 for r in train_rows if r["label"])
    undesirable = len(train_rows) - desirable
    message = (
        f"KTO rows: {desirable} desirable, {undesirable} undesirable "
        f"({sum(1 for r in train_rows if r.get('flag'))} from flags, {relabelled} "
        "relabelled by a flag)"
    )
    if desirable and undesirable:
        ratio = (config.desirable_weight * desirable) / (config.undesirable_weight * undesirable)
        if not 1.0 <= ratio <= 4 / 3:
            message += (
                f"; desirable_weight x desirable / (undesirable_weight x undesirable) = "
                f"{ratio:.2f}, outside the paper's [1, 4/3]"
            )
    ctx.reporter.emit("log", message=message)

    parent = check_model_folder(config.base_model).resolve()
    tokenizer = load_tokenizer(parent)
    ctx.chat_template_sha256 = chat_template_sha256(tokenizer)
    train_columns, truncated = tokenize_unpaired(train_rows, tokenizer, config.max_length)
    ctx.truncated_rows = truncated
    eval_dataset = None
    validation = splits.validation[: config.max_eval_examples]
    if len(validation) >= 2 or (validation and config.loss_type != "kto"):
        eval_dataset = Dataset.from_dict(
            tokenize_unpaired(validation, tokenizer, config.max_length)[0]
        )

    model = load_causal_lm(parent)
    reference_path = Path(config.reference_model).resolve() if config.reference_model else parent
    ref_model = None
    if config.use_lora and reference_path == parent:
        ctx.method_result.reference_model = f"{parent} (the parent: LoRA adapter disabled)"
    else:
        ref_model = load_causal_lm(reference_path)
        ref_model.requires_grad_(False)
        ctx.method_result.reference_model = str(reference_path)
    peft_config = lora_config(config, task_type="CAUSAL_LM") if config.use_lora else None

    args = TRLKTOConfig(
        **hf.trainer_arguments(ctx, has_eval=eval_dataset is not None),
        beta=config.beta,
        loss_type=config.loss_type,
        desirable_weight=config.desirable_weight,
        undesirable_weight=config.undesirable_weight,
        max_length=config.max_length,  # rows already fit: the collator's cut never applies
        disable_dropout=True,
        precompute_ref_log_probs=False,
        pad_to_multiple_of=None,
        # Checked by TRL against its own precomputed neighbours; ours are paired per batch
        # (MismatchedCompletions), so the sampler below may group and shuffle.
        train_sampling_strategy="sequential",
    )
    unpaired = DataCollatorForUnpairedPreference(
        pad_token_id=tokenizer.pad_token_id, max_length=config.max_length
    )
    collator = hf.CountingCollator(
        MismatchedCompletions(unpaired) if config.loss_type == "kto" else unpaired
    )
    trainer = TandemKTOTrainer(
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
    # Always our seeded sampler: TRL's sequential one would show the rows in one fixed order
    # every epoch.
    lengths = [
        len(p) + len(c)
        for p, c in zip(train_columns["prompt_ids"], train_columns["completion_ids"], strict=True)
    ]
    trainer.tandem_lengths = lengths if config.group_by_length else [0] * len(lengths)
    ctx.method_result.base_model = str(parent)
    return trainer, collator, tokenizer


def train(ctx: hf.RunContext) -> dict:
    trainer, _, _ = build_trainer(ctx)
    return hf.train_policy(trainer, ctx)
