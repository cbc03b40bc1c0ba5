"""PPO with a value model, written here on torch/transformers/peft (TRL removed its PPOTrainer).

One iteration (= one global step):
1. sample one answer per prompt from the policy (temperature ``temperature``);
2. cut each answer after its first end-of-turn token; an answer that never ends gets
   ``missing_eos_penalty`` instead of the reward model's score;
3. per-token log-probs of the policy (old) and of the reference (the parent: the LoRA adapter
   disabled, or a frozen copy for full fine-tuning), per-token values from the value model;
4. rewards = -kl_coef * KL per token + score on the last token; GAE; whitened advantages;
5. ``ppo_epochs`` passes of shuffled mini-batches over the clipped policy and value losses;
6. the adaptive controller moves kl_coef towards ``target_kl``.

The value model starts as the reward model (its scalar head applied at every position); it
must share the policy's tokenizer, since it reads the policy's tokens. An encoder reward model
(bidirectional, a different vocabulary) cannot give per-token values: then the value model is
the policy's own backbone with a new scalar head, and the result says so.

Checkpoints hold the policy (adapter or weights) and value model as safetensors, optimizer,
scheduler and RNG states (loaded with ``weights_only=True``) and the data position.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rlhf.training import checkpoints, hf, ppo_math
from rlhf.training.config import PPOConfig
from rlhf.training.loading import (
    autocast,
    check_model_folder,
    load_causal_lm,
    load_sequence_classifier,
    load_tokenizer,
    lora_config,
)
from rlhf.training.online import RewardModelScorer
from rlhf.training.rollout import generate
from rlhf.training.tokens import chat_template_sha256, encode_decoder


def _positions(mask: torch.Tensor) -> torch.Tensor:
    # Left-padded rows must number their real tokens from 0, as generation did.
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


def _same_tokenizer(a, b) -> bool:
    probe = "Hello, world! <|im_end|> 123 ünïcode"
    return len(a) == len(b) and a(probe)["input_ids"] == b(probe)["input_ids"]


class ValueModel(torch.nn.Module):
    """Per-token values from a decoder sequence classifier: its scalar head at every position."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, input_ids, attention_mask):
        backbone = getattr(self.classifier, self.classifier.base_model_prefix)
        hidden = backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=_positions(attention_mask),
            use_cache=False,
        ).last_hidden_state  # (batch, seq, hidden)
        return self.classifier.score(hidden).squeeze(-1).float()  # (batch, seq)


class PPORun:
    """State of one PPO run: models, optimizer, controller, data order, global step."""

    def __init__(self, ctx: hf.RunContext):
        self.ctx = ctx
        config: PPOConfig = ctx.config
        self.config = config
        self.device = ctx.device
        torch.manual_seed(config.seed)
        parent = check_model_folder(config.base_model).resolve()
        self.parent = parent
        self.tokenizer = load_tokenizer(parent)
        ctx.chat_template_sha256 = chat_template_sha256(self.tokenizer)
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id

        policy = load_causal_lm(parent)
        ctx.record_loaded(policy, role="policy", source=parent)
        if config.use_lora:
            from peft import get_peft_model

            policy = get_peft_model(policy, lora_config(config, task_type="CAUSAL_LM"))
            self.reference = None  # the adapter disabled is the parent
            ctx.method_result.reference_model = f"{parent} (the parent: LoRA adapter disabled)"
        else:
            self.reference = load_causal_lm(parent).requires_grad_(False).eval().to(self.device)
            ctx.method_result.reference_model = str(parent)
        self.policy = policy.to(self.device)
        self.policy.config.use_cache = True

        reward_dir = check_model_folder(config.reward_model).resolve()
        self.scorer = RewardModelScorer(
            reward_dir,
            device=self.device,
            precision=ctx.precision,
            max_length=config.max_length + config.max_new_tokens,
        )
        ctx.record_loaded(self.scorer.loaded.model, role="reward model", source=reward_dir)
        value_dir = Path(config.value_model).resolve() if config.value_model else reward_dir
        value_tokenizer = load_tokenizer(value_dir)
        if value_tokenizer.chat_template and _same_tokenizer(value_tokenizer, self.tokenizer):
            ctx.method_result.value_model_init = str(value_dir)
        else:
            value_dir = parent
            ctx.method_result.value_model_init = (
                f"{parent} with a new head (the reward model does not share the policy's tokens)"
            )
        torch.manual_seed(config.seed)
        classifier = load_sequence_classifier(value_dir, pad_token_id=self.pad_id)
        ctx.record_loaded(classifier, role="value model", source=value_dir)
        self.value = ValueModel(classifier).to(self.device)
        ctx.method_result.base_model = str(parent)
        ctx.method_result.reward_model = str(reward_dir)

        self.prompts, self.prompt_messages, truncated = [], [], 0
        for row in ctx.splits.train:
            encoded = encode_decoder(self.tokenizer, row["prompt"], [""], config.max_length)
            self.prompts.append(encoded.prompt_ids)
            self.prompt_messages.append(row["prompt"])
            truncated += encoded.truncated
        ctx.truncated_rows = truncated

        per_epoch = max(1, len(self.prompts) // config.per_device_batch_size)
        self.total_steps = (
            config.max_steps
            if config.max_steps > 0
            else max(1, math.ceil(config.num_epochs * per_epoch))
        )
        policy_params = [p for p in self.policy.parameters() if p.requires_grad]
        value_params = [p for p in self.value.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": policy_params, "lr": config.learning_rate},
                {"params": value_params, "lr": config.value_learning_rate},
            ],
            weight_decay=config.weight_decay,
            eps=1e-5,
        )
        from transformers import get_scheduler

        updates_per_step = config.ppo_epochs * math.ceil(
            config.per_device_batch_size / config.mini_batch_size
        )
        self.scheduler = get_scheduler(
            config.lr_scheduler,
            self.optimizer,
            num_warmup_steps=int(
                config.warmup_steps * (1 if config.warmup_steps >= 1 else self.total_steps)
            )
            * updates_per_step,
            num_training_steps=self.total_steps * updates_per_step,
        )
        self.kl = ppo_math.AdaptiveKLController(config.kl_coef, config.target_kl, config.kl_horizon)
        self.global_step = 0
        self.rng = torch.Generator().manual_seed(config.seed)

    # --- data order ---------------------------------------------------------------------
    def batch_for_step(self, step: int) -> list[int]:
        """Prompt indices of iteration ``step`` (0-based): a seeded permutation per epoch."""
        size = self.config.per_device_batch_size
        per_epoch = max(1, len(self.prompts) // size)
        epoch, index = divmod(step, per_epoch)
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.prompts), generator=generator).tolist()
        return order[index * size : (index + 1) * size]

    # --- model passes -------------------------------------------------------------------
    def _policy_logprobs(self, model, ids, mask, prompt_len: int) -> torch.Tensor:
        with autocast(self.device, self.ctx.precision):
            logits = model(
                input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=False
            ).logits  # (batch, seq, vocab)
        response_logits = logits[:, prompt_len - 1 : -1]  # predicts tokens prompt_len..seq-1
        return ppo_math.token_logprobs(
            response_logits, ids[:, prompt_len:], self.config.temperature
        )

    def _values(self, ids, mask, prompt_len: int) -> torch.Tensor:
        with autocast(self.device, self.ctx.precision):
            values = self.value(ids, mask)  # (batch, seq)
        return values[:, prompt_len - 1 : -1]  # value of the state before each response token

    @torch.no_grad()
    def rollout(self, indices: list[int]) -> dict:
        config = self.config
        prompts = [self.prompts[i] for i in indices]
        query, query_mask, response = generate(
            self.policy,
            prompts,
            pad_id=self.pad_id,
            eos_id=self.eos_id,
            max_new_tokens=config.max_new_tokens,
            device=self.device,
            precision=self.ctx.precision,
            temperature=config.temperature,
        )
        response, response_mask, has_eos = ppo_math.first_eos_mask(
            response, self.eos_id, self.pad_id
        )
        ids = torch.cat([query, response], dim=1)
        mask = torch.cat([query_mask, response_mask], dim=1)
        prompt_len = query.shape[1]
        logprobs = self._policy_logprobs(self.policy, ids, mask, prompt_len)
        if self.reference is None:
            with self.policy.disable_adapter():
                ref_logprobs = self._policy_logprobs(self.policy, ids, mask, prompt_len)
        else:
            ref_logprobs = self._policy_logprobs(self.reference, ids, mask, prompt_len)
        values = self._values(ids, mask, prompt_len)

        texts = [
            self.tokenizer.decode(r[m.bool()], skip_special_tokens=True)
            for r, m in zip(response, response_mask, strict=True)
        ]
        scores = self.scorer([self.prompt_messages[i] for i in indices], texts)
        raw_scores = torch.tensor(scores, dtype=torch.float32, device=self.device)
        score = raw_scores.clone()
        if config.missing_eos_penalty:
            score = torch.where(has_eos, score, torch.full_like(score, config.missing_eos_penalty))
        if config.whiten_rewards:
            score = ppo_math.masked_whiten(score, torch.ones_like(score), shift_mean=False)
        rewards, kl = ppo_math.per_token_rewards(
            score, logprobs, ref_logprobs, response_mask.float(), self.kl.value
        )
        advantages, returns = ppo_math.gae(
            rewards, values, response_mask.float(), gamma=config.gamma, lam=config.lam
        )
        advantages = ppo_math.masked_whiten(advantages, response_mask.float())
        return {
            "ids": ids,
            "mask": mask,
            "prompt_len": prompt_len,
            "response_mask": response_mask.float(),
            "logprobs": logprobs,
            "values": values,
            "advantages": advantages,
            "returns": returns,
            "stats": {
                "score": float(raw_scores.mean()),
                "kl": float(kl.sum(dim=1).mean()),
                "kl_coef": self.kl.value,
                "response_length": float(response_mask.sum(dim=1).float().mean()),
                "eos_fraction": float(has_eos.float().mean()),
            },
        }

    def train_step(self, batch: dict) -> dict:
        config = self.config
        size = batch["ids"].shape[0]
        losses, stats = [], {}
        for _ in range(config.ppo_epochs):
            order = torch.randperm(size, generator=self.rng).tolist()
            for start in range(0, size, config.mini_batch_size):
                rows = order[start : start + config.mini_batch_size]
                ids, mask = batch["ids"][rows], batch["mask"][rows]
                response_mask = batch["response_mask"][rows]
                logprobs = self._policy_logprobs(self.policy, ids, mask, batch["prompt_len"])
                values = self._values(ids, mask, batch["prompt_len"])
                pg_loss, pg_stats = ppo_math.policy_loss(
                    logprobs,
                    batch["logprobs"][rows],
                    batch["advantages"][rows],
                    response_mask,
                    config.clip_range,
                )
                vf_loss, vf_stats = ppo_math.value_loss(
                    values,
                    batch["values"][rows],
                    batch["returns"][rows],
                    response_mask,
                    config.value_clip_range,
                )
                loss = pg_loss + config.value_loss_coef * vf_loss
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(
                        [p for g in self.optimizer.param_groups for p in g["params"]],
                        config.max_grad_norm,
                    )
                self.optimizer.step()
                self.scheduler.step()
                losses.append(float(loss))
                stats = {
                    **pg_stats,
                    **vf_stats,
                    "policy_loss": float(pg_loss),
                    "value_loss": float(vf_loss),
                }
        stats["loss"] = sum(losses) / len(losses)
        return stats

    # --- checkpoints --------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        ctx = self.ctx
        ctx.reporter.check_stop(self.global_step)
        staging = ctx.checkpoints_dir / f".staging-{self.global_step}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        trainable = {
            n: p.detach().cpu().contiguous()
            for n, p in self.policy.named_parameters()
            if p.requires_grad
        }
        save_file(trainable, str(staging / "policy_trainable.safetensors"))
        value_state = {
            n: t.detach().cpu().contiguous() for n, t in self.value.classifier.state_dict().items()
        }
        save_file(_untie(value_state), str(staging / "value.safetensors"))
        torch.save(self.optimizer.state_dict(), staging / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), staging / "scheduler.pt")
        torch.save(
            {
                "torch": torch.get_rng_state(),
                "sampler": self.rng.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            staging / "rng.pt",
        )
        state = {"global_step": self.global_step, "kl_coef": self.kl.value}
        (staging / "state.json").write_text(json.dumps(state))
        ctx.reporter.check_stop(self.global_step)
        info = checkpoints.commit(
            staging, ctx.checkpoints_dir, global_step=self.global_step, meta=ctx.checkpoint_meta()
        )
        checkpoints.prune(ctx.checkpoints_dir, self.config.keep_checkpoints)
        ctx.last_checkpoint = info
        ctx.reporter.emit(
            "checkpoint",
            step=self.global_step,
            checkpoint={
                "path": str(info.path),
                "global_step": info.global_step,
                "manifest_sha256": info.manifest_sha256,
            },
        )

    def load_checkpoint(self, path: Path) -> None:
        trainable = load_file(str(path / "policy_trainable.safetensors"))
        named = dict(self.policy.named_parameters())
        with torch.no_grad():
            for name, tensor in trainable.items():
                named[name].copy_(tensor)
        self.value.classifier.load_state_dict(load_file(str(path / "value.safetensors")))
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
        self.scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
        rng = torch.load(path / "rng.pt", weights_only=True)
        torch.set_rng_state(rng["torch"])
        self.rng.set_state(rng["sampler"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        state = json.loads((path / "state.json").read_text())
        self.global_step = int(state["global_step"])
        self.kl.value = float(state["kl_coef"])


def _untie(state: dict) -> dict:
    # safetensors refuses tensors that share memory (tied embeddings): store copies.
    seen, out = set(), {}
    for name, tensor in state.items():
        key = tensor.data_ptr()
        out[name] = tensor.clone() if key in seen else tensor
        seen.add(key)
    return out


def train(ctx: hf.RunContext) -> dict:
    config: PPOConfig = ctx.config
    run = PPORun(ctx)
    resume_from = hf.resume_point(ctx)
    if resume_from:
        run.load_checkpoint(Path(resume_from))
    reporter = ctx.reporter
    reporter.total_steps = run.total_steps
    reporter.emit("start", step=run.global_step, total_steps=run.total_steps)
    stats: dict = {}
    while run.global_step < run.total_steps:
        reporter.check_stop(run.global_step)
        batch = run.rollout(run.batch_for_step(run.global_step))
        stats = {**batch["stats"], **run.train_step(batch)}
        if config.adaptive_kl:
            run.kl.update(batch["stats"]["kl"], n_steps=batch["ids"].shape[0])
        run.global_step += 1
        reporter.add_tokens(int(batch["mask"].sum()) * config.ppo_epochs)
        loss = stats.pop("loss")
        reporter.step(run.global_step, loss=loss, metrics=stats)
        if config.checkpoint_every_steps and run.global_step % config.checkpoint_every_steps == 0:
            run.save_checkpoint()
    ctx.method_result.global_step = run.global_step
    model_dir = _save(run)
    ctx.method_result.model_dir = str(model_dir)
    return {"last": stats}


def _save(run: PPORun) -> Path:
    from peft import PeftModel

    from rlhf.training.loading import is_adapter_folder

    ctx = run.ctx
    ctx.reporter.check_stop(run.global_step)
    staging = ctx.out_dir / ".staging-model"
    shutil.rmtree(staging, ignore_errors=True)
    policy = run.policy
    kind = "full_weights"
    if isinstance(policy, PeftModel):
        if is_adapter_folder(run.parent):
            policy, kind = policy.merge_and_unload(), "full_weights_merged"
        else:
            kind = "lora_adapter"
    policy.save_pretrained(staging, safe_serialization=True)
    run.tokenizer.save_pretrained(staging)
    value_dir = staging / "value_model"
    run.value.classifier.save_pretrained(value_dir, safe_serialization=True)
    ctx.method_result.artifact_kind = kind
    return hf.publish_model(staging, ctx, meta={"kind": kind, "parent": str(run.parent)})
