"""What the TRL-based methods share: trainer arguments, progress, checkpoints, resume, saving.

TRL's trainers run the optimisation; this module wires them to Tandem's contract:
- every TRL/transformers knob that matters is set explicitly from the method's config;
- a ``TandemCallback`` reports progress, asks ``should_stop`` before each step and each write,
  and turns each Trainer checkpoint into an atomic, hashed Tandem checkpoint;
- batches are grouped by length through a seeded sampler (``LengthGroupedMixin``);
- the final model is written to a staging folder and renamed into place with its manifest.
"""

from __future__ import annotations

import shutil
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

from rlhf.training import checkpoints
from rlhf.training.architecture import describe_loaded, loaded_line
from rlhf.training.config import TrainingConfig
from rlhf.training.data import DatasetSplits
from rlhf.training.methods import MethodResult
from rlhf.training.progress import Reporter, TrainingStopped
from rlhf.training.sampling import LengthGroupedSampler

HF_STAGING = ".staging-hf"
MODEL_DIR = "model"


@dataclass
class RunContext:
    """Everything a method's ``train`` function needs; built by ``runner.run_training``."""

    method: str
    config: TrainingConfig
    splits: DatasetSplits
    out_dir: Path
    reporter: Reporter
    device: str
    precision: str
    resume: bool = True
    trusted_checkpoints: set[str] | None = None
    # Filled in while training:
    truncated_rows: int = 0
    dropped_rows: int = 0
    chat_template_sha256: str = ""
    resumed_from: checkpoints.CheckpointInfo | None = None
    refused_checkpoints: list = field(default_factory=list)
    resume_checked: bool = False  # resume_point looked (hashes are verified once)
    last_checkpoint: checkpoints.CheckpointInfo | None = None
    method_result: MethodResult = field(default_factory=MethodResult)  # facts for the result
    loaded_models: list = field(default_factory=list)  # architecture.describe_loaded records

    @property
    def checkpoints_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def record_loaded(self, model, *, role: str, source) -> None:
        """Name what was loaded for ``role`` in the log and the result (architecture,
        parameters, folder), so a run's record says which model it trained."""
        info = describe_loaded(model, role=role, source=source)
        self.loaded_models.append(info)
        self.reporter.emit("log", message=loaded_line(info))

    def checkpoint_meta(self) -> dict:
        return {"method": self.method, "chat_template_sha256": self.chat_template_sha256}


def trainer_arguments(ctx: RunContext, *, has_eval: bool) -> dict:
    """Keyword arguments shared by every TRL config class, all set explicitly."""
    config = ctx.config
    kwargs = {
        "output_dir": str(ctx.out_dir / HF_STAGING),
        "per_device_train_batch_size": config.per_device_batch_size,
        "per_device_eval_batch_size": config.per_device_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "learning_rate": config.learning_rate,
        "num_train_epochs": config.num_epochs,
        "max_steps": config.max_steps,
        "warmup_steps": config.warmup_steps,
        "lr_scheduler_type": config.lr_scheduler,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "seed": config.seed,
        "data_seed": config.seed,
        "bf16": ctx.precision == "bf16",
        "fp16": ctx.precision == "fp16",
        "use_cpu": ctx.device == "cpu",
        # transformers 5 renamed gradient_checkpointing; setting the new name overrides TRL's
        # default of True.
        "activation_checkpointing": config.gradient_checkpointing,
        "torch_compile": config.compile_model,
        "logging_steps": config.log_every_steps,
        "logging_first_step": True,
        "save_strategy": "steps" if config.checkpoint_every_steps else "no",
        "save_steps": config.checkpoint_every_steps or 500,
        "save_total_limit": None,
        "save_only_model": False,
        "eval_strategy": "steps" if has_eval and config.eval_every_steps else "no",
        "eval_steps": config.eval_every_steps or None,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": config.dataloader_num_workers,
        "remove_unused_columns": False,
        "push_to_hub": False,
    }
    if config.distributed == "fsdp":
        kwargs["fsdp"] = "full_shard auto_wrap"
    elif config.distributed == "deepspeed":
        kwargs["deepspeed"] = deepspeed_config(config.deepspeed_zero_stage, ctx.precision)
    if config.distributed == "ddp":
        kwargs["ddp_find_unused_parameters"] = False
    return kwargs


def deepspeed_config(stage: int, precision: str) -> dict:
    """A DeepSpeed config whose sizes come from the Trainer ('auto'), with the chosen ZeRO stage."""
    return {
        "zero_optimization": {"stage": stage, "overlap_comm": True},
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16"},
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
    }


class CountingCollator:
    """Wraps a collator and remembers each batch's real (non-padding) token count, in order."""

    def __init__(self, collator):
        self.collator = collator
        self.counts: deque[int] = deque()

    def __call__(self, examples):
        batch = self.collator(examples)
        mask = batch.get("attention_mask") if hasattr(batch, "get") else None
        if isinstance(mask, torch.Tensor):
            self.counts.append(int(mask.sum()))
        return batch

    def take(self, batches: int) -> int:
        total = 0
        for _ in range(min(batches, len(self.counts))):
            total += self.counts.popleft()
        return total


class LengthGroupedMixin:
    """Replaces the Trainer's random sampler with the seeded length-grouped one."""

    tandem_lengths: list[int] | None = None

    def _get_train_sampler(self, train_dataset=None):
        if self.tandem_lengths is None:
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if len(dataset) != len(self.tandem_lengths):
            raise RuntimeError("the training rows changed after their lengths were measured")
        return LengthGroupedSampler(
            self.tandem_lengths, self.args.per_device_train_batch_size, seed=self.args.seed
        )


class TandemCallback(TrainerCallback):
    """Progress, cancellation and atomic checkpoints for a transformers/TRL Trainer."""

    def __init__(self, ctx: RunContext, collator: CountingCollator | None = None):
        self.ctx = ctx
        self.collator = collator
        self.last_num_tokens: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.ctx.reporter.total_steps = state.max_steps
        self.ctx.reporter.emit("start", step=state.global_step, total_steps=state.max_steps)

    def on_step_begin(self, args, state, control, **kwargs):
        self.ctx.reporter.check_stop(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.collator is not None:
            world = max(1, args.world_size)
            self.ctx.reporter.add_tokens(
                self.collator.take(args.gradient_accumulation_steps) * world
            )
        self.ctx.reporter.check_stop(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        logs = dict(logs)
        if self.collator is None and "num_tokens" in logs:
            # Online trainers collate prompts only; TRL counts the real tokens it processed.
            if self.last_num_tokens is not None:
                self.ctx.reporter.add_tokens(int(logs["num_tokens"] - self.last_num_tokens))
            self.last_num_tokens = logs["num_tokens"]
        if any(key.startswith("eval_") for key in logs):
            self.ctx.reporter.emit("eval", step=state.global_step, metrics=_floats(logs))
        elif "loss" in logs:
            loss = logs.pop("loss")
            self.ctx.reporter.step(state.global_step, loss=float(loss), metrics=_floats(logs))

    def on_save(self, args, state, control, **kwargs):
        staging = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        # Every process writes its own RNG state into the folder: all must be done before
        # process 0 seals and renames it.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
        if not state.is_world_process_zero:
            return
        try:
            # A fenced-off attempt must not publish: look once more before the commit.
            self.ctx.reporter.check_stop(state.global_step)
        except TrainingStopped:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        info = checkpoints.commit(
            staging,
            self.ctx.checkpoints_dir,
            global_step=state.global_step,
            meta=self.ctx.checkpoint_meta(),
        )
        checkpoints.prune(self.ctx.checkpoints_dir, self.ctx.config.keep_checkpoints)
        self.ctx.last_checkpoint = info
        self.ctx.reporter.emit(
            "checkpoint",
            step=state.global_step,
            checkpoint={
                "path": str(info.path),
                "global_step": info.global_step,
                "manifest_sha256": info.manifest_sha256,
            },
        )


def _floats(logs: dict) -> dict:
    return {k: float(v) for k, v in logs.items() if isinstance(v, int | float)}


def prepare_out_dir(ctx: RunContext) -> None:
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    checkpoints.sweep_staging(ctx.out_dir)
    checkpoints.sweep_staging(ctx.checkpoints_dir)
    shutil.rmtree(ctx.out_dir / HF_STAGING, ignore_errors=True)


def resume_point(ctx: RunContext) -> str | None:
    """The newest verified checkpoint to resume from (None: start fresh); checked once per run."""
    if not ctx.resume:
        return None
    if ctx.resume_checked:
        return str(ctx.resumed_from.path) if ctx.resumed_from else None
    ctx.resume_checked = True
    info, refused = checkpoints.latest_valid(ctx.checkpoints_dir, trusted=ctx.trusted_checkpoints)
    ctx.refused_checkpoints = refused
    for name, reason in refused:
        ctx.reporter.emit("log", message=f"checkpoint {name} refused: {reason}")
    if info is None:
        return None
    ctx.resumed_from = info
    ctx.reporter.emit("log", step=info.global_step, message=f"resuming from {info.path.name}")
    return str(info.path)


def silence(trainer) -> None:
    """Drop the Trainer's printing callbacks: progress goes through TandemCallback only."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


class _CheckpointAlreadyFinished(Exception):
    pass


class _FinishedCheckpointGuard(TrainerCallback):
    """Stops a run resumed from a checkpoint taken at max_steps before it trains.

    HF's loop checks max_steps only after a step, so resuming from a checkpoint at max_steps
    mid-epoch (a worker killed between the final checkpoint and the saved model) trained one
    step past it. ``on_train_begin`` runs after the checkpoint's weights, optimizer and state are
    loaded and before any batch, on every process alike, so raising here stops all of them."""

    def on_train_begin(self, args, state, control, **kwargs):
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            raise _CheckpointAlreadyFinished


def train(trainer, ctx: RunContext) -> None:
    """Run ``trainer`` from the newest valid checkpoint (or from scratch)."""
    silence(trainer)
    if not ctx.loaded_models:
        # A method that did not name what it loaded still names the model it trains.
        model = trainer.model
        unwrap = getattr(model, "get_base_model", None)  # a peft model: the model under it
        ctx.record_loaded(
            unwrap() if unwrap else model, role="trained model", source=ctx.config.base_model
        )
    trainer.add_callback(_FinishedCheckpointGuard())
    try:
        trainer.train(resume_from_checkpoint=resume_point(ctx))
    except _CheckpointAlreadyFinished:
        # The checkpoint's weights are loaded (the Trainer loads them before training begins):
        # go on to evaluate and save them, as the attempt that wrote it would have.
        ctx.reporter.emit(
            "log",
            step=trainer.state.global_step,
            message=f"the checkpoint is at max_steps ({trainer.state.max_steps}): nothing to train",
        )
    ctx.method_result.global_step = trainer.state.global_step
    shutil.rmtree(ctx.out_dir / HF_STAGING, ignore_errors=True)


def save_final(trainer, ctx: RunContext, *, meta: dict | None = None) -> Path:
    """Write the trained model (or adapter) with its tokenizer and manifest, atomically."""
    ctx.reporter.check_stop(trainer.state.global_step)
    staging = ctx.out_dir / ".staging-model"
    if trainer.args.should_save:
        shutil.rmtree(staging, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    # Every process takes part: FSDP and DeepSpeed gather the sharded weights here.
    trainer.save_model(str(staging))
    if trainer.args.should_save:
        if getattr(trainer, "processing_class", None) is not None:
            trainer.processing_class.save_pretrained(str(staging))
        return publish_model(staging, ctx, meta=meta)
    return ctx.out_dir / MODEL_DIR


def publish_model(staging: Path, ctx: RunContext, *, meta: dict | None = None) -> Path:
    ctx.reporter.check_stop()
    checkpoints.write_manifest(staging, {**ctx.checkpoint_meta(), **(meta or {})})
    checkpoints._fsync_tree(staging)
    target = ctx.out_dir / MODEL_DIR
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


def final_loss(trainer) -> float | None:
    for entry in reversed(trainer.state.log_history):
        if "loss" in entry:
            return float(entry["loss"])
        if "train_loss" in entry:
            return float(entry["train_loss"])
    return None


def train_policy(trainer, ctx: RunContext) -> dict:
    """Train a preference-tuned policy (DPO, KTO), evaluate it on its held-out rows, save it:
    the metrics the run records."""
    train(trainer, ctx)
    metrics = {"train_loss": final_loss(trainer)}
    if trainer.eval_dataset is not None:
        evaluation = trainer.evaluate()
        metrics["validation"] = {k: float(v) for k, v in evaluation.items()}
    ctx.method_result.model_dir = str(save_policy(trainer, ctx))
    return metrics


def save_policy(trainer, ctx: RunContext) -> Path:
    """Save a trained policy: a LoRA adapter over a full-weight parent, else full weights.

    A parent that is itself an adapter was merged into its base on load, so an adapter trained
    on top of it would have no folder to sit on: it is merged and saved as full weights.
    """
    from peft import PeftModel

    from rlhf.training.loading import is_adapter_folder

    parent = Path(ctx.config.base_model).resolve()
    if isinstance(trainer.model, PeftModel):
        if is_adapter_folder(parent):
            trainer.model = trainer.model.merge_and_unload()
            kind = "full_weights_merged"
        else:
            kind = "lora_adapter"
    else:
        kind = "full_weights"
    ctx.method_result.artifact_kind = kind
    return save_final(trainer, ctx, meta={"kind": kind, "parent": str(parent)})
