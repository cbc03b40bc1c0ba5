"""Reads of the serving domain: which engine answers a request, how busy a key is."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from models_registry.models import ModelAlias, ModelVersion
from models_registry.serving.models import (
    LIVE_ENGINE_STATUSES,
    CanaryMode,
    EngineStatus,
    ServedResponse,
    ServedStatus,
    ServingEngine,
    ServingSettings,
    ServingTarget,
)

RATE_WINDOW = timedelta(seconds=60)
# "policy v3", "policy-v3", "policy@v3": a version by its name and number.
_VERSION_NAME = re.compile(r"^(?P<name>.+?)[ @-]v(?P<number>\d+)$")


class UnknownModel(Exception):
    pass


class NoEngine(Exception):
    pass


@dataclass(frozen=True)
class Route:
    engine: ServingEngine
    version: ModelVersion
    route: str  # primary | split
    shadow: ServingEngine | None = None


def serving_settings_of(project) -> ServingSettings:
    return ServingSettings.objects.filter(project=project).first() or ServingSettings(
        project=project
    )


def model_resolve(*, project, model: str) -> tuple[ModelVersion, str]:
    """(version, alias name or '') for a request's ``model``: an alias, or a version by
    ``<name> v<n>`` / ``<name>-v<n>`` / ``<name>@v<n>``."""
    alias = ModelAlias.objects.select_related("version").filter(project=project, name=model).first()
    if alias is not None:
        return alias.version, alias.name
    match = _VERSION_NAME.match(model.strip())
    if match:
        version = ModelVersion.objects.filter(
            project=project, name=match["name"], version=int(match["number"])
        ).first()
        if version is not None:
            return version, ""
    raise UnknownModel(model)


def _ready(project) -> list[ServingEngine]:
    return list(
        ServingEngine.objects.filter(project=project, status=EngineStatus.READY)
        .select_related("version")
        .order_by("-id")
    )


def gateway_route(*, project, model: str, rng: random.Random | None = None) -> Route:
    """The engine that answers ``model`` now.

    The version's newest ready engine; while the alias's new target is still loading, the
    engine that serves the alias now (the switch happens when the new one is healthy). A
    request for the alias may go to the canary (split) or be shadowed by it."""
    version, alias = model_resolve(project=project, model=model)
    ready = _ready(project)
    engine = next((e for e in ready if e.version_id == version.pk and e.role == "primary"), None)
    engine = engine or next((e for e in ready if e.version_id == version.pk), None)
    if engine is None and alias:
        engine = next((e for e in ready if e.alias == alias and e.role == "primary"), None)
    if engine is None:
        raise NoEngine(model)
    served_version = engine.version if engine.version_id != version.pk else version
    if not alias:
        return Route(engine, served_version, "primary")
    settings = serving_settings_of(project)
    if settings.canary_mode == CanaryMode.OFF or settings.canary_version_id is None:
        return Route(engine, served_version, "primary")
    candidate = next((e for e in ready if e.version_id == settings.canary_version_id), None)
    if candidate is None or candidate.pk == engine.pk:
        return Route(engine, served_version, "primary")
    if settings.canary_mode == CanaryMode.SHADOW:
        return Route(engine, served_version, "primary", shadow=candidate)
    if (rng or random).random() < settings.canary_share:
        return Route(candidate, candidate.version, "split")
    return Route(engine, served_version, "primary")


def rate_limit_retry_after(*, token, limit: int) -> int | None:
    """Seconds until ``token`` may call again, or None while under ``limit`` per minute.

    Counts the key's usage records of the last minute (shadow calls are the gateway's own)."""
    since = timezone.now() - RATE_WINDOW
    recent = ServedResponse.objects.filter(token=token, created_at__gt=since).filter(
        ~Q(route="shadow")
    )
    times = list(recent.order_by("-created_at").values_list("created_at", flat=True)[:limit])
    if len(times) < limit:
        return None
    oldest = times[-1]
    return max(1, int((oldest + RATE_WINDOW - timezone.now()).total_seconds()) + 1)


def engine_in_flight(*, engine: ServingEngine) -> int:
    return ServedResponse.objects.filter(engine=engine, status=ServedStatus.IN_FLIGHT).count()


# ----------------------------------------------------------------------------- the Serving page

USAGE_WINDOW = timedelta(hours=24)


def serving_engines_recent(*, project, stopped: int = 5) -> list[ServingEngine]:
    """The engines running now (starting, ready, draining), then the last few stopped."""
    engines = ServingEngine.objects.filter(project=project).select_related("version")
    live = list(engines.filter(status__in=LIVE_ENGINE_STATUSES).order_by("-id"))
    ended = list(engines.exclude(status__in=LIVE_ENGINE_STATUSES).order_by("-id")[:stopped])
    return live + ended


def serving_usage(*, project, since=None) -> dict:
    """The gateway's answers since ``since`` (the last 24 h): requests, failures, tokens and the
    median time to the first token. Shadow calls are the gateway's own and left out."""
    since = since or timezone.now() - USAGE_WINDOW
    served = ServedResponse.objects.filter(project=project, created_at__gte=since).exclude(
        route="shadow"
    )
    totals = served.aggregate(
        requests=Count("id"),
        failures=Count("id", filter=Q(status=ServedStatus.FAILED)),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
    )
    timed = served.filter(ttft_ms__isnull=False).order_by("ttft_ms")
    n = timed.count()
    middle = list(timed.values_list("ttft_ms", flat=True)[(n - 1) // 2 : n // 2 + 1]) if n else []
    return {
        "since": since,
        "requests": totals["requests"],
        "failures": totals["failures"],
        "prompt_tokens": totals["prompt_tokens"] or 0,
        "completion_tokens": totals["completion_tokens"] or 0,
        "ttft_p50_ms": round(sum(middle) / len(middle), 1) if middle else None,
    }


def watcher_host(holder: str) -> str | None:
    """The host in a watcher's lease id ('<hostname>:<pid>:<random>'), None for no holder."""
    return holder.rsplit(":", 2)[0] if holder else None


def serving_overview(*, project) -> dict:
    """The Serving page and ``GET /api/projects/<id>/serving/``: settings, target, engines and
    the last 24 h of usage."""
    settings = serving_settings_of(project)
    target = ServingTarget.objects.filter(project=project).select_related("requested_by").first()
    return {
        "gateway_path": f"/gateway/{project.pk}/v1/",
        "settings": {
            "canary_version": settings.canary_version_id,
            "canary_mode": settings.canary_mode,
            "canary_share": settings.canary_share,
            "requests_per_minute": settings.requests_per_minute,
            "learn_from_traffic": settings.learn_from_traffic,
        },
        "target": None
        if target is None
        else {
            "alias": target.alias,
            "version": target.version_id,
            "enabled": target.enabled,
            "engine": target.options.get("engine", "auto"),
            "device": target.options.get("device", "auto"),
            "requested_by": target.requested_by.username if target.requested_by else None,
            "updated_at": target.updated_at,
            "error": target.error,
            "served_by": watcher_host(target.holder),
            "lease_expires_at": target.lease_expires_at,
        },
        "engines": [
            {
                "id": e.pk,
                "version": e.version_id,
                "version_label": e.version.label,
                "alias": e.alias,
                "role": e.role,
                "engine": e.engine,
                "status": e.status,
                "started_at": e.started_at,
                "ready_at": e.ready_at,
                "stopped_at": e.stopped_at,
                "error": e.error,
                "host": e.host,
            }
            for e in serving_engines_recent(project=project)
        ],
        "usage": serving_usage(project=project),
    }
