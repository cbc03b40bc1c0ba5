"""One configuration dataclass per training method, every field documented.

A run stores ``asdict(config)`` whole, so any run can be reproduced from its record. Each field's
``metadata`` carries ``help`` (meaning, unit, why the default) and, where it applies, ``choices``
or ``min``/``max``: the platform's form renders and validates fields from ``config_schema``.

Defaults train SmolLM2-135M on a 2-core CPU in minutes: bf16 autocast where the hardware has it
(measured 1.75x faster than fp32 here), no gradient checkpointing (it costs ~25% of the step time
and is only worth it when activations do not fit in memory), batches grouped by length.
TRL's own configs default to ``bf16=True`` and ``gradient_checkpointing=True`` even on a CPU;
every value we hand to TRL is set explicitly from these dataclasses.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rlhf.training.methods import MethodSpec, PPOResult, RewardModelResult


class ConfigError(ValueError):
    """A configuration value is out of range or of the wrong type; ``errors`` maps field to text."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def _f(default: Any, help: str, **extra: Any):
    """A documented dataclass field; a list or dict default gets a factory (never shared)."""
    metadata = {"help": help, **extra}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: json.loads(json.dumps(default)), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainingConfig:
    """Fields every method shares. Subclasses only change defaults and add their own knobs."""

    accepts_seq2seq: ClassVar[bool] = False
    """Trains an encoder-decoder (seq2seq, T5-family) base as well as decoders (SFT only)."""

    # --- model -------------------------------------------------------------------------------
    base_model: str = _f(
        "",
        "Folder of the model to start from (the parent version): safetensors weights, a config "
        "and a tokenizer, or a LoRA adapter folder (adapter_config.json) whose base is merged in "
        "first. Remote code is never run. Required, except for an encoder reward model, whose "
        "empty value means the packaged all-MiniLM-L6-v2.",
    )
    # --- optimisation ------------------------------------------------------------------------
    learning_rate: float = _f(
        1e-4, "Peak AdamW learning rate (per step, unitless).", min=0.0, max=1.0, exclusive_min=True
    )
    num_epochs: float = _f(
        1.0, "Passes over the training split (may be fractional).", min=0.0, exclusive_min=True
    )
    max_steps: int = _f(
        -1,
        "Optimizer steps to run; -1 derives it from num_epochs. Set it to bound a run's time.",
        min=-1,
    )
    per_device_batch_size: int = _f(
        8,
        "Examples (pairs for preference methods, prompts for online methods) per device per "
        "micro-step. 8 keeps SmolLM2-135M at a few seconds per step on a 2-core CPU.",
        min=1,
        max=4096,
    )
    gradient_accumulation_steps: int = _f(
        1, "Micro-steps whose gradients add up to one optimizer step.", min=1, max=1024
    )
    max_length: int = _f(
        512,
        "Longest tokenised sequence (prompt + answer), in tokens. Longer conversations lose "
        "their oldest turns first (left truncation), so the latest turns and the answer stay; "
        "no row is dropped. 512 keeps 96% of HH-RLHF pairs whole with SmolLM2's tokenizer.",
        min=16,
        max=131072,
    )
    warmup_steps: float = _f(
        0.0,
        "Linear learning-rate warm-up: optimizer steps if >= 1, else a fraction of all steps.",
        min=0.0,
    )
    lr_scheduler: str = _f(
        "linear",
        "Learning-rate schedule after warm-up.",
        choices=["linear", "cosine", "constant", "constant_with_warmup"],
    )
    weight_decay: float = _f(0.0, "AdamW decoupled weight decay (unitless).", min=0.0, max=1.0)
    max_grad_norm: float = _f(
        1.0, "Gradient clipping threshold (L2 norm); 0 disables clipping.", min=0.0
    )
    seed: int = _f(42, "Seed for weights of new heads/adapters, data order and sampling.", min=0)
    # --- LoRA --------------------------------------------------------------------------------
    use_lora: bool = _f(
        False,
        "Train a LoRA adapter (peft) instead of every weight: far less optimizer memory and a "
        "small artifact.",
    )
    lora_r: int = _f(16, "LoRA rank (dimensions of the low-rank update).", min=1, max=1024)
    lora_alpha: int = _f(32, "LoRA scaling numerator; the update is scaled by alpha / r.", min=1)
    lora_dropout: float = _f(0.05, "Dropout on the LoRA input (probability).", min=0.0, max=0.9)
    lora_target_modules: list = _f(  # noqa: RUF009 (_f gives lists a default_factory)
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "Module names that receive LoRA adapters (Llama/SmolLM2 naming). 'all-linear' as the only "
        "entry lets peft pick every linear layer.",
    )
    # --- speed and memory --------------------------------------------------------------------
    precision: str = _f(
        "auto",
        "Compute precision. 'auto' uses bf16 autocast where the device supports it (CPUs with "
        "AVX512-BF16 or AMX, GPUs from Ampere on) and fp32 elsewhere; weights and optimizer "
        "state stay fp32 either way.",
        choices=["auto", "bf16", "fp16", "fp32"],
    )
    gradient_checkpointing: bool = _f(
        False,
        "Recompute activations in the backward pass: saves memory, costs ~25% more compute. Off "
        "unless activations do not fit.",
    )
    compile_model: bool = _f(
        False,
        "Compile the model with torch.compile (TorchInductor), which fuses its many small "
        "kernels: meant for GPUs held back by per-kernel overhead (small models, short "
        "sequences). The first steps pay a one-time compile. Off by default: on a 2-core CPU, "
        "SmolLM2-135M reward-model steps ran 8% faster after about 4 minutes of compiling. SFT, "
        "reward models and DPO only.",
        methods=["sft", "reward", "dpo"],
    )
    group_by_length: bool = _f(
        True,
        "Build batches from examples of similar length (shuffled groups), so little compute is "
        "spent on padding; the order is still random across batches and reproducible per seed.",
    )
    dataloader_num_workers: int = _f(
        0, "Worker processes that collate batches; 0 collates in the training process.", min=0
    )
    # --- devices -----------------------------------------------------------------------------
    device: str = _f(
        "auto", "Where to train: 'auto' picks CUDA when present.", choices=["auto", "cpu", "cuda"]
    )
    distributed: str = _f(
        "none",
        "Multi-process strategy; the run is started with `accelerate launch` (launch.py). "
        "'ddp' replicates the model in each process (GPUs, or gloo on a CPU); 'fsdp' and "
        "'deepspeed' (ZeRO, an optional extra) shard it and are configured for CUDA GPUs "
        "only. PPO trains in one process ('none'). See docs/scale-out.md.",
        choices=["none", "ddp", "fsdp", "deepspeed"],
        multi_gpu=True,
    )
    num_processes: int = _f(
        1,
        "Processes for a distributed run (one per GPU; on a CPU each takes its share of the "
        "cores). The global batch is per_device_batch_size x gradient_accumulation_steps x "
        "num_processes.",
        min=1,
        max=1024,
        multi_gpu=True,
    )
    deepspeed_zero_stage: int = _f(
        2,
        "DeepSpeed ZeRO stage: 2 shards optimizer state and gradients, 3 also weights.",
        choices=[1, 2, 3],
        multi_gpu=True,
    )
    # --- checkpoints, logging, evaluation ----------------------------------------------------
    checkpoint_every_steps: int = _f(
        50,
        "Optimizer steps between atomic checkpoints (model, optimizer, scheduler, RNG, data "
        "position); 0 writes none. A killed run resumes from the newest complete one.",
        min=0,
    )
    keep_checkpoints: int = _f(
        2,
        "Complete checkpoints kept; 2 leaves one to fall back to if the newest is damaged.",
        min=1,
    )
    log_every_steps: int = _f(1, "Optimizer steps between progress reports.", min=1)
    eval_every_steps: int = _f(
        0,
        "Optimizer steps between evaluations on the validation split; 0: at the end only.",
        min=0,
    )
    max_eval_examples: int = _f(
        512, "Validation examples evaluated at most (keeps evaluation time bounded).", min=1
    )
    holdout_fraction: float = _f(
        0.1,
        "When the data is one .jsonl file without splits, this fraction of rows (chosen by a "
        "hash of the row, so stable) becomes the validation split.",
        min=0.0,
        max=0.5,
    )

    def validate(self) -> None:
        """Raise ConfigError listing every field that is out of range or of the wrong type."""
        errors: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            if isinstance(f.default, bool) and not isinstance(value, bool):
                errors[f.name] = "must be true or false"
                continue
            if isinstance(f.default, int | float) and not isinstance(f.default, bool):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    errors[f.name] = "must be a number"
                    continue
                if isinstance(value, float) and not math.isfinite(value):
                    errors[f.name] = "must be finite"
                    continue
                whole = isinstance(f.default, int) and not isinstance(f.default, bool)
                if whole and isinstance(value, float) and not value.is_integer():
                    errors[f.name] = "must be a whole number"
                    continue
                low, high = meta.get("min"), meta.get("max")
                if low is not None and (
                    value < low or (meta.get("exclusive_min") and value == low)
                ):
                    errors[f.name] = f"must be {'>' if meta.get('exclusive_min') else '>='} {low}"
                elif high is not None and value > high:
                    errors[f.name] = f"must be <= {high}"
            if "choices" in meta and value not in meta["choices"]:
                errors[f.name] = f"must be one of {meta['choices']}"
            if isinstance(f.default, str) and "choices" not in meta and not isinstance(value, str):
                errors[f.name] = "must be text"
        if not isinstance(self.lora_target_modules, list) or not all(
            isinstance(m, str) and m for m in self.lora_target_modules
        ):
            errors["lora_target_modules"] = "must be a list of module names"
        if self.distributed != "none" and self.num_processes < 2:
            errors.setdefault("num_processes", "a distributed run needs at least 2 processes")
        if self.distributed == "none" and self.num_processes != 1:
            errors.setdefault("num_processes", "must be 1 unless distributed is set")
        if self.distributed in ("fsdp", "deepspeed") and self.device == "cpu":
            errors.setdefault(
                "distributed", f"'{self.distributed}' needs CUDA GPUs; use 'ddp' on a CPU"
            )
        errors.update(self._validate_method())
        if "base_model" not in errors and not self.accepts_seq2seq and is_seq2seq(self.base_model):
            errors["base_model"] = (
                "an encoder-decoder (seq2seq) model: only SFT trains one; this method needs a "
                "decoder (causal LM)"
            )
        if errors:
            raise ConfigError(errors)

    def _validate_method(self) -> dict[str, str]:
        return {}


@dataclass
class SFTConfig(TrainingConfig):
    """Supervised fine-tuning on demonstrations and corrections (``messages`` rows)."""

    learning_rate: float = _f(
        2e-4,
        "Peak AdamW learning rate. 2e-4 suits LoRA; use ~2e-5 for full fine-tuning.",
        min=0.0,
        max=1.0,
        exclusive_min=True,
    )
    use_lora: bool = _f(True, "Train a LoRA adapter instead of every weight (see TrainingConfig).")
    assistant_only_loss: bool = _f(
        True,
        "Compute the loss on the final assistant answer only (earlier turns are context), so "
        "the model learns to answer rather than to write the user's side of the conversation.",
    )
    eval_generations: int = _f(
        16,
        "Held-out corrections the final model answers for BLEU/ROUGE against the reference "
        "answer (0 skips generation: it is the slowest part of SFT evaluation on a CPU).",
        min=0,
    )
    eval_max_new_tokens: int = _f(
        64, "Tokens generated at most per held-out prompt for BLEU/ROUGE.", min=1, max=4096
    )

    # An encoder-decoder base (T5-family) trains with the same fields: the conversation is the
    # encoder's input (max_length tokens, oldest cut first), the answer the decoder's target
    # (max_length tokens at most), and LoRA targets every linear layer when
    # lora_target_modules is left at its (Llama-named) default.
    accepts_seq2seq: ClassVar[bool] = True


@dataclass
class RewardConfig(TrainingConfig):
    """A scalar reward model trained on preference pairs with the Bradley-Terry loss."""

    backbone: str = _f(
        "decoder",
        "'decoder': AutoModelForSequenceClassification from the policy's family (e.g. SmolLM2), "
        "scoring the last token; 'encoder': a BERT-type model (all-MiniLM-L6-v2 by default), "
        "scoring the pooled [CLS] token. The encoder is 6x smaller and trains in minutes on a CPU.",
        choices=["decoder", "encoder"],
    )
    learning_rate: float = _f(
        1e-5,
        "Peak AdamW learning rate. 1e-5 is the usual reward-model rate for full fine-tuning "
        "(Llama 2 used 1e-5 to 5e-6); with a probed head it keeps what the probe found. "
        "Cross-validated on 800 HH pairs (docs/reward-defaults.md), 1e-5 for two epochs "
        "scored 0.592 where plain TRL's 5e-5 for one epoch with a random head scored 0.567; "
        "3e-5 and 5e-5 for one epoch after the probe were no better. Raise it for a random head.",
        min=0.0,
        max=1.0,
        exclusive_min=True,
    )
    num_epochs: float = _f(
        2.0,
        "Passes over the training pairs. Two passes help small annotation sets (hundreds of "
        "pairs); reduce to 1 for tens of thousands.",
        min=0.0,
        exclusive_min=True,
    )
    use_margin: bool = _f(
        False,
        "Subtract the pair's preference strength (its 'margin' field) inside the loss, "
        "-log sigmoid(r_chosen - r_rejected - margin), as in Llama 2's reward model.",
    )
    reward_target: str = _f(
        "pairs",
        "What the reward model learns from. 'pairs': preference pairs (the export's "
        "'preference' shape) with the Bradley-Terry loss. 'scores': rubric scores (the 'score' "
        "shape: one answer, a dimension and its mean score) by regression, mean squared error "
        "between the reward and the score standardised over the training rows, so the reward "
        "keeps the pairs' scale (zero mean, unit spread). The run records which "
        "(details.reward_target).",
        choices=["pairs", "scores"],
    )
    score_dimension: str = _f(
        "",
        "With reward_target 'scores': the rubric dimension to regress on (its rows only). "
        "Empty: the data must hold a single dimension.",
    )
    use_weights: bool = _f(
        True,
        "Weigh each pair's loss by its 'weight' column (a snapshot exports how far each "
        "decision can be trusted: the agreeing share of the votes, a Dawid-Skene posterior, a "
        "gold-weighted share; 1.0 for an adjudication): the batch loss is "
        "sum(w * loss) / sum(w). Rows without a weight count 1.0; data without the column "
        "train unweighted. The run records which (details.pair_weights).",
    )
    center_rewards_coefficient: float = _f(
        0.0,
        "Weight of the penalty on the squared mean reward (Eisenstein et al. 2023) that keeps "
        "rewards near zero; 0 disables it. 0.01 is the published value.",
        min=0.0,
    )
    head_learning_rate: float = _f(
        0.0,
        "Learning rate of the new scalar head (and an encoder's pooler); 0 uses learning_rate. "
        "The head starts random: a higher rate lets it find the signal before the pretrained "
        "body drifts (discriminative fine-tuning, Howard & Ruder 2018).",
        min=0.0,
        max=1.0,
    )
    head_init: str = _f(
        "probe",
        "How a new scalar head starts. 'probe': fitted first on the frozen backbone's features "
        "of the training pairs (the Bradley-Terry loss of a linear head is a logistic "
        "regression, solved exactly, its L2 penalty chosen by 3 x 5-fold cross-validation), so "
        "fine-tuning does not bend the pretrained features towards a random head (LP-FT, "
        "Kumar et al. 2022). 'random': TRL's default initialisation. A trained head (continued "
        "training, a resumed run) is always kept.",
        choices=["probe", "random"],
    )
    probe_max_pairs: int = _f(
        2000,
        "Training pairs whose features fit the probed head (a seeded sample when there are "
        "more): one forward pass each, no gradients. A linear head needs a few thousand at most.",
        min=1,
    )
    keep_dropout: bool = _f(
        False,
        "Keep the backbone's dropout while training. TRL turns dropout off; on a few hundred "
        "pairs an encoder's dropout is useful regularisation.",
    )
    encoder_max_length: int = _f(
        512,
        "Token limit for encoder backbones (BERT-type position embeddings stop at 512).",
        min=16,
        max=512,
    )


@dataclass
class DPOConfig(TrainingConfig):
    """Direct Preference Optimization against an explicit reference model."""

    learning_rate: float = _f(
        5e-5,
        "Peak AdamW learning rate. 5e-5 suits LoRA over an epoch or more; full fine-tuning "
        "usually needs ~5e-7 (TRL's default is 1e-6). A run of a few dozen steps barely moves "
        "a LoRA adapter at 5e-5 (docs/dpo-defaults.md).",
        min=0.0,
        max=1.0,
        exclusive_min=True,
    )
    use_lora: bool = _f(True, "Train a LoRA adapter instead of every weight (see TrainingConfig).")
    reference_model: str = _f(
        "",
        "Folder of the frozen reference model. Empty means the parent (base_model) itself, "
        "which with LoRA is computed by disabling the adapter rather than loading a copy.",
    )
    beta: float = _f(
        0.1,
        "Inverse temperature of the implicit reward: larger keeps the policy closer to the "
        "reference. 0.1 is the DPO paper's value.",
        min=0.0,
        exclusive_min=True,
    )
    loss_type: str = _f(
        "sigmoid",
        "DPO loss: 'sigmoid' is the paper's; 'ipo' and 'hinge' are the robust variants.",
        choices=["sigmoid", "ipo", "hinge"],
    )
    label_smoothing: float = _f(
        0.0,
        "Probability that a preference label is flipped (conservative DPO); 0 trusts labels.",
        min=0.0,
        max=0.49,
    )


@dataclass
class KTOConfig(TrainingConfig):
    """Kahneman-Tversky Optimization (Ethayarajh et al. 2024) on unpaired good/bad answers.

    Trains on the export's ``kto`` rows (an answer that only won is desirable, one that only
    lost or was marked "both bad" undesirable, an unchanged correction desirable) and on its
    ``flags`` rows: an answer flagged with one of ``undesirable_flags`` is an undesirable
    example, whatever the snapshot's flag policy did to the pairs.
    """

    learning_rate: float = _f(
        5e-5,
        "Peak AdamW learning rate. 5e-5 suits LoRA; full fine-tuning usually needs ~5e-7 "
        "(TRL's default is 1e-6).",
        min=0.0,
        max=1.0,
        exclusive_min=True,
    )
    use_lora: bool = _f(True, "Train a LoRA adapter instead of every weight (see TrainingConfig).")
    reference_model: str = _f(
        "",
        "Folder of the frozen reference model. Empty means the parent (base_model) itself, "
        "which with LoRA is computed by disabling the adapter rather than loading a copy.",
    )
    beta: float = _f(
        0.1,
        "Inverse temperature of the implicit reward: larger keeps the policy closer to the "
        "reference. 0.1 is the KTO paper's value.",
        min=0.0,
        exclusive_min=True,
    )
    loss_type: str = _f(
        "kto",
        "'kto': the paper's loss, measured against a KL estimate from mismatched prompt/answer "
        "pairs of the same batch (so a batch needs at least 2 examples); 'apo_zero_unpaired': "
        "APO-zero, no KL term.",
        choices=["kto", "apo_zero_unpaired"],
    )
    desirable_weight: float = _f(
        1.0,
        "Weight of the desirable examples' loss. With unequal counts, keep "
        "desirable_weight x desirable / (undesirable_weight x undesirable) between 1 and 4/3 "
        "(the paper's Eq. 8); the run's log says when it is outside.",
        min=0.0,
        exclusive_min=True,
    )
    undesirable_weight: float = _f(
        1.0,
        "Weight of the undesirable examples' loss (see desirable_weight).",
        min=0.0,
        exclusive_min=True,
    )
    undesirable_flags: list = _f(  # noqa: RUF009 (_f gives lists a default_factory)
        ["unsafe"],
        "Flags whose flagged answers (the export's flags file) become undesirable examples, "
        "added or relabelled: a flagged answer is never a good example. Empty: the kto file "
        "alone.",
    )

    def _validate_method(self) -> dict[str, str]:
        errors = {}
        if self.loss_type == "kto" and self.per_device_batch_size < 2:
            errors["per_device_batch_size"] = (
                "the KTO loss estimates its KL term from the other answers of a batch: use 2 or "
                "more (or loss_type apo_zero_unpaired)"
            )
        if not isinstance(self.undesirable_flags, list) or not all(
            isinstance(flag, str) and flag for flag in self.undesirable_flags
        ):
            errors["undesirable_flags"] = "must be a list of flag names"
        return errors


@dataclass
class OnlineConfig(TrainingConfig):
    """Fields shared by the methods that sample answers and score them with a reward model."""

    learning_rate: float = _f(
        1e-5,
        "Peak AdamW learning rate for the policy (with LoRA; full fine-tuning wants ~1e-6).",
        min=0.0,
        max=1.0,
        exclusive_min=True,
    )
    use_lora: bool = _f(True, "Train a LoRA adapter on the policy (see TrainingConfig).")
    reward_model: str = _f(
        "",
        "Folder of the trained reward model (from a 'reward' run) that scores sampled answers. "
        "Required.",
    )
    max_length: int = _f(
        256,
        "Longest prompt, in tokens; older turns are cut first. Answers add max_new_tokens.",
        min=16,
        max=131072,
    )
    max_new_tokens: int = _f(
        48,
        "Tokens sampled at most per answer. Short answers keep CPU rollouts to seconds.",
        min=1,
        max=8192,
    )
    temperature: float = _f(
        0.7,
        "Sampling temperature for rollouts (1 samples the policy as is).",
        min=0.0,
        exclusive_min=True,
    )
    kl_coef: float = _f(
        0.05,
        "Weight of the KL penalty to the reference (the parent), per token. Larger keeps "
        "answers close to the parent's.",
        min=0.0,
    )

    def _validate_method(self) -> dict[str, str]:
        errors = {} if self.reward_model else {"reward_model": "a reward model folder is required"}
        if self.compile_model:
            errors["compile_model"] = "not available for sampling methods (PPO, RLOO, GRPO)"
        return errors


@dataclass
class PPOConfig(OnlineConfig):
    """PPO with a value model (Schulman et al. 2017; details after Huang et al. 2024)."""

    per_device_batch_size: int = _f(
        8, "Prompts rolled out per PPO iteration (the rollout batch).", min=1, max=4096
    )
    mini_batch_size: int = _f(4, "Rollouts per gradient step inside a PPO epoch.", min=1, max=4096)
    ppo_epochs: int = _f(
        2,
        "Passes over each rollout batch. More reuse is cheaper per sample but drifts further "
        "from the policy that sampled it (the clip keeps that in check).",
        min=1,
        max=32,
    )
    value_model: str = _f(
        "",
        "Folder of the value model's initial weights; empty means the reward model (Ouyang et "
        "al. 2022), whose scalar head already predicts returns on this distribution.",
    )
    value_learning_rate: float = _f(
        1e-5, "Peak AdamW learning rate of the value model.", min=0.0, max=1.0, exclusive_min=True
    )
    gamma: float = _f(
        1.0,
        "Discount per token in GAE; 1 because the reward arrives once, at the end.",
        min=0.0,
        max=1.0,
    )
    lam: float = _f(
        0.95, "GAE lambda: bias/variance trade-off of the advantage estimate.", min=0.0, max=1.0
    )
    clip_range: float = _f(
        0.2, "PPO ratio clip epsilon for the policy loss.", min=0.0, max=1.0, exclusive_min=True
    )
    value_clip_range: float = _f(
        0.2,
        "Clip of the value prediction's change per iteration, in reward units.",
        min=0.0,
        exclusive_min=True,
    )
    value_loss_coef: float = _f(0.1, "Weight of the value loss in the combined objective.", min=0.0)
    adaptive_kl: bool = _f(
        True,
        "Adapt kl_coef towards target_kl (Ziegler et al. 2019): raise it when the policy drifts "
        "too far, lower it when it stays too close.",
    )
    target_kl: float = _f(
        6.0,
        "KL to the reference (nats per answer) the adaptive controller aims for.",
        min=0.0,
        exclusive_min=True,
    )
    kl_horizon: int = _f(
        10000, "Episodes over which the adaptive controller closes the KL gap.", min=1
    )
    whiten_rewards: bool = _f(
        False,
        "Normalise scores to zero mean and unit variance across each rollout batch before "
        "GAE (advantages are always whitened).",
    )
    missing_eos_penalty: float = _f(
        -1.0,
        "Score given instead of the reward model's when an answer hits max_new_tokens without "
        "the end-of-turn token, so truncated rambling is not rewarded (Huang et al. 2024, "
        "detail 'EOS trick'). 0 disables it.",
    )

    # Tandem's own PPO loop holds policy, reference, value and reward models in one process
    # and has no gradient synchronisation: it supports 'none' only. RLOO and GRPO (TRL) run
    # under every strategy.
    SUPPORTED_STRATEGIES = ("none",)

    def _validate_method(self) -> dict[str, str]:
        errors = super()._validate_method()
        if self.distributed not in self.SUPPORTED_STRATEGIES:
            errors["distributed"] = (
                "PPO trains in one process only ('none'); RLOO and GRPO support ddp, fsdp and "
                "deepspeed"
            )
        return errors


@dataclass
class RLOOConfig(OnlineConfig):
    """REINFORCE with a leave-one-out baseline over k samples per prompt (Ahmadian et al. 2024)."""

    num_generations: int = _f(
        4,
        "Answers sampled per prompt (k); each is baselined by the mean of the other k-1.",
        min=2,
        max=64,
    )
    per_device_batch_size: int = _f(
        8,
        "Sampled answers per device per micro-step (prompts x num_generations), as TRL counts "
        "them; must be a multiple of num_generations.",
        min=1,
        max=4096,
    )

    def _validate_method(self) -> dict[str, str]:
        errors = super()._validate_method()
        if self.per_device_batch_size % self.num_generations:
            errors["per_device_batch_size"] = "must be a multiple of num_generations"
        return errors


@dataclass
class GRPOConfig(RLOOConfig):
    """Group Relative Policy Optimization (Shao et al. 2024): advantages normalised per group."""

    kl_coef: float = _f(
        0.04,
        "Weight of the KL penalty to the reference (the parent); 0.04 is the DeepSeekMath value. "
        "0 drops the reference entirely.",
        min=0.0,
    )
    clip_range: float = _f(
        0.2, "Ratio clip epsilon of the surrogate loss.", min=0.0, max=1.0, exclusive_min=True
    )


# The method table: every fact about a method that more than one module needs.
METHOD_SPECS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            name="sft",
            title="Supervised fine-tuning (TRL SFTTrainer)",
            config_class=SFTConfig,
            data_shape="sft",
            trainer_module="rlhf.training.sft",
        ),
        MethodSpec(
            name="reward",
            title="Reward model, Bradley-Terry pairwise loss (TRL RewardTrainer)",
            config_class=RewardConfig,
            data_shape="preference",
            trainer_module="rlhf.training.reward",
            result_class=RewardModelResult,
            paired_data=True,
        ),
        MethodSpec(
            name="dpo",
            title="Direct Preference Optimization (TRL DPOTrainer)",
            config_class=DPOConfig,
            data_shape="preference",
            trainer_module="rlhf.training.dpo",
            paired_data=True,
            needs_reference=True,
        ),
        MethodSpec(
            name="kto",
            title="Kahneman-Tversky Optimization on unpaired good/bad answers (TRL KTOTrainer)",
            config_class=KTOConfig,
            data_shape="kto",
            trainer_module="rlhf.training.kto",
            extra_shapes=("flags",),
            needs_reference=True,
        ),
        MethodSpec(
            name="ppo",
            title="PPO with a value model (Tandem's own implementation)",
            config_class=PPOConfig,
            data_shape="prompt_only",
            trainer_module="rlhf.training.ppo",
            result_class=PPOResult,
            samples_answers=True,
            needs_reward_model=True,
            needs_reference=True,
        ),
        MethodSpec(
            name="rloo",
            title="REINFORCE Leave-One-Out (TRL RLOOTrainer)",
            config_class=RLOOConfig,
            data_shape="prompt_only",
            trainer_module="rlhf.training.online",
            samples_answers=True,
            needs_reward_model=True,
            needs_reference=True,
        ),
        MethodSpec(
            name="grpo",
            title="Group Relative Policy Optimization (TRL GRPOTrainer)",
            config_class=GRPOConfig,
            data_shape="prompt_only",
            trainer_module="rlhf.training.online",
            samples_answers=True,
            needs_reward_model=True,
            needs_reference=True,
        ),
    )
}
METHODS = tuple(METHOD_SPECS)
METHOD_TITLES = {name: spec.title for name, spec in METHOD_SPECS.items()}
CONFIG_CLASSES: dict[str, type[TrainingConfig]] = {
    name: spec.config_class for name, spec in METHOD_SPECS.items()
}


def is_seq2seq(folder: str) -> bool:
    """Whether a model folder holds an encoder-decoder (seq2seq) model, from its config.json
    (an adapter's from its base's). No torch: the web process asks it. A missing or
    unreadable folder is not seq2seq here; loading it reports the real problem."""
    if not folder or not isinstance(folder, str):
        return False
    path = Path(folder)
    try:
        if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
            adapter = json.loads((path / "adapter_config.json").read_text())
            path = Path(adapter.get("base_model_name_or_path") or "")
            if adapter.get("task_type") == "SEQ_2_SEQ_LM":
                return True
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return False
    return isinstance(config, dict) and config.get("is_encoder_decoder") is True


def methods_for_base(folder: str) -> tuple[str, ...]:
    """The methods that can train a base model folder (seq2seq: SFT only)."""
    seq2seq = is_seq2seq(folder)
    return tuple(m for m, cls in CONFIG_CLASSES.items() if cls.accepts_seq2seq or not seq2seq)


def config_from_dict(method: str, values: dict) -> TrainingConfig:
    """Build and validate a method's config from stored JSON; unknown keys are refused."""
    if method not in CONFIG_CLASSES:
        raise ConfigError({"method": f"must be one of {list(METHODS)}"})
    cls = CONFIG_CLASSES[method]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError({key: "unknown field" for key in unknown})
    config = cls(**values)
    config.validate()
    return config


# The launch form's sections, in order: (key, title). A field's section is FIELD_GROUPS[name];
# a field not listed there is one of its method's own knobs ("method").
GROUPS: tuple[tuple[str, str], ...] = (
    ("essentials", "Essentials"),
    ("method", "Method settings"),
    ("optimisation", "Optimisation"),
    ("lora", "LoRA"),
    ("precision_devices", "Precision and devices"),
    ("checkpoints", "Checkpoints, logging and evaluation"),
)
_GROUP_MEMBERS = {
    "essentials": (
        "base_model", "reward_model", "reference_model", "value_model", "backbone",
        "learning_rate", "num_epochs", "max_steps", "per_device_batch_size", "max_length", "seed",
    ),
    "optimisation": (
        "gradient_accumulation_steps", "warmup_steps", "lr_scheduler", "weight_decay",
        "max_grad_norm",
    ),
    "lora": ("use_lora", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"),
    "precision_devices": (
        "precision", "device", "gradient_checkpointing", "compile_model", "group_by_length",
        "dataloader_num_workers", "distributed", "num_processes", "deepspeed_zero_stage",
    ),
    "checkpoints": (
        "checkpoint_every_steps", "keep_checkpoints", "log_every_steps", "eval_every_steps",
        "max_eval_examples", "holdout_fraction", "eval_generations", "eval_max_new_tokens",
    ),
}  # fmt: skip
FIELD_GROUPS: dict[str, str] = {
    name: group for group, names in _GROUP_MEMBERS.items() for name in names
}
# When a field applies: {field: {controlling field: values for which it applies}}. A field
# whose controlling field the method lacks always applies. The form hides a field that does
# not apply (its value is still sent and validated; it has no effect on the run).
FIELD_APPLIES_WHEN: dict[str, dict[str, list]] = {
    "lora_r": {"use_lora": [True]},
    "lora_alpha": {"use_lora": [True]},
    "lora_dropout": {"use_lora": [True]},
    "lora_target_modules": {"use_lora": [True]},
    "max_length": {"backbone": ["decoder"]},
    "encoder_max_length": {"backbone": ["encoder"]},
    "num_processes": {"distributed": ["ddp", "fsdp", "deepspeed"]},
    "deepspeed_zero_stage": {"distributed": ["deepspeed"]},
    "target_kl": {"adaptive_kl": [True]},
    "kl_horizon": {"adaptive_kl": [True]},
}


def field_applies(name: str, values: dict) -> bool:
    """Whether a field has any effect given the other fields' ``values`` (FIELD_APPLIES_WHEN)."""
    return all(
        values[other] in allowed
        for other, allowed in FIELD_APPLIES_WHEN.get(name, {}).items()
        if other in values
    )


# Named starting points for the launch form and the API (``"preset": "quick_cpu"``): each
# sets these fields (those the method has) and explicit fields override them. ``needs_gpu``
# presets train on CUDA. Every preset validates for every method (tests/rlhf/runs).
PRESETS: dict[str, dict[str, Any]] = {
    "quick_cpu": {
        "title": "Quick CPU check",
        "help": "Ten short steps on the CPU, no checkpoints, a small evaluation: checks the "
        "data and settings end to end in minutes before a long run.",
        "needs_gpu": False,
        "values": {
            "device": "cpu", "precision": "auto", "max_steps": 10, "per_device_batch_size": 4,
            "gradient_accumulation_steps": 1, "max_length": 256, "gradient_checkpointing": False,
            "compile_model": False, "checkpoint_every_steps": 0, "eval_every_steps": 0,
            "max_eval_examples": 64, "eval_generations": 4, "max_new_tokens": 32,
        },
    },
    "small_gpu": {
        "title": "Small GPU",
        "help": "One pass on one CUDA GPU in bf16, batches of 16, sequences up to 1024 tokens, "
        "a checkpoint and an evaluation every 100 steps.",
        "needs_gpu": True,
        "values": {
            "device": "cuda", "precision": "bf16", "max_steps": -1, "num_epochs": 1.0,
            "per_device_batch_size": 16, "gradient_accumulation_steps": 1, "max_length": 1024,
            "gradient_checkpointing": False, "checkpoint_every_steps": 100,
            "eval_every_steps": 100, "max_eval_examples": 512,
        },
    },
    "full_run": {
        "title": "Full run",
        "help": "Every example once on CUDA in bf16, an effective batch of 32 (8 x 4 "
        "accumulated), sequences up to 2048 tokens with gradient checkpointing, cosine "
        "schedule with 3% warm-up, checkpoints and evaluations every 200 steps.",
        "needs_gpu": True,
        "values": {
            "device": "cuda", "precision": "bf16", "max_steps": -1, "num_epochs": 1.0,
            "per_device_batch_size": 8, "gradient_accumulation_steps": 4, "max_length": 2048,
            "gradient_checkpointing": True, "lr_scheduler": "cosine", "warmup_steps": 0.03,
            "checkpoint_every_steps": 200, "keep_checkpoints": 3, "eval_every_steps": 200,
            "max_eval_examples": 2048, "eval_generations": 64,
        },
    },
}  # fmt: skip


def preset_values(method: str, preset: str) -> dict[str, Any]:
    """The fields a preset sets for ``method`` (only those the method has); "" sets none."""
    if not preset:
        return {}
    if preset not in PRESETS:
        raise ConfigError({"preset": f"must be one of {list(PRESETS)}"})
    names = {entry["name"] for entry in config_schema(method)}
    return {k: v for k, v in PRESETS[preset]["values"].items() if k in names}


def config_schema(method: str) -> list[dict]:
    """Every field of a method's config as a form would need it: name, type, default, help.

    A field whose ``methods`` metadata leaves this method out is not offered (its default holds).
    ``group`` names its launch-form section (GROUPS), ``applies_when`` the other fields' values
    for which it has an effect, ``multi_gpu`` that it matters only under `accelerate launch`.
    """
    cls = CONFIG_CLASSES[method]
    defaults = asdict(cls())
    schema = []
    for f in dataclasses.fields(cls):
        if method not in f.metadata.get("methods", METHODS):
            continue
        default = defaults[f.name]
        entry = {"name": f.name, "type": type(default).__name__, "default": default}
        entry.update(f.metadata)
        entry["group"] = FIELD_GROUPS.get(f.name, "method")
        entry["applies_when"] = FIELD_APPLIES_WHEN.get(f.name, {})
        schema.append(entry)
    return schema
