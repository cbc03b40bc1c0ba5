"""Commands that start a run: one process, or several through ``accelerate launch``.

A config whose ``distributed`` is ``ddp``, ``fsdp`` or ``deepspeed`` runs as ``num_processes``
processes under ``accelerate launch --multi_gpu``; the strategy itself reaches each process's
Trainer through the training arguments (``fsdp`` / ``deepspeed`` in ``hf.trainer_arguments``),
so the launcher needs no accelerate config file. Every process runs the same CLI; inside a
launched process (``LOCAL_RANK`` set) the CLI trains instead of launching again.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rlhf.training.config import TrainingConfig


def under_launcher() -> bool:
    return "LOCAL_RANK" in os.environ or "RANK" in os.environ


def train_command(
    method: str, config_file: Path, data: str | Path, out_dir: str | Path, config: TrainingConfig
) -> list[str]:
    """The argv that runs this training, launched across processes when the config asks."""
    cli = [
        "-m",
        "rlhf.training",
        method,
        "--config",
        str(config_file),
        "--data",
        str(data),
        "--out",
        str(out_dir),
    ]
    if config.distributed == "none":
        return [sys.executable, *cli]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_machines",
        "1",
        "--num_processes",
        str(config.num_processes),
        "--mixed_precision",
        "no",  # the Trainer applies the configured precision itself
        "--dynamo_backend",
        "no",
        *cli,
    ]
