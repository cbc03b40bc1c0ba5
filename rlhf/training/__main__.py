"""Command line: train, evaluate a reward model, or print a method's config schema.

    python -m rlhf.training <method> --config run.json --data <export dir or .jsonl> --out <dir>
    python -m rlhf.training evaluate-reward --model <dir> --data <file.jsonl>
    python -m rlhf.training schema <method>

Progress events go to stderr as JSON lines; the last line on stdout is the result as JSON.
A config with ``distributed`` set re-runs this command under ``accelerate launch``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rlhf.training.config import METHODS, config_from_dict, config_schema


def _print_event(event) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(event.to_dict(), default=str), file=sys.stderr, flush=True)


def _train(args) -> int:
    from rlhf.training.launch import train_command, under_launcher
    from rlhf.training.runner import run_training

    values = json.loads(Path(args.config).read_text())
    values.pop("method", None)
    config = config_from_dict(args.method, values)
    if config.distributed != "none" and not under_launcher():
        command = train_command(args.method, Path(args.config), args.data, args.out, config)
        return subprocess.call(command)  # noqa: S603 (our own interpreter and module)
    result = run_training(args.method, config, args.data, args.out, progress=_print_event)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(asdict(result), default=str))
    return 0


def _evaluate_reward(args) -> int:
    from rlhf.training.evaluation import evaluate_reward

    result = evaluate_reward(
        args.model,
        args.data,
        max_length=args.max_length,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
    )
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhf.training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for method in METHODS:
        sub = commands.add_parser(method, help=f"train with {method}")
        sub.add_argument("--config", required=True, help="JSON file of the method's config")
        sub.add_argument("--data", required=True, help="export folder or .jsonl file")
        sub.add_argument(
            "--out", required=True, help="output folder (resumes if it has checkpoints)"
        )
        sub.set_defaults(method=method, run=_train)
    evaluate = commands.add_parser("evaluate-reward", help="pairwise accuracy of a reward model")
    evaluate.add_argument("--model", required=True, help="reward model folder")
    evaluate.add_argument("--data", required=True, help="preference .jsonl (HH-RLHF or TRL shape)")
    evaluate.add_argument("--max-length", type=int, default=512)
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    evaluate.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "bf16", "fp16", "fp32"],
        help="auto: bf16 where the hardware computes it natively (as in training)",
    )
    evaluate.set_defaults(run=_evaluate_reward)
    schema = commands.add_parser("schema", help="print a method's config fields as JSON")
    schema.add_argument("method", choices=METHODS)
    schema.set_defaults(run=lambda a: print(json.dumps(config_schema(a.method), indent=2)) or 0)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
