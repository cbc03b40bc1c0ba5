"""Writes of the serving domain: engines' lifecycle, usage records, feedback, settings, and the
serving target (what the Serving page asked to serve; ``manage.py serve --watch`` follows it)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, Q, Value
from django.db.models.functions import Now
from django.utils import timezone

from annotation.audit import DataAuditAction, data_audit_record
from annotation.services.hashing import prompt_messages_hash
from config.errors import DomainError, NotFound, ValidationFailed
from models_registry.models import ModelAlias, ModelVersion, VersionKind
from models_registry.serving.models import (
    LIVE_ENGINE_STATUSES,
    CanaryMode,
    EngineStatus,
    FeedbackKind,
    ServedFeedback,
    ServedResponse,
    ServedStatus,
    ServingEngine,
    ServingSettings,
    ServingTarget,
)

# ----------------------------------------------------------------------------- engines


def serving_engine_create(
    *, version: ModelVersion, alias: str, role: str, engine: str, url: str, upstream_model: str,
    folder: str, host: str, command: list[str], watcher: str = "",
) -> ServingEngine:  # fmt: skip
    if version.kind != VersionKind.POLICY:
        raise ValidationFailed(
            f"{version.label} is a reward model: only policies answer chat completions",
            code="not_a_policy",
            fields={"version": "a policy version"},
        )
    return ServingEngine.objects.create(
        project=version.project, version=version, alias=alias, role=role, engine=engine,
        url=url, upstream_model=upstream_model, folder=folder, host=host, command=command,
        watcher=watcher,
    )  # fmt: skip


def serving_engine_started(*, engine: ServingEngine, pid: int) -> None:
    ServingEngine.objects.filter(pk=engine.pk).update(pid=pid)
    engine.pid = pid


@transaction.atomic
def serving_engine_ready(*, engine: ServingEngine) -> list[int]:
    """Mark ``engine`` ready; the engines it replaces (same project, alias and role, another
    version) start draining. Returns their ids. New requests route to the ready one from
    the next request on (``gateway_route`` reads the database per request)."""
    now = timezone.now()
    ServingEngine.objects.filter(pk=engine.pk).update(status=EngineStatus.READY, ready_at=now)
    engine.status = EngineStatus.READY
    replaced = ServingEngine.objects.select_for_update().filter(
        project_id=engine.project_id, alias=engine.alias, role=engine.role,
        status=EngineStatus.READY,
    ).exclude(pk=engine.pk)  # fmt: skip
    ids = list(replaced.values_list("pk", flat=True))
    ServingEngine.objects.filter(pk__in=ids).update(status=EngineStatus.DRAINING, draining_at=now)
    return ids


def serving_engine_drain(*, engine: ServingEngine) -> None:
    live = [EngineStatus.READY, EngineStatus.STARTING]
    ServingEngine.objects.filter(pk=engine.pk, status__in=live).update(
        status=EngineStatus.DRAINING, draining_at=timezone.now()
    )


def serving_engine_stopped(*, engine: ServingEngine, error: str = "") -> None:
    ServingEngine.objects.filter(pk=engine.pk).update(
        status=EngineStatus.FAILED if error else EngineStatus.STOPPED,
        stopped_at=timezone.now(),
        error=error[:4000],
    )


# ----------------------------------------------------------------------------- settings


SETTINGS_FIELDS = ("canary_version", "canary_mode", "canary_share", "requests_per_minute",
                   "learn_from_traffic")  # fmt: skip


def _settings_values(settings: ServingSettings) -> dict:
    return {
        "canary_version": settings.canary_version_id, "canary_mode": settings.canary_mode,
        "canary_share": settings.canary_share, "requests_per_minute": settings.requests_per_minute,
        "learn_from_traffic": settings.learn_from_traffic,
    }  # fmt: skip


@transaction.atomic
def serving_settings_update(
    *, project, canary_version: ModelVersion | None = None, canary_mode: str | None = None,
    canary_share: float | None = None, requests_per_minute: int | None = None,
    learn_from_traffic: bool | None = None, actor=None,
) -> ServingSettings:  # fmt: skip
    """Change the project's serving settings (None: unchanged). A change is audited (the
    consent to learn from traffic decides whether end users' conversations become data)."""
    ServingSettings.objects.get_or_create(project=project)
    settings = ServingSettings.objects.select_for_update().get(project=project)
    errors = {}
    if canary_mode is not None and canary_mode not in CanaryMode.values:
        errors["canary_mode"] = f"one of {CanaryMode.values}"
    if canary_share is not None and not 0 <= canary_share <= 1:
        errors["canary_share"] = "a share between 0 and 1"
    if requests_per_minute is not None and requests_per_minute < 1:
        errors["requests_per_minute"] = "at least 1"
    if canary_version is not None and (
        canary_version.project_id != project.pk or canary_version.kind != VersionKind.POLICY
    ):
        errors["canary_version"] = "a policy version of this project"
    if errors:
        raise ValidationFailed("invalid serving settings", code="invalid", fields=errors)
    before = _settings_values(settings)
    if canary_version is not None:
        settings.canary_version = canary_version
    for field, value in (
        ("canary_mode", canary_mode), ("canary_share", canary_share),
        ("requests_per_minute", requests_per_minute), ("learn_from_traffic", learn_from_traffic),
    ):  # fmt: skip
        if value is not None:
            setattr(settings, field, value)
    settings.save()
    after = _settings_values(settings)
    changed = {f: [before[f], after[f]] for f in SETTINGS_FIELDS if before[f] != after[f]}
    if changed:
        data_audit_record(
            action=DataAuditAction.SERVING_SETTINGS_CHANGED, subject=f"serving:{project.pk}",
            actor=actor, project=project, details={"changed": changed},
        )  # fmt: skip
    return settings


# ----------------------------------------------------------------------------- the target

ENGINE_CHOICES = ("auto", "transformers", "vllm")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,2})?)$")


@transaction.atomic
def serving_target_start(
    *, project, actor, alias: str = "", version: ModelVersion | None = None,
    engine: str = "auto", device: str = "auto",
) -> ServingTarget:  # fmt: skip
    """Ask for serving: ``alias`` (followed as it moves) or one pinned ``version``, on
    ``engine``. ``manage.py serve --watch`` starts it within a few seconds. Audited."""
    errors = {}
    if bool(alias) == (version is not None):
        errors["alias"] = "an alias or a version, not both"
    elif alias and not ModelAlias.objects.filter(project=project, name=alias).exists():
        errors["alias"] = "an alias of this project"
    elif version is not None and (
        version.project_id != project.pk or version.kind != VersionKind.POLICY
    ):
        errors["version"] = "a policy version of this project"
    if engine not in ENGINE_CHOICES:
        errors["engine"] = f"one of {list(ENGINE_CHOICES)}"
    if not isinstance(device, str) or not _DEVICE.match(device):
        errors["device"] = "auto, cpu, mps, cuda or cuda:<n>"
    if errors:
        raise ValidationFailed("nothing to serve", code="invalid", fields=errors)
    ServingTarget.objects.filter(project=project).select_for_update().first()
    target, _ = ServingTarget.objects.update_or_create(
        project=project,
        defaults={
            "alias": alias, "version": version, "enabled": True, "requested_by": actor,
            "options": {"engine": engine, "device": device}, "error": "",
        },
    )  # fmt: skip
    data_audit_record(
        action=DataAuditAction.SERVING_STARTED, subject=f"serving:{project.pk}", actor=actor,
        project=project, details={"alias": alias, "version": version and version.pk,
                                  "engine": engine, "device": device},
    )  # fmt: skip
    return target


@transaction.atomic
def serving_target_stop(*, project, actor) -> ServingTarget | None:
    """Stop serving: the watcher drains the target's engines (requests in flight finish) and
    stops them. Audited; stopping what is not on changes nothing."""
    target = ServingTarget.objects.select_for_update().filter(project=project).first()
    if target is None or not target.enabled:
        return target
    target.enabled = False
    target.requested_by = actor
    target.save(update_fields=["enabled", "requested_by", "updated_at"])
    data_audit_record(
        action=DataAuditAction.SERVING_STOPPED, subject=f"serving:{project.pk}", actor=actor,
        project=project, details={"alias": target.alias, "version": target.version_id},
    )  # fmt: skip
    return target


def serving_target_report(*, project_id: int, error: str, holder: str | None = None) -> None:
    """The watcher's word on an enabled target: why its supervisor's step failed (an engine
    that is not installed, the weights are gone), or '' once it works; the page shows it.
    With ``holder``, only while that watcher holds the target (a watcher that lost it has
    nothing more to say on it)."""
    targets = ServingTarget.objects.filter(project_id=project_id, enabled=True)
    if holder is not None:
        targets = targets.filter(holder=holder)
    targets.update(error=error[:2000])


# ----------------------------------------------------------------------------- the lease


@transaction.atomic
def serving_targets_claim(*, watcher: str, lease_s: float) -> list[ServingTarget]:
    """Take and renew ``watcher``'s leases; returns every target it holds now (enabled or not).

    One conditional UPDATE takes the enabled targets that are free, every target whose lease
    has expired (a disabled one too: its dead holder's engines must be failed), and renews the
    ones ``watcher`` holds. Two watchers claiming at once cannot both win: PostgreSQL makes
    the second wait for the first's row lock and re-checks the condition on the row the first
    wrote, which is then held and not expired. Lease times are the database's clock, so hosts'
    clocks need not agree.

    A watcher keeps its lease while any engine it started for the target is live (it hands a
    stopped target back only once its engines are stopped, see ``serving_targets_release``),
    so a live engine of a held target that another watcher started is a lost holder's (a dead
    or stalled host): it is marked failed here, in the same transaction, and the gateway stops
    routing to it. Its process, if its host lives, is drained and stopped by that host's
    watcher once it sees the target is no longer its own."""
    lease = ExpressionWrapper(
        Now() + Value(timedelta(seconds=lease_s)), output_field=DateTimeField()
    )
    claimable = (
        Q(holder=watcher)
        | Q(enabled=True, holder="")
        | (~Q(holder="") & Q(lease_expires_at__lt=Now()))
    )
    ServingTarget.objects.filter(claimable).update(holder=watcher, lease_expires_at=lease)
    held = list(ServingTarget.objects.filter(holder=watcher).order_by("project_id"))
    ServingEngine.objects.filter(
        project_id__in=[t.project_id for t in held], status__in=LIVE_ENGINE_STATUSES
    ).exclude(watcher__in=("", watcher)).update(
        status=EngineStatus.FAILED,
        stopped_at=timezone.now(),
        error=f"its watcher lost the lease; {watcher} took the serving target over",
    )
    return held


def serving_targets_release(*, watcher: str, project_ids: list[int] | None = None) -> int:
    """Hand back ``watcher``'s leases (of ``project_ids``, or all): another watcher takes the
    targets at its next poll instead of after the lease. The caller has stopped the engines
    it ran for them (a clean stop), or has none left (a stopped target, drained)."""
    held = ServingTarget.objects.filter(holder=watcher)
    if project_ids is not None:
        held = held.filter(project_id__in=project_ids)
    return held.update(holder="", lease_expires_at=None)


# ----------------------------------------------------------------------------- usage


class RateLimited(DomainError):
    """The key made its ``requests_per_minute`` in the last minute; ``retry_after`` seconds."""

    http_status = 429
    code = "rate_limited"


def served_response_start(
    *, project, token, user, route, requested_model: str, messages: list[dict], streamed: bool,
    shadow_of: ServedResponse | None = None, rate_limit: int | None = None,
) -> ServedResponse:  # fmt: skip
    """The usage record, written before the upstream call (``in_flight``: the supervisor
    does not stop an engine while it has any).

    With ``rate_limit`` (requests a minute), the key's recent records are counted and this one
    written under the key's row lock, so requests in flight together cannot all pass a count
    that none of them is in yet: RateLimited past the limit."""
    from models_registry.serving.selectors import rate_limit_retry_after

    with transaction.atomic():
        if rate_limit is not None:
            list(type(token).objects.select_for_update().filter(pk=token.pk).values_list("pk"))
            retry = rate_limit_retry_after(token=token, limit=rate_limit)
            if retry is not None:
                raise RateLimited(
                    f"This key may make {rate_limit} requests a minute.", retry_after=retry
                )
        return _served_response_create(
            project=project, token=token, user=user, route=route,
            requested_model=requested_model, messages=messages, streamed=streamed,
            shadow_of=shadow_of,
        )  # fmt: skip


def _served_response_create(
    *, project, token, user, route, requested_model, messages, streamed, shadow_of
) -> ServedResponse:
    return ServedResponse.objects.create(
        response_id=f"chatcmpl-{uuid.uuid4().hex}", project=project, token=token, user=user,
        version=route.version if shadow_of is None else route.shadow.version,
        engine=route.engine if shadow_of is None else route.shadow,
        requested_model=requested_model[:200],
        route="shadow" if shadow_of is not None else route.route, shadow_of=shadow_of,
        streamed=streamed, prompt_hash=prompt_messages_hash(messages),
    )  # fmt: skip


def served_response_finish(
    *, served: ServedResponse, ok: bool, http_status: int, prompt_tokens: int | None,
    completion_tokens: int | None, ttft_ms: float | None, latency_ms: float,
    messages: list[dict], answer: str,
) -> None:  # fmt: skip
    """Close the usage record; the conversation is kept (scrubbed) only with consent."""
    from models_registry.serving.selectors import serving_settings_of

    fields = {
        "status": ServedStatus.OK if ok else ServedStatus.FAILED,
        "http_status": http_status,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "ttft_ms": ttft_ms,
        "latency_ms": latency_ms,
        "finished_at": timezone.now(),
    }
    if ok and serving_settings_of(served.project).learn_from_traffic:
        from models_registry.serving.learning import scrub_conversation

        fields["messages"], fields["answer"] = scrub_conversation(messages, answer)
    ServedResponse.objects.filter(pk=served.pk).update(**fields)


# ----------------------------------------------------------------------------- feedback


def _served(project, token, response_id, field: str) -> ServedResponse:
    if not isinstance(response_id, str) or not response_id:
        raise ValidationFailed(f"{field} is required", code="invalid", fields={field: "required"})
    served = (
        ServedResponse.objects.select_related("version", "token")
        .filter(project=project, response_id=response_id, user_id=token.user_id)
        .exclude(route="shadow")
        .first()
    )
    if served is None:
        raise NotFound(f"no response {response_id!r} was served to you", code="unknown_response")
    if served.status != ServedStatus.OK:
        raise ValidationFailed(
            f"response {response_id!r} did not finish", code="invalid", fields={field: "unfinished"}
        )
    return served


def served_feedback_record(*, project, token, body: dict) -> ServedFeedback:
    """Thumbs (``{"response_id", "rating": "up"|"down"}``) or a preference between two
    answers to the same conversation (``{"chosen_id", "rejected_id"}``). With the project's
    consent, the conversation and answers become project data and a preference a label."""
    if "chosen_id" in body or "rejected_id" in body:
        chosen = _served(project, token, body.get("chosen_id"), "chosen_id")
        rejected = _served(project, token, body.get("rejected_id"), "rejected_id")
        if chosen.pk == rejected.pk or chosen.prompt_hash != rejected.prompt_hash:
            raise ValidationFailed(
                "a preference compares two answers to the same conversation",
                code="invalid",
                fields={"rejected_id": "another answer to the same messages"},
            )
        feedback = ServedFeedback(
            project=project, token=token, kind=FeedbackKind.PREFERENCE, response=chosen,
            rejected=rejected,
        )  # fmt: skip
    else:
        rating = body.get("rating")
        if rating not in ("up", "down"):
            raise ValidationFailed(
                "rating must be 'up' or 'down' (or send chosen_id and rejected_id)",
                code="invalid",
                fields={"rating": "'up' or 'down'"},
            )
        served = _served(project, token, body.get("response_id"), "response_id")
        feedback = ServedFeedback(
            project=project, token=token, kind=FeedbackKind.THUMBS, response=served,
            thumbs_up=rating == "up",
        )  # fmt: skip
    with transaction.atomic():
        feedback.save()
        from models_registry.serving.selectors import serving_settings_of

        if serving_settings_of(project).learn_from_traffic:
            from models_registry.serving.learning import served_feedback_learn

            label = served_feedback_learn(feedback=feedback)
            if label is not None:
                feedback.learned_label = label
                feedback.save(update_fields=["learned_label"])
    return feedback
