"""RLOO and GRPO through TRL's maintained trainers, scored by a trained Tandem reward model.

Both sample ``num_generations`` answers per prompt from the policy and push up the ones the
reward model prefers:
- RLOO (Ahmadian et al. 2024): advantage = reward minus the mean reward of the other k-1
  answers to the same prompt; KL to the reference enters the reward.
- GRPO (Shao et al. 2024): advantage = reward normalised by the group's mean and standard
  deviation; clipped surrogate loss; KL to the reference as a loss term.
The reference is the parent (``base_model``): with LoRA, TRL disables the adapter; in full
fine-tuning it loads the parent folder again. The reward model scores each answer with the
layout it was trained on (``tokens.encode_for_scoring``), so a MiniLM reward model can judge a
SmolLM2 policy.
"""

from __future__ import annotations

import torch
from datasets import Dataset

from rlhf.training import hf, rollout
from rlhf.training.config import ConfigError
from rlhf.training.loading import (
    check_model_folder,
    is_adapter_folder,
    load_causal_lm,
    load_for_inference,
    load_tokenizer,
    lora_config,
)
from rlhf.training.tokens import chat_template_sha256, fit_prompt


class RewardModelScorer:
    """A TRL reward function backed by a Tandem reward model folder."""

    __name__ = "reward_model"

    def __init__(self, model_dir, *, device: str, precision: str, max_length: int = 512):
        self.loaded = load_for_inference(
            model_dir, kind="reward_model", device=device, precision=precision
        )
        self.max_length = rollout.scoring_max_length(
            self.loaded.tokenizer, self.loaded.model, max_length
        )

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        messages = [p if isinstance(p, list) else [{"role": "user", "content": p}] for p in prompts]
        answers = [[c[-1]["content"] if isinstance(c, list) else c] for c in completions]
        scores, _ = rollout.score_answers(
            self.loaded.model,
            self.loaded.tokenizer,
            messages,
            answers,
            max_length=self.max_length,
            device=self.loaded.device,
            precision=self.loaded.precision,
        )
        return [group[0] for group in scores]


def _trainer_classes(method: str):
    if method == "rloo":
        from trl import RLOOConfig, RLOOTrainer

        return RLOOConfig, RLOOTrainer
    from trl import GRPOConfig, GRPOTrainer

    return GRPOConfig, GRPOTrainer


def build_trainer(ctx: hf.RunContext, *, callbacks: list | None = None):
    config = ctx.config
    parent = check_model_folder(config.base_model).resolve()
    if not config.use_lora and is_adapter_folder(parent) and config.kl_coef > 0:
        raise ConfigError(
            {"use_lora": "full fine-tuning from an adapter parent has no reference; use LoRA"}
        )
    tokenizer = load_tokenizer(parent)
    tokenizer.padding_side = "left"
    ctx.chat_template_sha256 = chat_template_sha256(tokenizer)
    prompts, truncated = [], 0
    for row in ctx.splits.train:
        messages, cut = fit_prompt(tokenizer, row["prompt"], config.max_length)
        prompts.append(messages)
        truncated += cut
    ctx.truncated_rows = truncated

    reward_dir = check_model_folder(config.reward_model).resolve()
    scorer = RewardModelScorer(
        reward_dir,
        device=ctx.device,
        precision=ctx.precision,
        max_length=config.max_length + config.max_new_tokens,
    )
    ctx.record_loaded(scorer.loaded.model, role="reward model", source=reward_dir)
    policy = load_causal_lm(parent)
    ctx.record_loaded(policy, role="policy", source=parent)
    config_cls, trainer_cls = _trainer_classes(ctx.method)
    extra = {}
    if ctx.method == "grpo":
        extra = {"epsilon": config.clip_range, "loss_type": "dapo", "scale_rewards": "group"}
    args = config_cls(
        **hf.trainer_arguments(ctx, has_eval=False),
        num_generations=config.num_generations,
        max_completion_length=config.max_new_tokens,
        temperature=config.temperature,
        top_k=0,
        top_p=1.0,
        beta=config.kl_coef,
        disable_dropout=True,
        use_vllm=False,
        shuffle_dataset=True,
        log_completions=False,
        **extra,
    )
    trainer = trainer_cls(
        model=policy,
        reward_funcs=scorer,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=tokenizer,
        peft_config=lora_config(config, task_type="CAUSAL_LM") if config.use_lora else None,
        callbacks=[hf.TandemCallback(ctx), *(callbacks or [])],
    )
    ctx.method_result.base_model = str(parent)
    ctx.method_result.reward_model = str(reward_dir)
    if config.kl_coef > 0:
        how = "LoRA adapter disabled" if config.use_lora else "loaded again, frozen"
        ctx.method_result.reference_model = f"{parent} (the parent: {how})"
    return trainer


def train(ctx: hf.RunContext) -> dict:
    trainer = build_trainer(ctx)
    torch.manual_seed(ctx.config.seed)
    hf.train(trainer, ctx)
    metrics = {"train_loss": hf.final_loss(trainer)}
    for entry in reversed(trainer.state.log_history):
        if "reward" in entry:
            metrics["last_mean_reward"] = float(entry["reward"])
            break
    model_dir = hf.save_policy(trainer, ctx)
    ctx.method_result.model_dir = str(model_dir)
    return metrics
