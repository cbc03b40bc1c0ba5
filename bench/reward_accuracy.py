"""Reward-model accuracy by repeated k-fold cross-validation: Tandem's defaults against plain TRL.

    python bench/reward_accuracy.py --data ../shared/data/hh_harmless_dev.jsonl \
        --folds 5 --repeats 2
    python bench/reward_accuracy.py --data train.jsonl --eval-data other_slice.jsonl --repeats 1

Each repeat shuffles the pairs with its own seed (``--seed`` + repeat) and cuts them into
``--folds`` folds; every fold is scored once by a model trained on the other folds, so every pair
is scored once per repeat. On the SAME folds two models are trained:

- ours: the platform's training path (``rlhf.training`` ``RewardConfig`` with its defaults and
  ``run_training``), encoder backbone (all-MiniLM-L6-v2 from the bundled package) unless
  ``--backbone decoder``; ``--set FIELD=JSON`` changes any ``RewardConfig`` field (candidates);
- plain TRL: the script a new user writes with ``trl.RewardTrainer`` — the same MiniLM,
  ``AutoModelForSequenceClassification(num_labels=1)``, each pair rendered as its HH-RLHF
  transcript (``\\n\\nHuman: ...\\n\\nAssistant: ...``), tokenised with left truncation at 384
  tokens, learning rate 5e-5, one epoch, batch 8, everything else TRL's defaults (bf16 where the
  CPU has it; gradient checkpointing off, which does not change the result, only the time).

With ``--eval-data FILE`` nothing is folded: each repeat trains on all of ``--data`` (seed
``--seed`` + repeat) and scores FILE; ``folds`` is then printed as 1.

Accuracy is pairwise (ties count wrong). ``accuracy_std`` is the sample standard deviation of the
per-fold accuracies (folds x repeats values). ``pairs`` counts the pairs scored per repeat. The
line before the last gives every fold's accuracy and the paired difference (ours - TRL).
``--only ours`` / ``--only trl`` trains one side (the other's figures print as null): the
defaults search runs candidates with ``--only ours`` on the folds the plain-TRL run used.
``seconds`` is the wall time of the whole bench. The last line printed is one JSON object:
``{"backbone", "folds", "pairs", "accuracy_mean", "accuracy_std", "trl_accuracy_mean",
"trl_accuracy_std", "seconds"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from bench.shared_data import shared_data
from rlhf.training.base_models import ensure_smollm2, minilm_path
from rlhf.training.config import RewardConfig
from rlhf.training.data import DatasetSplits, canonical_rows, read_jsonl
from rlhf.training.runner import run_training

TRL_MAX_LENGTH = 384
TRL_LEARNING_RATE = 5e-5
TRL_EPOCHS = 1
TRL_BATCH_SIZE = 8


def fold_plan(pairs: int, folds: int, repeats: int, seed: int) -> list[tuple[int, int, list[int]]]:
    """(repeat, fold, held-out indices) for repeated k-fold: each repeat covers every index once."""
    plan = []
    for repeat in range(repeats):
        order = list(range(pairs))
        random.Random(seed + repeat).shuffle(order)
        for fold in range(folds):
            plan.append((repeat, fold, sorted(order[fold::folds])))
    return plan


def hh_transcript(messages: list[dict], answer: str) -> str:
    """A canonical pair side as HH-RLHF writes it: ``\\n\\nHuman: ...\\n\\nAssistant: ...``."""
    speaker = {"user": "Human", "assistant": "Assistant", "system": "System"}
    turns = [*messages, {"role": "assistant", "content": answer}]
    return "".join(f"\n\n{speaker.get(m['role'], m['role'])}: {m['content']}" for m in turns)


def plain_trl_accuracy(train: list[dict], held_out: list[dict], *, seed: int) -> float:
    """Train and score the plain TRL RewardTrainer script on canonical rows."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    source = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.truncation_side = "left"

    def ids(row: dict, side: str) -> list[int]:
        text = hh_transcript(row["prompt"], row[side])
        return tokenizer(text, truncation=True, max_length=TRL_MAX_LENGTH)["input_ids"]

    dataset = Dataset.from_dict(
        {
            "chosen_ids": [ids(row, "chosen") for row in train],
            "rejected_ids": [ids(row, "rejected") for row in train],
        }
    )
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
    scratch = tempfile.mkdtemp(prefix="tandem-plain-trl-")
    try:
        args = TRLRewardConfig(
            output_dir=scratch,
            learning_rate=TRL_LEARNING_RATE,
            num_train_epochs=TRL_EPOCHS,
            per_device_train_batch_size=TRL_BATCH_SIZE,
            seed=seed,
            use_cpu=not torch.cuda.is_available(),
            gradient_checkpointing=False,
            save_strategy="no",
            report_to="none",
            logging_steps=10,
            disable_tqdm=True,
        )
        trainer = RewardTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer
        )
        trainer.train()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    model = trainer.model.eval()
    device = next(model.parameters()).device
    correct = 0
    with torch.no_grad():
        for start in range(0, len(held_out), 16):
            batch = held_out[start : start + 16]
            texts = [
                hh_transcript(r["prompt"], r[side])
                for side in ("chosen", "rejected")
                for r in batch
            ]
            enc = tokenizer(
                texts, truncation=True, max_length=TRL_MAX_LENGTH, padding=True, return_tensors="pt"
            ).to(device)
            scores = model(**enc).logits[:, 0].float()  # (2 * batch,)
            chosen, rejected = scores[: len(batch)], scores[len(batch) :]
            correct += int((chosen > rejected).sum())
    return correct / len(held_out)


def progress(event) -> None:
    if event.kind in ("step", "log"):
        detail = event.message or f"step {event.step}/{event.total_steps} loss={event.loss}"
        print(f"ours: {detail}", file=sys.stderr, flush=True)


def ours_accuracy(
    train: list[dict], held_out: list[dict], *, opts, seed: int, overrides: dict
) -> tuple[float, dict]:
    base_model = "" if opts.backbone == "encoder" else str(ensure_smollm2(opts.models_dir))
    config = RewardConfig(
        backbone=opts.backbone,
        base_model=base_model,
        checkpoint_every_steps=0,  # a bench run is never resumed
        log_every_steps=10,
        seed=seed,
        **overrides,
    )
    scratch = Path(tempfile.mkdtemp(prefix="tandem-reward-accuracy-"))
    try:
        splits = DatasetSplits(train=train, test=held_out)
        result = run_training("reward", config, splits, scratch, progress=progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result.metrics["test"]["accuracy"], result.details.get("head_init") or {}


def spread(values: list[float]) -> float | None:
    return round(statistics.stdev(values), 4) if len(values) > 1 else (0.0 if values else None)


def mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=shared_data("hh_harmless_dev.jsonl"))
    parser.add_argument("--eval-data", type=Path, help="train on all of --data, score this file")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backbone", choices=["encoder", "decoder"], default="encoder")
    parser.add_argument("--only", choices=["ours", "trl"], help="train one side only")
    parser.add_argument("--max-pairs", type=int, help="use a seeded sample of this many pairs")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="a RewardConfig field for our side, e.g. --set learning_rate=3e-5",
    )
    parser.add_argument(
        "--models-dir", type=Path, default=Path(os.environ.get("TANDEM_MODELS_DIR", "var/models"))
    )
    opts = parser.parse_args()
    if opts.folds < 2 and not opts.eval_data:
        parser.error("--folds must be at least 2 (or give --eval-data)")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in opts.set)}
    RewardConfig(**overrides).validate()  # a bad candidate fails before any training

    started = time.perf_counter()
    rows, unreadable = canonical_rows("preference", read_jsonl(opts.data))
    if opts.max_pairs and opts.max_pairs < len(rows):
        rows = [
            rows[i]
            for i in sorted(random.Random(opts.seed).sample(range(len(rows)), opts.max_pairs))
        ]
    if opts.eval_data:
        eval_rows, eval_unreadable = canonical_rows("preference", read_jsonl(opts.eval_data))
        unreadable += eval_unreadable
        plan = [(repeat, 0, None) for repeat in range(opts.repeats)]
    else:
        plan = fold_plan(len(rows), opts.folds, opts.repeats, opts.seed)
    if unreadable:
        print(f"{unreadable} unreadable rows skipped", file=sys.stderr)

    ours, trl, folds_detail = [], [], []
    for repeat, fold, held in plan:
        if held is None:
            train, held_out = rows, eval_rows
        else:
            held_set = set(held)
            train = [row for i, row in enumerate(rows) if i not in held_set]
            held_out = [rows[i] for i in held]
        seed = opts.seed + repeat
        detail = {"repeat": repeat, "fold": fold, "train": len(train), "scored": len(held_out)}
        if opts.only != "trl":
            fold_started = time.perf_counter()
            accuracy, head = ours_accuracy(
                train, held_out, opts=opts, seed=seed, overrides=overrides
            )
            ours.append(accuracy)
            detail.update(ours=round(accuracy, 4), ours_s=round(time.perf_counter() - fold_started))
            detail["probe_cv"] = head.get("cv_accuracy")
        if opts.only != "ours":
            fold_started = time.perf_counter()
            accuracy = plain_trl_accuracy(train, held_out, seed=seed)
            trl.append(accuracy)
            detail.update(trl=round(accuracy, 4), trl_s=round(time.perf_counter() - fold_started))
        folds_detail.append(detail)
        print(json.dumps(detail), file=sys.stderr, flush=True)

    differences = [a - b for a, b in zip(ours, trl, strict=False)] if ours and trl else []
    print(
        json.dumps(
            {
                "per_fold": folds_detail,
                "overrides": overrides,
                "difference_mean": mean(differences),
                "difference_std": spread(differences),
            }
        )
    )
    print(
        json.dumps(
            {
                "backbone": "all-MiniLM-L6-v2" if opts.backbone == "encoder" else "smollm2-135m",
                "folds": 1 if opts.eval_data else opts.folds,
                "pairs": len(eval_rows) if opts.eval_data else len(rows),
                "accuracy_mean": mean(ours),
                "accuracy_std": spread(ours),
                "trl_accuracy_mean": mean(trl),
                "trl_accuracy_std": spread(trl),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
