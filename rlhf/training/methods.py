"""What each training method is, in one place: the ``MethodSpec`` type and the typed facts a
method's run reports besides its metrics.

The table itself, ``config.METHOD_SPECS``, sits under the config classes it names; config.py
(``METHODS``, ``METHOD_TITLES``, ``CONFIG_CLASSES``), data.py (the shape a method trains on),
runner.py (the method's trainer, its result class) and the platform's launch code read it.
No torch here: the web process reads the table.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlhf.training.config import TrainingConfig
    from rlhf.training.hf import RunContext


@dataclass
class MethodResult:
    """What a method's ``train`` found out besides its metrics (was ``RunContext.extra``).

    ``TrainingResult`` takes the fields it names from here; the rest (a subclass's own fields,
    ``artifact_kind``) become its ``details``.
    """

    model_dir: str | None = None
    """The saved model folder; None means ``<out>/model``."""
    global_step: int = 0
    base_model: str | None = None
    """The parent folder actually used (resolved); None means the config's ``base_model``."""
    reference_model: str | None = None
    """What KL or the DPO loss was measured against, in words (None: no reference)."""
    reward_model: str | None = None
    """The reward model folder that scored sampled answers (online methods)."""
    artifact_kind: str | None = None
    """lora_adapter, full_weights, full_weights_merged or reward_model."""


@dataclass
class RewardModelResult(MethodResult):
    reward_backbone: str | None = None
    """decoder or encoder (``RewardConfig.backbone``)."""
    head_init: dict | None = None
    """How the scalar head started: probe (with its fit), random, trained or checkpoint."""
    reward_target: str | None = None
    """"pairs" (Bradley-Terry on preference pairs) or "scores" (regression on rubric scores;
    ``RewardConfig.reward_target``)."""
    score_target: dict | None = None
    """With "scores": the dimension, and the training scores' mean and spread the rewards
    were standardised by (reward = (score - mean) / std)."""
    pair_weights: str | None = None
    """"weighted" (each pair's loss weighed by its ``weight`` column), or "unweighted" with
    why: the data has no weights, or ``use_weights`` is off."""


@dataclass
class PPOResult(MethodResult):
    value_model_init: str | None = None
    """The folder the value model started from, or how it was built."""


# Fields of TrainingResult itself; the others of a MethodResult are its details.
RESULT_FIELDS = ("model_dir", "global_step", "base_model", "reference_model", "reward_model")


def result_details(result: MethodResult) -> dict:
    """The method-specific facts ``TrainingResult.details`` stores (unset ones left out)."""
    values = vars(result)
    return {k: v for k, v in values.items() if k not in RESULT_FIELDS and v is not None}


@dataclass(frozen=True)
class MethodSpec:
    """One training method: its config, the data it trains on, its trainer, what it needs."""

    name: str
    title: str
    """How the method is named to people: runs, registry and UI show this, never a vaguer word."""
    config_class: type[TrainingConfig]
    data_shape: str
    """The export shape it trains on: sft, preference or prompt_only."""
    trainer_module: str
    """The module whose ``train(ctx)`` runs it (imported on first use: TRL takes seconds)."""
    result_class: type[MethodResult] = MethodResult
    paired_data: bool = False
    """Trains on (chosen, rejected) pairs."""
    samples_answers: bool = False
    """Samples its own answers to prompts (online), so the prompts of any shape will do."""
    needs_reward_model: bool = False
    """Scores sampled answers with a trained reward model folder (``config.reward_model``)."""
    needs_reference: bool = False
    """Measures against a frozen reference policy (the parent): DPO's loss, or a KL penalty."""
    extra_shapes: tuple[str, ...] = ()
    """Export shapes read beside its own into the same rows (KTO: flags, as undesirable)."""

    @property
    def accepted_shapes(self) -> tuple[str, ...]:
        """Export shapes whose training rows it can use, its own first."""
        if self.samples_answers:
            return (self.data_shape, "preference", "sft")
        return (self.data_shape,)

    def train(self, ctx: RunContext) -> dict:
        """Run the method's trainer on a prepared context; returns its metrics."""
        return importlib.import_module(self.trainer_module).train(ctx)
