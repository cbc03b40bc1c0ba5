"""Reward-model accuracy through the platform's training path on real HH-RLHF pairs.

    python bench/reward_accuracy.py [--data PATH]   # default: hh_harmless_dev.jsonl of
                                                    # bench/shared_data.py's folder

Trains a reward model (all-MiniLM-L6-v2 encoder by default) on the first 600 pairs and scores
the last 200 (pairwise accuracy, ties counted wrong). The last line printed is one JSON object:
``{"backbone", "train_pairs", "eval_pairs", "accuracy", "eval_loss", "seconds"}``; ``seconds``
covers everything from loading the model to the end of evaluation. Unless an option says
otherwise it trains with ``RewardConfig``'s defaults (a probed head, learning rate 1e-5, two
epochs, 512 tokens), batch size 16.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from bench.shared_data import shared_data
from rlhf.training.base_models import ensure_smollm2
from rlhf.training.config import RewardConfig
from rlhf.training.data import DatasetSplits, read_jsonl
from rlhf.training.runner import run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=shared_data("hh_harmless_dev.jsonl"))
    parser.add_argument("--backbone", choices=["encoder", "decoder"], default="encoder")
    parser.add_argument("--train-pairs", type=int, default=600)
    parser.add_argument("--eval-pairs", type=int, default=200)
    parser.add_argument("--epochs", type=float, help="default: RewardConfig's")
    parser.add_argument("--lr", type=float, help="default: RewardConfig's")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, help="default: RewardConfig's")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="any other RewardConfig field, e.g. --set head_learning_rate=1e-3",
    )
    parser.add_argument(
        "--models-dir", type=Path, default=Path(os.environ.get("TANDEM_MODELS_DIR", "var/models"))
    )
    opts = parser.parse_args()
    if opts.threads:
        torch.set_num_threads(opts.threads)

    started = time.perf_counter()
    rows = read_jsonl(opts.data)
    train, held_out = rows[: opts.train_pairs], rows[-opts.eval_pairs :]
    base_model = "" if opts.backbone == "encoder" else str(ensure_smollm2(opts.models_dir))
    chosen = {"num_epochs": opts.epochs, "learning_rate": opts.lr, "max_length": opts.max_length}
    config = RewardConfig(
        backbone=opts.backbone,
        base_model=base_model,
        **{name: value for name, value in chosen.items() if value is not None},
        per_device_batch_size=opts.batch_size,
        warmup_steps=0.1,
        checkpoint_every_steps=0,
        log_every_steps=10,
        seed=opts.seed,
        **{k: json.loads(v) for k, v in (item.split("=", 1) for item in opts.set)},
    )
    scratch = Path(tempfile.mkdtemp(prefix="tandem-reward-accuracy-"))
    try:

        def progress(event):
            if event.kind in ("step", "eval"):
                rate = f"{event.tokens_per_s:.0f} tok/s" if event.tokens_per_s else ""
                print(
                    f"{event.kind} {event.step}/{event.total_steps} loss={event.loss} {rate}",
                    file=sys.stderr,
                    flush=True,
                )

        result = run_training(
            "reward", config, DatasetSplits(train=train, test=held_out), scratch, progress=progress
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    test = result.metrics["test"]
    print(f"head: {result.details.get('head_init')}", file=sys.stderr)
    print(
        json.dumps(
            {
                "backbone": "all-MiniLM-L6-v2" if opts.backbone == "encoder" else "smollm2-135m",
                "train_pairs": result.train_rows,
                "eval_pairs": test["pairs"],
                "accuracy": round(test["accuracy"], 4),
                "eval_loss": round(test["loss"], 4),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
