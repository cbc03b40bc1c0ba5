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
JSON object. ``--compile`` has our side compile the model first (``compile_model``); with it,
``--warmup-steps`` (default 1) should leave the compilation out of both sides' figures.

``--profile DIR`` runs one round per side under ``torch.profiler`` (steps 4-7) and writes, per
side, the ops that took the time (``<method>_<side>.txt``) and one JSON line of where a step's
wall time went (``profile.jsonl``: host-to-device syncs, device busy share).

``--model`` is ``smollm2-135m`` (the packaged weights), a model folder, or ``random:<folder>``:
a randomly initialised model built from that folder's config.json and tokenizer (for GPU
machines without the weights; speed does not depend on the weights' values).
"""

from __future__ import annotations

import argparse
import contextlib
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

from bench.shared_data import shared_data
from formats.preference import parse_preference_row
from rlhf.training.base_models import ensure_smollm2
from rlhf.training.config import DPOConfig, RewardConfig
from rlhf.training.data import DatasetSplits, read_jsonl
from rlhf.training.hf import CountingCollator
from rlhf.training.runner import run_training

# Dense bf16 peak of the chips MFU is quoted against (vendor figures, TFLOP/s).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


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

    def rate(self, warmup: int = 1) -> tuple[float, float, int]:
        """(tokens/s, steps/s, steps) over every step after the first ``warmup``."""
        steps = len(self.times) - 1 - warmup
        seconds = self.times[-1] - self.times[warmup]
        return (self.tokens[-1] - self.tokens[warmup]) / seconds, steps / seconds, steps


class StepProfiler(TrainerCallback):
    """torch.profiler over a few steady steps (after 2 skipped and 1 warm-up), summarised.

    ``step()`` marks the end of a training step: a TrainerCallback for TRL's side, called from
    the progress events on ours.

    The summary says whether a step is bound by the device or by the host: the device's busy
    share of the wall time, and how many times per step the host waited for it (``.item()``,
    ``aten::_local_scalar_dense``: each one drains the queue the host was filling ahead).
    """

    WAIT, WARMUP, ACTIVE = 2, 1, 4

    def __init__(self, out_dir: Path, name: str):
        from torch.profiler import ProfilerActivity, profile, schedule

        self.out_dir, self.name = out_dir, name
        self.cuda = torch.cuda.is_available()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        self.profiler = profile(
            activities=activities,
            schedule=schedule(wait=self.WAIT, warmup=self.WARMUP, active=self.ACTIVE, repeat=1),
            on_trace_ready=self._write,
        )
        self.steps = 0
        self.marks: list[float] = []

    def __enter__(self):
        self.profiler.__enter__()
        return self

    def __exit__(self, *exc):
        return self.profiler.__exit__(*exc)

    def step(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.steps += 1
        if self.steps >= self.WAIT + self.WARMUP:  # the active window's edges
            self.marks.append(time.perf_counter())
        self.profiler.step()

    def on_step_end(self, args, state, control, **kwargs):
        self.step()

    def _write(self, prof) -> None:
        try:
            self._summarise(prof)
        except Exception as error:  # a diagnostic must not cost the measured run
            print(f"profile {self.name}: could not summarise: {error!r}", file=sys.stderr)

    def _summarise(self, prof) -> None:
        events = prof.key_averages()
        sort = "self_device_time_total" if self.cuda else "self_cpu_time_total"
        table = events.table(sort_by=sort, row_limit=40)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"{self.name}.txt").write_text(table)
        wall = self.marks[self.ACTIVE] - self.marks[0] if len(self.marks) > self.ACTIVE else None
        # Kernels only (device-side events): their self time is the device's busy time.
        kernels = [e for e in events if e.device_type.name != "CPU"]
        device_us = sum(e.self_device_time_total for e in kernels)
        syncs = sum(e.count for e in events if e.key == "aten::_local_scalar_dense")
        busy_ms = device_us / 1e3 / self.ACTIVE
        summary = {
            "name": self.name,
            "steps": self.ACTIVE,
            "wall_ms_per_step": round(1e3 * wall / self.ACTIVE, 1) if wall else None,
            "device_busy_ms_per_step": round(busy_ms, 1) if self.cuda else None,
            "host_syncs_per_step": round(syncs / self.ACTIVE, 1),
        }
        if self.cuda:  # many small kernels: launch-bound; few long ones: compute-bound
            summary["kernels_per_step"] = round(sum(e.count for e in kernels) / self.ACTIVE)
        if wall and self.cuda:
            summary["device_busy_share"] = round(device_us / 1e6 / wall, 3)
        with (self.out_dir / "profile.jsonl").open("a") as handle:
            handle.write(json.dumps(summary) + "\n")
        print(f"profile {summary}", file=sys.stderr)


def run_ours(method, model_dir, rows, opts, scratch, profiler=None) -> dict:
    common = {
        "base_model": str(model_dir),
        "per_device_batch_size": opts.batch_size,
        "max_length": opts.max_length,
        "learning_rate": opts.lr,
        "max_steps": opts.steps,
        "checkpoint_every_steps": 0,
        "log_every_steps": 1,
        "seed": opts.seed,
        "compile_model": opts.compile,
    }
    if method == "reward":
        # TRL starts from a random head; fitting ours first (untimed, minutes on a CPU) would
        # cost the bench time without changing what it measures.
        config = RewardConfig(backbone="decoder", head_init="random", **common)
    else:
        config = DPOConfig(use_lora=False, **common)
    events = []

    def progress(event):
        events.append(event)
        if profiler is not None and event.kind == "step":  # one per step: log_every_steps=1
            profiler.step()

    result = run_training(
        method,
        config,
        DatasetSplits(train=rows),
        scratch / f"ours-{method}",
        progress=progress,
        resume=False,
    )
    steps = [e for e in events if e.kind == "step"]
    first, last = steps[opts.warmup_steps - 1], steps[-1]
    seconds = last.elapsed_s - first.elapsed_s
    return {
        "tokens_per_s": (last.tokens - first.tokens) / seconds,
        "steps_per_s": (last.step - first.step) / seconds,
        "dropped_pairs": result.dropped_rows,
        "truncated_pairs": result.truncated_rows,
        "precision": result.precision,
    }


def run_trl(method, model_dir, rows, opts, scratch, profiler=None) -> dict:
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
    if profiler is not None:
        trainer.add_callback(profiler)
    trainer.train()
    tokens_per_s, steps_per_s, _ = clock.rate(opts.warmup_steps)
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
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=1,
        help="first steps of each side left out of the figures (compilation, allocator warm-up)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="our side compiles the model (compile_model=True); TRL stays at its defaults",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="one round per side under torch.profiler; where the time went is written to DIR",
    )
    opts = parser.parse_args()

    if opts.threads:
        torch.set_num_threads(opts.threads)
    if not 1 <= opts.warmup_steps < opts.steps - 1:
        parser.error("--warmup-steps must leave at least two measured steps")
    if opts.profile:
        opts.rounds = 1
        if opts.steps < StepProfiler.WAIT + StepProfiler.WARMUP + StepProfiler.ACTIVE + 1:
            parser.error("--profile needs --steps of at least 8")
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
                profiler = (
                    StepProfiler(opts.profile, f"{opts.method}_{side}") if opts.profile else None
                )
                with profiler or contextlib.nullcontext():
                    result = runner(
                        opts.method,
                        model_dir,
                        rows,
                        opts,
                        scratch / f"round-{round_number}",
                        profiler=profiler,
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
        if opts.compile:
            line["ours_compiled"] = True
        if opts.profile:
            line["profiled"] = True  # the profiler's overhead is in these figures
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
