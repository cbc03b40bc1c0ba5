"""Commands that start a run: one process, or several through ``accelerate launch``.

The platform's worker never trains in its own process: it runs ``attempt_command`` as a child
(its own process group) and reads what the child reports through files in the attempt folder:

    events.jsonl          progress events, one JSON object a line (process 0 only)
    result.json           the TrainingResult, written last (runner.run_training)
    failure-rank<N>.json  {"error", "traceback"} of a process that raised
    train.log             everything the processes printed

A config whose ``distributed`` is ``ddp``, ``fsdp`` or ``deepspeed`` runs as ``num_processes``
processes under ``accelerate launch`` (accelerate's own launcher, torch elastic underneath);
the strategy itself reaches each process's Trainer through the training arguments (``fsdp`` /
``deepspeed`` in ``hf.trainer_arguments``), so the launcher needs no accelerate config file.
Every process runs the same CLI; inside a launched process (``LOCAL_RANK`` set) the CLI trains
instead of launching again.

Orphans: torch elastic starts each rank in a session of its own, so killing the child's
process group does not reach the ranks. The worker therefore also kills, and waits out,
every process whose environment carries the attempt's ``TANDEM_ATTEMPT_TOKEN`` before it
releases the run. And each engine process watches one pid (``TANDEM_WATCH_PID``): the top CLI
process watches the worker, the ranks watch the top CLI process, and a process whose watched
pid is gone kills its own process group (so a worker killed outright leaves no orphan).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from rlhf.training.config import TrainingConfig

EVENTS_FILE = "events.jsonl"
RESULT_FILE = "result.json"
LOG_FILE = "train.log"
FAILURE_GLOB = "failure-rank*.json"
WATCH_ENV = "TANDEM_WATCH_PID"
ATTEMPT_ENV = "TANDEM_ATTEMPT_TOKEN"  # marks every process of one attempt (the worker kills them)
# Strategies that shard the model; both are configured for CUDA GPUs only.
GPU_STRATEGIES = ("fsdp", "deepspeed")


def under_launcher() -> bool:
    return "LOCAL_RANK" in os.environ or "RANK" in os.environ


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size(config: TrainingConfig) -> int:
    return config.num_processes if config.distributed != "none" else 1


def free_port() -> int:
    """A TCP port free right now, for one launch's rendezvous (two runs never share one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_command(
    method: str,
    config_file: Path,
    data: str | Path,
    out_dir: str | Path,
    config: TrainingConfig,
    *,
    extra: list[str] | None = None,
    port: int | None = None,
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
        *(extra or []),
    ]
    if config.distributed == "none":
        return [sys.executable, *cli]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",  # `accelerate launch`, run by this interpreter
        "--multi_gpu",  # multi-process: NCCL on GPUs, gloo on a CPU (the Trainer picks)
        "--num_machines",
        "1",
        "--num_processes",
        str(config.num_processes),
        "--main_process_port",
        str(port or free_port()),
        "--mixed_precision",
        "no",  # the Trainer applies the configured precision itself
        "--dynamo_backend",
        "no",
        *cli,
    ]


def attempt_command(
    method: str, config_file: Path, data: str | Path, out_dir: Path, trusted_file: Path
) -> list[str]:
    """The child the platform's worker runs for one attempt (see the module docstring)."""
    return [
        sys.executable,
        "-m",
        "rlhf.training",
        method,
        "--config",
        str(config_file),
        "--data",
        str(data),
        "--out",
        str(out_dir),
        "--events",
        str(out_dir / EVENTS_FILE),
        "--trusted-checkpoints",
        str(trusted_file),
    ]


def probe_command(config: dict) -> list[str]:
    """A short child that resolves the device a run asks for (the worker never imports torch)."""
    return [
        sys.executable,
        "-m",
        "rlhf.training",
        "probe",
        "--device",
        str(config.get("device", "auto")),
        "--distributed",
        str(config.get("distributed", "none")),
        "--num-processes",
        str(config.get("num_processes", 1)),
    ]


def probe(device: str, distributed: str, num_processes: int) -> str:
    """Describe the device this machine gives a run; ValueError when it cannot run at all."""
    import importlib.util

    import torch

    from rlhf.training.loading import resolve_device

    resolved = resolve_device(device)
    if distributed in GPU_STRATEGIES and resolved != "cuda":
        raise ValueError(f"distributed '{distributed}' needs CUDA GPUs; on a CPU use 'ddp'")
    if distributed == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise ValueError("distributed 'deepspeed' needs the optional deepspeed package")
    if resolved == "cuda":
        count = torch.cuda.device_count()
        if distributed != "none" and num_processes > count:
            raise ValueError(f"num_processes {num_processes} > the {count} visible GPUs")
        return f"cuda: {torch.cuda.get_device_name()}"
    return resolved


def watch_parent() -> None:
    """Kill this process group once the pid in TANDEM_WATCH_PID is gone (see the docstring)."""
    watched = os.environ.get(WATCH_ENV)
    if not watched:
        return
    pid = int(watched)

    def loop():
        while True:
            time.sleep(1.0)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os.killpg(os.getpgid(0), signal.SIGKILL)
            except PermissionError:  # alive, owned by someone else (cannot be ours: stop)
                return

    threading.Thread(target=loop, name="tandem-watch-parent", daemon=True).start()


def write_failure(out_dir: Path, exc: BaseException) -> None:
    """Record a raised exception for the worker (each process its own file)."""
    import traceback

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"failure-rank{rank()}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    text = "".join(traceback.format_exception(exc))[-4000:]
    tmp.write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}", "traceback": text}))
    os.replace(tmp, path)


class EventFile:
    """The ``progress`` callback of a launched engine: events appended as JSON lines."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, event) -> None:
        if rank() != 0:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event.to_dict(), default=str) + "\n")
