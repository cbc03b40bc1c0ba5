"""One whole round of the human-feedback loop, in this process: ``manage.py loop``.

snapshot of the current labels → reward model → DPO policy from the champion → candidate
registered (the run's succeeded-hooks) → review round: both versions answer the pinned and
fresh prompts, blind review tasks queued, evaluation recorded. Everything goes through the
same services the pages and workers use: ``snapshot_create``/``snapshot_build``,
``training_run_launch``/``training_run_execute`` (the worker's own entry point, called here),
``loop_round_prepare``/``loop_round_evaluate`` (the generation queue's jobs, called here).
The jobs that those services also enqueue find their work done when a worker picks them up
(they are idempotent).

Two sizes: ``tiny`` builds tiny random models from a config (seconds on a CPU; the end-to-end
test uses it); the default starts from the embedded SmolLM2-135M-Instruct and the embedded
MiniLM reward encoder with steps sized for a CPU (minutes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from annotation.models import Project
from config.errors import Conflict, ValidationFailed
from models_registry import review_cycle, selectors
from models_registry.models import LoopRound, ModelVersion, RoundKind
from models_registry.review_settings import eval_prompts_pin
from models_registry.run_versions import training_run_candidate
from models_registry.services import model_version_register_base
from rlhf.models import ACTIVE_RUN_STATUSES, DatasetSnapshot, RunStatus, TrainingRun
from rlhf.runs import services as run_services
from rlhf.runs.execution import training_run_execute
from rlhf.snapshots import services
from rlhf.snapshots.selectors import snapshot_split_prompts

TINY_LM = "tiny-loop-lm"
TINY_ENCODER = "tiny-loop-encoder"

# Steps sized for a CPU: the point is one honest turn of the loop, not a strong model.
SIZES = {
    "tiny": {
        "reward": {"backbone": "encoder", "max_steps": 4, "per_device_batch_size": 2,
                   "max_length": 64, "checkpoint_every_steps": 0, "max_eval_examples": 8,
                   "learning_rate": 1e-3},
        "dpo": {"max_steps": 2, "per_device_batch_size": 2, "max_length": 64,
                "checkpoint_every_steps": 0, "lora_r": 4, "lora_alpha": 8},
        "generation": {"max_new_tokens": 12, "temperature": 1.0, "top_p": 1.0,
                       "backend": "transformers"},
    },
    "cpu": {
        "reward": {"backbone": "encoder", "max_steps": 60, "per_device_batch_size": 8,
                   "max_length": 256, "checkpoint_every_steps": 20},
        # 24 steps of 2 pairs at 5e-4 (LoRA), chosen by bench/dpo_defaults.py (3 seeds, 100
        # held-out pairs, docs/dpo-defaults.md): at DPOConfig's 5e-5 a round this short leaves
        # the held-out DPO loss at ln 2 (0.689 +/- 0.003), at 5e-4 it falls to 0.668 +/- 0.023
        # with the same held-out accuracy or better (paired: +0.017). ~12 s a step for
        # SmolLM2-135M with LoRA on two quiet CPU cores. The rate is this short round's, not
        # DPOConfig's: a long run at 5e-4 would move a LoRA adapter far from its parent.
        "dpo": {"max_steps": 24, "per_device_batch_size": 2, "max_length": 256,
                "learning_rate": 5e-4, "checkpoint_every_steps": 8},
        "generation": {"max_new_tokens": 96, "temperature": 0.7, "top_p": 0.95},
    },
}  # fmt: skip


@dataclass
class LoopOutcome:
    snapshot: DatasetSnapshot
    reward_run: TrainingRun
    policy_run: TrainingRun
    candidate: ModelVersion
    review_round: LoopRound


def _tiny_models() -> dict[str, Path]:
    """Tiny random models in the model cache (built once; deterministic seeds)."""
    from rlhf.training.base_models import build_tiny_causal_lm, build_tiny_encoder

    cache = Path(settings.TANDEM_MODEL_CACHE)
    lm, encoder = cache / TINY_LM, cache / TINY_ENCODER
    if not (lm / "model.safetensors").is_file():
        build_tiny_causal_lm(lm, seed=0)
    if not (encoder / "model.safetensors").is_file():
        build_tiny_encoder(encoder, seed=0)
    return {"lm": lm, "encoder": encoder}


def _champion(project: Project, *, tiny: bool, say) -> ModelVersion:
    champion = selectors.alias_target(project=project)
    if champion is not None:
        return champion
    # Registered as "system": the operator running this command holds the server; over the API
    # only a project admin may register a base model.
    folder = _tiny_models()["lm"] if tiny else None
    version = model_version_register_base(
        project=project, registered_by=None, folder=folder, name=TINY_LM if tiny else None
    )
    say(f"registered the base model {version.label} as champion")
    return version


def _execute(run: TrainingRun, say) -> TrainingRun:
    """Run the queued attempt here; if a worker claimed it first, wait for that worker."""
    outcome = training_run_execute(run_id=run.pk, attempt=run.attempt)
    run.refresh_from_db()
    # A training process killed by the kernel re-queues its run: run the next attempt here too.
    while outcome == "requeued" and run.status == RunStatus.QUEUED:
        outcome = training_run_execute(run_id=run.pk, attempt=run.attempt)
        run.refresh_from_db()
    while run.status in ACTIVE_RUN_STATUSES:
        time.sleep(1)
        run.refresh_from_db()
    say(f"run {run.pk} ({run.method_title}): {run.status} ({outcome})")
    if run.status != RunStatus.SUCCEEDED:
        raise Conflict(f"run {run.pk} {run.status}: {run.error or run.log_tail[-500:]}")
    return run


def _sizes(tiny: bool, overrides: dict[str, dict] | None) -> dict[str, dict]:
    size = {step: dict(values) for step, values in SIZES["tiny" if tiny else "cpu"].items()}
    for step, values in (overrides or {}).items():
        if step not in size:
            raise ValidationFailed(
                f"unknown loop step {step!r}: one of {sorted(size)}", code="invalid_field"
            )
        size[step].update(values)
    return size


def _pin_test_prompts(project: Project, snapshot: DatasetSnapshot, count: int, say) -> None:
    """Pin up to ``count`` prompts of the snapshot's test split as the evaluation prompts: the
    candidate is then judged on prompts neither model trained on."""
    prompts = snapshot_split_prompts(snapshot=snapshot, split="test")[:count]
    if not prompts:
        raise ValidationFailed(
            f"snapshot {snapshot.pk} has no test prompts to pin", code="snapshot_has_no_test"
        )
    pinned = eval_prompts_pin(project=project, conversations=prompts, replace=True)
    say(f"pinned {len(pinned)} prompts of snapshot {snapshot.pk}'s test split for evaluation")


def loop_run(
    *,
    project: Project,
    launched_by=None,
    tiny: bool = False,
    say: Callable[[str], None] = print,
    snapshot_config: dict | None = None,
    overrides: dict[str, dict] | None = None,
    pin_test_prompts: int = 0,
) -> LoopOutcome:
    """One round (see the module doc). ``snapshot_config``: the snapshot request's config (its
    split shares, for one); ``overrides``: per step (``reward``, ``dpo``, ``generation``) the
    fields that replace the size's; ``pin_test_prompts``: pin that many prompts of the new
    snapshot's test split as the evaluation prompts before the candidate goes to review."""
    size = _sizes(tiny, overrides)
    champion = _champion(project, tiny=tiny, say=say)
    if "generation" in (overrides or {}) or "review_generation" not in (project.options or {}):
        project.options = {**(project.options or {}), "review_generation": size["generation"]}
        project.save(update_fields=["options", "updated_at"])

    with transaction.atomic():
        snapshot = services.snapshot_create(
            project=project,
            created_by=launched_by,
            name="loop",
            config=snapshot_config,
            enqueue=False,
        )
    snapshot = services.snapshot_build(snapshot_id=snapshot.pk)
    train_rows = (snapshot.row_counts or {}).get("preference", {}).get("train", 0)
    say(f"snapshot {snapshot.pk}: {train_rows} preference pairs to train on")
    if not train_rows:
        raise ValidationFailed(
            "the snapshot has no preference pairs: label some pairwise tasks first",
            code="snapshot_has_no_rows",
        )
    if pin_test_prompts:
        _pin_test_prompts(project, snapshot, pin_test_prompts, say)

    reward_config = dict(size["reward"])
    if tiny:
        reward_config["base_model"] = str(_tiny_models()["encoder"])
    reward_run = run_services.training_run_launch(
        project=project, created_by=launched_by, method="reward", snapshot=snapshot,
        config=reward_config, name="loop reward model",
    )  # fmt: skip
    reward_run = _execute(reward_run, say)

    policy_run = run_services.training_run_launch(
        project=project, created_by=launched_by, method="dpo", snapshot=snapshot,
        config=size["dpo"], base_model_version=champion, name="loop policy",
    )  # fmt: skip
    policy_run = _execute(policy_run, say)
    candidate = training_run_candidate(run=policy_run)
    if candidate is None:
        raise Conflict(f"run {policy_run.pk} registered no candidate: see its log")
    review_round = (
        LoopRound.objects.filter(version=candidate, kind=RoundKind.REVIEW).order_by("-id").first()
    )
    if review_round is None:
        raise Conflict(f"no review round started for {candidate.label}: see run {policy_run.pk}")
    say(f"candidate {candidate.label}: review round {review_round.pk} against {champion.label}")
    review_round = review_cycle.loop_round_prepare(round_id=review_round.pk)
    say(f"{len(review_round.task_ids)} blind review tasks queued")
    review_round = review_cycle.loop_round_evaluate(round_id=review_round.pk)
    candidate.refresh_from_db()
    return LoopOutcome(snapshot, reward_run, policy_run, candidate, review_round)
