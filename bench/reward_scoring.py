"""Reward-model scoring speed: ``evaluate-reward`` on real HH-RLHF pairs, in pairs per second.

    python bench/reward_scoring.py --data ../shared/data/hh_harmless_dev.jsonl --pairs 200

Scores the first ``--pairs`` pairs of the file with the engine's ``evaluate_reward`` (the same
path as ``python -m rlhf.training evaluate-reward``, a review round's reward and training-time
evaluation: ``rollout.score_answers``), once per precision named in ``--precisions`` and in
alternating rounds, so that a shared machine's load falls on every variant alike. The model is
all-MiniLM-L6-v2 unless ``--model`` names a reward model folder (a bare encoder gets a random
head: the speed is the same, the accuracy is noise). ``seconds`` covers loading the model
(about a second for MiniLM) and scoring, as a user of the command waits for both.

The last line printed is one JSON object: ``{"model", "pairs", "batch_size", "device",
"torch_threads", "runs": [{"precision", "round", "seconds", "pairs_per_s", "accuracy"}]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.shared_data import shared_data

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from rlhf.training.base_models import minilm_path
from rlhf.training.evaluation import evaluate_reward
from rlhf.training.loading import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=shared_data("hh_harmless_dev.jsonl"))
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--model", type=Path, default=None, help="reward model folder")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", default="auto", help="comma-separated: auto,fp32,bf16")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    model = args.model or minilm_path()
    lines = [line for line in args.data.read_text().splitlines() if line.strip()][: args.pairs]
    device = resolve_device(args.device)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pairs.jsonl"
        data.write_text("\n".join(lines) + "\n")
        for round_index in range(args.rounds):
            for precision in args.precisions.split(","):
                started = time.perf_counter()
                result = evaluate_reward(
                    model, data, device=device, precision=precision, batch_size=args.batch_size
                )
                seconds = time.perf_counter() - started
                run = {
                    "precision": result["precision"],
                    "asked": precision,
                    "round": round_index,
                    "seconds": round(seconds, 2),
                    "pairs_per_s": round(len(lines) / seconds, 2),
                    "accuracy": result["accuracy"],
                }
                runs.append(run)
                print(json.dumps(run), file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "model": str(model),
                "pairs": len(lines),
                "batch_size": args.batch_size,
                "device": device,
                "torch_threads": torch.get_num_threads(),
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
