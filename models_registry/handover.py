"""The hand-over from a succeeded run to the model registry: its model becomes a candidate
version, and a candidate policy goes up for review.

``training_run_register_candidate`` is the first of ``rlhf.runs.services.
training_run_succeeded_hooks`` (appended in ``ModelsRegistryConfig.ready``: the registry sits
above rlhf, which never imports it). It registers the run's model folder (weights or LoRA
adapter, with its tokenizer) under the run's name, or ``reward-model`` / ``policy``, with the
run as its source: config, metrics, snapshot, launcher, and as parent the version the run
started from (or the registered version whose folder it started from). A refusal (an adapter
whose base was never registered, say) is written to the run's log; the run stays succeeded.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from django.db.models import F

from config.errors import DomainError
from models_registry.models import ModelVersion, VersionKind
from models_registry.review_cycle import loop_round_start_review
from models_registry.run_versions import run_versions_of, training_run_set_candidate
from models_registry.services import model_version_register
from rlhf.models import TrainingRun
from rlhf.runs.services import log_line, log_lines_append, run_model_dir, training_run_notify

logger = logging.getLogger(__name__)


def candidate_name(run: TrainingRun) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", run.name.lower()).strip("-._")[:100]
    return slug or ("reward-model" if run.method == "reward" else "policy")


def _parent(run: TrainingRun) -> ModelVersion | None:
    base = run_versions_of(run=run).base_model_version
    if base is not None:
        return base
    folder = run.config.get("base_model") or ""
    if not folder:
        return None
    return (
        ModelVersion.objects.filter(
            project_id=run.project_id, artifact_dir=str(Path(folder).resolve())
        )
        .order_by("-id")
        .first()
    )


def training_run_register_candidate(run: TrainingRun) -> ModelVersion | None:
    """Register the run's model as a candidate version (once; a second call returns it)."""
    run = TrainingRun.objects.select_related("project", "created_by").get(pk=run.pk)
    registered = run_versions_of(run=run).candidate_version
    if registered is not None:
        return registered
    snapshot = run.dataset_snapshot
    try:
        version = model_version_register(
            project=run.project,
            folder=Path(run_model_dir(run)),
            name=candidate_name(run),
            kind=VersionKind.REWARD if run.method == "reward" else VersionKind.POLICY,
            registered_by=None,
            parent=_parent(run),
            source=f"training run {run.pk} ({run.method_title})",
            training_run=run,
            dataset_snapshot=snapshot,
            launched_by=run.created_by,
            config={"method": run.method, **run.config},
            metrics=run.metrics,
            data_card={
                "snapshot": snapshot.pk,
                "name": snapshot.name,
                "content_sha256": snapshot.content_sha256,
                "row_counts": snapshot.row_counts,
            },
            reason=f"candidate from training run {run.pk}",
        )
    except DomainError as exc:
        line = log_line(f"not registered as a model version: {exc.message}")
        TrainingRun.objects.filter(pk=run.pk).update(
            log_tail=log_lines_append(run.log_tail, line), revision=F("revision") + 1
        )
        training_run_notify(run.pk)
        logger.warning("run %s not registered: %s", run.pk, exc.message)
        return None
    training_run_set_candidate(run=run, version=version)
    return version


def training_run_start_review(run: TrainingRun) -> None:
    """Second succeeded-hook: the run's new candidate policy goes up for blind review against the
    champion (``models_registry.review_cycle``). A reward model, a project without a champion or
    without prompts starts nothing; the reason is written to the run's log."""
    run = TrainingRun.objects.get(pk=run.pk)
    version = run_versions_of(run=run).candidate_version
    if version is None or version.kind != VersionKind.POLICY:
        return
    try:
        loop_round = loop_round_start_review(version=version, actor=None)
    except DomainError as exc:
        message = f"no review round for {version.label}: {exc.message}"
    else:
        message = (
            f"review round {loop_round.pk} queued: {version.label} against "
            f"{loop_round.opponent.label} on {len(loop_round.prompt_ids)} prompts"
        )
    TrainingRun.objects.filter(pk=run.pk).update(
        log_tail=log_lines_append(run.log_tail, log_line(message)), revision=F("revision") + 1
    )
    training_run_notify(run.pk)
