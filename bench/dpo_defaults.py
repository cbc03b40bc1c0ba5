"""Does a short LoRA DPO run move the policy at all? Held-out implicit-reward accuracy and margin
of DPO settings side by side, plain TRL's default learning rate among them (issue 16).

    python bench/dpo_defaults.py [--data PATH] [--steps 24] [--seeds 1] \
        [--candidate learning_rate=5e-5 --candidate learning_rate=5e-4 ...]

The pairs of ``--data`` (HH-RLHF) are cut by a hash of their prompt: ``--eval-pairs`` held-out
pairs, the rest to train on. For every candidate (a set of ``DPOConfig`` fields over Tandem's
defaults; ``tandem`` is those defaults; ``plain-trl`` is TRL's ``DPOConfig`` learning rate 1e-6
with our LoRA) and every seed,
SmolLM2-135M-Instruct (the bundled package) trains ``--steps`` DPO steps through the platform's
engine (``rlhf.training.runner.run_training``), then TRL's evaluation scores the held-out pairs:
``accuracy`` is the share of pairs whose implicit reward ``beta * (log pi/pi_ref)`` prefers the
chosen answer (TRL counts a tie as wrong; an untrained adapter ties every pair: 0), ``margin``
the mean chosen-minus-rejected implicit reward, ``loss`` the DPO loss (ln 2 = 0.693 is an
unmoved policy). The last line printed is one JSON object: ``{candidates: {name: {accuracy,
margin, loss, per_seed}}, steps, train_pairs, eval_pairs, minutes}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.loop_effect import prompt_key
from bench.shared_data import shared_data

PLAIN_TRL_LEARNING_RATE = 1e-6  # trl.DPOConfig's default


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_candidate(text: str) -> tuple[str, dict]:
    if text == "plain-trl":
        return text, {"learning_rate": PLAIN_TRL_LEARNING_RATE}
    if text == "tandem":
        return text, {}
    fields = {}
    for item in text.split(","):
        key, _, raw = item.partition("=")
        fields[key] = json.loads(raw)
    return text, fields


def run_one(train, held_out, fields: dict, *, seed: int, steps: int, base: Path, args) -> dict:
    from rlhf.training.config import DPOConfig
    from rlhf.training.data import DatasetSplits
    from rlhf.training.runner import run_training

    config = DPOConfig(
        base_model=str(base),
        max_steps=steps,
        per_device_batch_size=args.batch,
        max_length=args.max_length,
        checkpoint_every_steps=0,
        log_every_steps=max(1, steps // 4),
        max_eval_examples=len(held_out),
        seed=seed,
        **fields,
    )
    scratch = Path(tempfile.mkdtemp(prefix="tandem-dpo-defaults-"))
    try:
        result = run_training(
            "dpo", config, DatasetSplits(train=train, validation=held_out), scratch
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    validation = result.metrics["validation"]
    return {
        "accuracy": round(validation["eval_rewards/accuracies"], 4),
        "margin": round(validation["eval_rewards/margins"], 4),
        "loss": round(validation["eval_loss"], 4),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=shared_data("hh_harmless_dev.jsonl"))
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--eval-pairs", type=int, default=48)
    parser.add_argument("--candidate", action="append", default=[], metavar="F=JSON[,F=JSON]")
    parser.add_argument(
        "--models-dir", type=Path, default=Path(os.environ.get("TANDEM_MODELS_DIR", "var/models"))
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()

    from rlhf.training.base_models import ensure_smollm2
    from rlhf.training.data import canonical_rows, read_jsonl

    raw = read_jsonl(args.data)
    ordered = sorted(raw, key=prompt_key)  # a seeded-free, stable shuffle by prompt
    rows, _ = canonical_rows("preference", ordered)
    held_out, train = rows[: args.eval_pairs], rows[args.eval_pairs :]
    base = ensure_smollm2(args.models_dir)
    candidates = [parse_candidate(c) for c in (args.candidate or ["plain-trl", "tandem"])]
    out = {}
    for name, fields in candidates:
        per_seed = []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            figures = run_one(
                train, held_out, fields, seed=42 + seed, steps=args.steps, base=base, args=args
            )
            log(f"{name} seed {42 + seed}: {figures} ({time.perf_counter() - t0:.0f} s)")
            per_seed.append(figures)
        out[name] = {
            key: round(statistics.fmean(f[key] for f in per_seed), 4)
            for key in ("accuracy", "margin", "loss")
        } | {"per_seed": per_seed}
    result = {
        "candidates": out,
        "steps": args.steps,
        "batch": args.batch,
        "train_pairs": len(train),
        "eval_pairs": len(held_out),
        "minutes": round((time.perf_counter() - started) / 60, 2),
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
