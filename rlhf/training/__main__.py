"""Command line: train, evaluate a reward model, or print a method's config schema.

    python -m rlhf.training <method> --config run.json --data <export dir or .jsonl> --out <dir>
    python -m rlhf.training evaluate-reward --model <dir> --data <file.jsonl>
    python -m rlhf.training schema <method>
    python -m rlhf.training probe --device auto --distributed none --num-processes 1

Progress events go to stderr as JSON lines (to ``--events FILE`` instead when given, as the
platform's worker asks); the last line on stdout is the result as JSON. A config with
``distributed`` set re-runs this command under ``accelerate launch`` (see launch.py).
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
    from rlhf.training import launch
    from rlhf.training.runner import run_training

    launch.watch_parent()
    values = json.loads(Path(args.config).read_text())
    values.pop("method", None)
    config = config_from_dict(args.method, values)
    if config.distributed != "none" and not launch.under_launcher():
        extra = []
        if args.events:
            extra += ["--events", args.events]
        if args.trusted_checkpoints:
            extra += ["--trusted-checkpoints", args.trusted_checkpoints]
        command = launch.train_command(
            args.method, Path(args.config), args.data, args.out, config, extra=extra
        )
        # The launched processes run in sessions of their own: they watch this process.
        os.environ[launch.WATCH_ENV] = str(os.getpid())
        return subprocess.call(command)  # noqa: S603 (our own interpreter and module)
    trusted = None
    if args.trusted_checkpoints:
        trusted = set(json.loads(Path(args.trusted_checkpoints).read_text()))
    progress = launch.EventFile(Path(args.events)) if args.events else _print_event
    try:
        result = run_training(
            args.method, config, args.data, args.out, progress=progress, trusted_checkpoints=trusted
        )
    except Exception as exc:
        launch.write_failure(Path(args.out), exc)
        raise
    if launch.rank() == 0:
        print(json.dumps(asdict(result), default=str))
    return 0


def _probe(args) -> int:
    from rlhf.training.launch import probe

    try:
        device = probe(args.device, args.distributed, args.num_processes)
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 2
    print(json.dumps({"device": device}))
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
        sub.add_argument("--events", help="append progress events to this file (JSON lines)")
        sub.add_argument(
            "--trusted-checkpoints",
            help="JSON list of checkpoint manifest sha256s that may be resumed (default: any)",
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
    probe = commands.add_parser("probe", help="the device this machine gives a run, as JSON")
    probe.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    probe.add_argument("--distributed", default="none")
    probe.add_argument("--num-processes", type=int, default=1)
    probe.set_defaults(run=_probe)
    schema = commands.add_parser("schema", help="print a method's config fields as JSON")
    schema.add_argument("method", choices=METHODS)
    schema.set_defaults(run=lambda a: print(json.dumps(config_schema(a.method), indent=2)) or 0)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
