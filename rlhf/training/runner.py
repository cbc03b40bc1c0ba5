"""``run_training``: the engine's one entry point. Config and data in, result out.

The caller (the platform's worker, the CLI, a benchmark) passes a method name, that method's
config dataclass, the data (an export folder, a .jsonl file or ``DatasetSplits``), an output
folder, and optionally ``progress`` and ``should_stop`` callbacks. Running again with the same
output folder resumes from the newest verified checkpoint, continuing the global step.

Output folder layout::

    config.json                 the config as run (asdict)
    checkpoints/step-00000050/  atomic checkpoints, each with tandem-checkpoint.json
    model/                      the trained model or adapter, tokenizer, tandem-checkpoint.json
    result.json                 the TrainingResult
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rlhf.training import hf
from rlhf.training.checkpoints import MANIFEST
from rlhf.training.config import METHOD_SPECS, METHODS, TrainingConfig, config_from_dict
from rlhf.training.data import DatasetSplits, load_splits
from rlhf.training.loading import quiet_transformers, resolve_device, resolve_precision
from rlhf.training.methods import result_details
from rlhf.training.progress import ProgressEvent, Reporter
from rlhf.training.provenance import library_versions


@dataclass
class Artifact:
    path: str  # relative to the output folder
    sha256: str
    bytes: int


@dataclass
class TrainingResult:
    """What a finished run produced; ``asdict`` of it is stored with the run."""

    method: str
    method_title: str
    global_step: int
    metrics: dict
    artifacts: list[Artifact]
    model_dir: str
    train_rows: int
    validation_rows: int
    test_rows: int
    truncated_rows: int  # rows whose oldest turns (or tokens) were cut to fit max_length
    dropped_rows: int  # rows left out of training (0 by design; reported to prove it)
    unreadable_rows: int  # input rows that did not parse in the expected shape
    chat_template_sha256: str
    base_model: str
    reference_model: str | None
    reward_model: str | None
    device: str
    precision: str
    distributed: str
    resumed_from_step: int | None
    resumed_from_checkpoint: str | None  # manifest sha256 of the checkpoint resumed from
    refused_checkpoints: list  # [name, reason] of newer checkpoints that failed verification
    last_checkpoint: dict | None
    seconds: float
    tokens: int
    tokens_per_s: float | None
    library_versions: dict
    # Method-specific facts: artifact_kind (lora_adapter, full_weights, ...), reward_backbone,
    # value_model_init (PPO), ...
    details: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    # What was actually loaded, per role: architecture, model_type, layers, parameters, source
    # folder (architecture.describe_loaded), so the record says which model was trained.
    loaded_models: list = field(default_factory=list)
    world_size: int = 1  # training processes (accelerate launch: num_processes)


def run_training(
    method: str,
    config: TrainingConfig | dict,
    data: str | Path | DatasetSplits,
    out_dir: str | Path,
    *,
    progress: Callable[[ProgressEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = True,
    trusted_checkpoints: set[str] | None = None,
) -> TrainingResult:
    """Train ``method`` and return its result; raises ``TrainingStopped`` when stopped."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    spec = METHOD_SPECS[method]
    if isinstance(config, dict):
        config = config_from_dict(method, config)
    config.validate()
    out_dir = Path(out_dir)
    device = resolve_device(config.device)
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        import torch

        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    ctx = hf.RunContext(
        method=method,
        config=config,
        splits=load_splits(
            method, data, holdout_fraction=config.holdout_fraction, shape=_data_shape(config)
        ),
        out_dir=out_dir,
        reporter=Reporter(progress, should_stop),
        device=device,
        precision=resolve_precision(config.precision, device),
        resume=resume,
        trusted_checkpoints=trusted_checkpoints,
        method_result=spec.result_class(),
    )
    hf.prepare_out_dir(ctx)
    ctx.reporter.check_stop()
    _write_json(out_dir / "config.json", {"method": method, **asdict(config)})
    started = time.monotonic()
    with quiet_transformers():
        metrics = spec.train(ctx)
    result = _result(ctx, metrics, time.monotonic() - started)
    ctx.reporter.check_stop(result.global_step)
    _write_json(out_dir / "result.json", asdict(result))
    ctx.reporter.emit("end", step=result.global_step, metrics=metrics)
    return result


def _result(ctx: hf.RunContext, metrics: dict, seconds: float) -> TrainingResult:
    facts = ctx.method_result
    model_dir = Path(facts.model_dir or ctx.out_dir / hf.MODEL_DIR)
    artifacts = []
    manifest_path = model_dir / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        for name, digest in sorted(manifest["files"].items()):
            path = model_dir / name
            artifacts.append(
                Artifact(str(path.relative_to(ctx.out_dir)), digest, path.stat().st_size)
            )
    reporter = ctx.reporter
    measured = seconds - ((reporter.first_step_time or 0) - reporter.started)
    rate = None
    if reporter.first_step_time is not None and measured > 0:
        rate = (reporter.tokens - reporter.first_tokens) / measured
    last = ctx.last_checkpoint
    return TrainingResult(
        method=ctx.method,
        method_title=METHOD_SPECS[ctx.method].title,
        global_step=int(facts.global_step),
        metrics=metrics,
        artifacts=artifacts,
        model_dir=str(model_dir),
        train_rows=len(ctx.splits.train),
        validation_rows=len(ctx.splits.validation),
        test_rows=len(ctx.splits.test),
        truncated_rows=ctx.truncated_rows,
        dropped_rows=ctx.dropped_rows,
        unreadable_rows=ctx.splits.unreadable_rows,
        chat_template_sha256=ctx.chat_template_sha256,
        base_model=str(facts.base_model or ctx.config.base_model),
        reference_model=facts.reference_model,
        reward_model=facts.reward_model,
        device=ctx.device,
        precision=ctx.precision,
        distributed=ctx.config.distributed,
        resumed_from_step=ctx.resumed_from.global_step if ctx.resumed_from else None,
        resumed_from_checkpoint=ctx.resumed_from.manifest_sha256 if ctx.resumed_from else None,
        refused_checkpoints=[list(item) for item in ctx.refused_checkpoints],
        last_checkpoint=None
        if last is None
        else {
            "path": str(last.path),
            "global_step": last.global_step,
            "manifest_sha256": last.manifest_sha256,
        },
        seconds=seconds,
        tokens=reporter.tokens,
        tokens_per_s=rate,
        library_versions=library_versions(),
        details=result_details(facts),
        config=asdict(ctx.config),
        loaded_models=list(ctx.loaded_models),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
    )


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process under a launcher
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def _data_shape(config) -> str | None:
    """The export shape a run reads when not its method's own: rubric scores for a reward
    model trained on them."""
    return "score" if getattr(config, "reward_target", "pairs") == "scores" else None
