"""Training throughput: Tandem's training path against a plain TRL script, same data and knobs.

    python bench/train_throughput.py --method reward --model smollm2-135m --pairs 256
    python bench/train_throughput.py --method dpo --model smollm2-135m --pairs 256

Both runs get the first ``--pairs`` HH-RLHF pairs, the same model, batch size, max length,
learning rate and number of optimizer steps; TRL is otherwise left at its defaults (on a CPU it
needs ``use_cpu=True`` to start at all: its default ``bf16=True`` refuses a machine without a
GPU). They run one after the other. Throughput counts real tokens (attention-mask ones, not
padding) over every step but the first (warm-up), measured by the same collator wrapper for
both. On a shared machine another process can slow one side down for a minute, so the two run in
alternating rounds (ours, TRL, ours, TRL, ...; ``--rounds``, default 3) and each side's figure is
the median of its rounds; every round's figure is printed to stderr. The last line printed is one
JSON object.

``--model`` is ``smollm2-135m`` (the packaged weights), a model folder, or ``random:<folder>``:
a randomly initialised model built from that folder's config.json and tokenizer (for GPU
machines without the weights; speed does not depend on the weights' values).
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
from transformers import TrainerCallback

from rlhf.training.base_models import ensure_smollm2
from rlhf.training.config import DPOConfig, RewardConfig
from rlhf.training.data import DatasetSplits, read_jsonl
from rlhf.training.formats import parse_preference_row
from rlhf.training.hf import CountingCollator
from rlhf.training.runner import run_training

REPO = Path(__file__).resolve().parents[1]
# Dense bf16 peak of the chips MFU is quoted against (vendor figures, TFLOP/s).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def shared_data(name: str) -> Path:
    """``../shared/data/<name>`` beside the checkout (or beside the main one, from a worktree)."""
    candidates = [REPO.parent / "shared" / "data" / name]
    git_common = REPO / ".git"
    if git_common.is_file():  # a worktree: .git names the main repository's git folder
        text = git_common.read_text().strip().removeprefix("gitdir: ")
        main_checkout = Path(text).resolve().parents[2]
        candidates.append(main_checkout.parent / "shared" / "data" / name)
    return next((c for c in candidates if c.is_file()), candidates[0])


def resolve_model(name: str, models_dir: Path, scratch: Path) -> Path:
    if name == "smollm2-135m":
        return ensure_smollm2(models_dir)
    if name.startswith("random:"):
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        source = Path(name.split(":", 1)[1])
        config = AutoConfig.from_pretrained(source)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        target = scratch / "random-model"
        model.save_pretrained(target, safe_serialization=True)
        AutoTokenizer.from_pretrained(source).save_pretrained(target)
        return target
    return Path(name)


class StepClock(TrainerCallback):
    """Per-step wall time and real tokens, read from a CountingCollator."""

    def __init__(self, collator: CountingCollator):
        self.collator = collator
        self.times: list[float] = []
        self.tokens: list[int] = []

    def on_step_begin(self, args, state, control, **kwargs):
        if not self.times:
            self.times.append(time.perf_counter())
            self.tokens.append(0)

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        self.tokens.append(self.tokens[-1] + self.collator.take(args.gradient_accumulation_steps))

    def rate(self) -> tuple[float, float, int]:
        """(tokens/s, steps/s, steps) over every step after the first."""
        steps = len(self.times) - 2
        seconds = self.times[-1] - self.times[1]
        return (self.tokens[-1] - self.tokens[1]) / seconds, steps / seconds, steps


def run_ours(method, model_dir, rows, opts, scratch) -> dict:
    common = {
        "base_model": str(model_dir),
        "per_device_batch_size": opts.batch_size,
        "max_length": opts.max_length,
        "learning_rate": opts.lr,
        "max_steps": opts.steps,
        "checkpoint_every_steps": 0,
        "log_every_steps": 1,
        "seed": opts.seed,
    }
    if method == "reward":
        # TRL starts from a random head; fitting ours first (untimed, minutes on a CPU) would
        # cost the bench time without changing what it measures.
        config = RewardConfig(backbone="decoder", head_init="random", **common)
    else:
        config = DPOConfig(use_lora=False, **common)
    events = []
    result = run_training(
        method,
        config,
        DatasetSplits(train=rows),
        scratch / f"ours-{method}",
        progress=events.append,
        resume=False,
    )
    steps = [e for e in events if e.kind == "step"]
    first, last = steps[0], steps[-1]
    seconds = last.elapsed_s - first.elapsed_s
    return {
        "tokens_per_s": (last.tokens - first.tokens) / seconds,
        "steps_per_s": (last.step - first.step) / seconds,
        "dropped_pairs": result.dropped_rows,
        "truncated_pairs": result.truncated_rows,
        "precision": result.precision,
    }


def run_trl(method, model_dir, rows, opts, scratch) -> dict:
    from datasets import Dataset

    dataset = Dataset.from_list(
        [
            {
                "prompt": pair.prompt,
                "chosen": [{"role": "assistant", "content": pair.chosen}],
                "rejected": [{"role": "assistant", "content": pair.rejected}],
            }
            for pair in (parse_preference_row(r) for r in rows)
        ]
    )
    common = {
        "output_dir": str(scratch / f"trl-{method}"),
        "per_device_train_batch_size": opts.batch_size,
        "max_length": opts.max_length,
        "learning_rate": opts.lr,
        "max_steps": opts.steps,
        "seed": opts.seed,
        "save_strategy": "no",
        "report_to": "none",
    }
    if not torch.cuda.is_available():
        common["use_cpu"] = True  # TRL's default bf16=True refuses to start on a CPU without it
    if method == "reward":
        from trl import RewardConfig as TRLRewardConfig
        from trl import RewardTrainer

        trainer = RewardTrainer(
            model=str(model_dir), args=TRLRewardConfig(**common), train_dataset=dataset
        )
    else:
        from trl import DPOConfig as TRLDPOConfig
        from trl import DPOTrainer

        trainer = DPOTrainer(
            model=str(model_dir), args=TRLDPOConfig(**common), train_dataset=dataset
        )
    kept = len(trainer.train_dataset)
    trainer.data_collator = CountingCollator(trainer.data_collator)
    clock = StepClock(trainer.data_collator)
    trainer.add_callback(clock)
    trainer.train()
    tokens_per_s, steps_per_s, _ = clock.rate()
    return {
        "tokens_per_s": tokens_per_s,
        "steps_per_s": steps_per_s,
        "dropped_pairs": len(rows) - kept,
        "bf16": trainer.args.bf16,
        "gradient_checkpointing": trainer.args.gradient_checkpointing,
    }


def mfu(method: str, model_dir: Path, tokens_per_s: float) -> float | None:
    """Model FLOPs utilisation on a GPU, from matmul FLOPs per real token (attention ignored).

    Reward model: 6 x non-embedding parameters (forward + backward, no LM head).
    DPO: 6 x all parameters for the policy (the tied LM head is a matmul) + 2 x for the reference.
    """
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    if peak is None:
        return None
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    params = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    per_token = 8 * params if method == "dpo" else 6 * (params - embedding)
    return tokens_per_s * per_token / (peak * 1e12)


def median_round(rounds: list[dict]) -> dict | None:
    """The round with the median throughput (its other figures come along with it)."""
    if not rounds:
        return None
    ordered = sorted(rounds, key=lambda r: r["tokens_per_s"])
    return ordered[(len(ordered) - 1) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", choices=["reward", "dpo"], required=True)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--data", type=Path, default=shared_data("hh_harmless_dev.jsonl"))
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per system")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--models-dir", type=Path, default=Path(os.environ.get("TANDEM_MODELS_DIR", "var/models"))
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)"
    )
    parser.add_argument("--only", choices=["ours", "trl"], help="run one side (for profiling)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds per side; the median is reported"
    )
    opts = parser.parse_args()

    if opts.threads:
        torch.set_num_threads(opts.threads)
    rows = read_jsonl(opts.data)[: opts.pairs]
    scratch = Path(tempfile.mkdtemp(prefix="tandem-throughput-"))
    try:
        model_dir = resolve_model(opts.model, opts.models_dir, scratch)
        ours_rounds: list[dict] = []
        trl_rounds: list[dict] = []
        for round_number in range(1, opts.rounds + 1):
            for side, runner, rounds in (
                ("ours", run_ours, ours_rounds),
                ("trl", run_trl, trl_rounds),
            ):
                if opts.only and opts.only != side:
                    continue
                started = time.perf_counter()
                result = runner(
                    opts.method, model_dir, rows, opts, scratch / f"round-{round_number}"
                )
                rounds.append(result)
                seconds = time.perf_counter() - started
                print(f"round {round_number} {side}: {result} ({seconds:.0f} s)", file=sys.stderr)
        ours = median_round(ours_rounds)
        trl = median_round(trl_rounds)
        line = {
            "method": opts.method,
            "model": opts.model,
            "ours_tokens_per_s": round(ours["tokens_per_s"], 1) if ours else None,
            "trl_tokens_per_s": round(trl["tokens_per_s"], 1) if trl else None,
            "ratio": round(ours["tokens_per_s"] / trl["tokens_per_s"], 3) if ours and trl else None,
            "ours_dropped_pairs": ours["dropped_pairs"] if ours else None,
            "trl_dropped_pairs": trl["dropped_pairs"] if trl else None,
        }
        if torch.cuda.is_available():
            line["device"] = torch.cuda.get_device_name()
            for side, values in (("ours", ours), ("trl", trl)):
                if values:
                    samples = values["steps_per_s"] * opts.batch_size
                    line[f"{side}_samples_per_s"] = round(samples, 2)
                    share = mfu(opts.method, model_dir, values["tokens_per_s"])
                    line[f"{side}_mfu"] = None if share is None else round(share, 4)
        print(json.dumps(line))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
