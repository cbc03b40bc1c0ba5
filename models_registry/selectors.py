"""Reads for the registry: versions, lineage, aliases, audit trail, review results.

Review results come from ordinary pairwise labels: any pairwise task of the project whose two
responses were written by two registered versions (``Response.model_name`` is the version's
``response_model_name``) counts as one comparison per label. The label's canonical outcome
(``A`` is position 0) is turned into the versions' outcome, so the sides annotators saw do not
matter. ``both_bad`` expresses no preference between the two and counts as a tie.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.core.paginator import Paginator
from django.db.models import Q

from annotation.models import Label, Project, TaskItem, TaskKind
from models_registry import stats
from models_registry.models import AuditEvent, ModelAlias, ModelVersion

CHAMPION = "champion"


def model_version_list(*, project: Project, kind: str | None = None) -> list[ModelVersion]:
    versions = ModelVersion.objects.filter(project=project).select_related("parent")
    if kind:
        versions = versions.filter(kind=kind)
    return list(versions.order_by("name", "version"))


def alias_target(*, project: Project, name: str = CHAMPION) -> ModelVersion | None:
    alias = ModelAlias.objects.select_related("version").filter(project=project, name=name).first()
    return alias.version if alias else None


def alias_list(*, project: Project) -> list[ModelAlias]:
    return list(ModelAlias.objects.filter(project=project).select_related("version"))


def aliases_of(version: ModelVersion) -> list[str]:
    return list(version.aliases.values_list("name", flat=True))


def model_version_ancestors(version: ModelVersion) -> list[ModelVersion]:
    """Parent, grandparent, ... up to the root (nearest first)."""
    chain, seen = [], {version.pk}
    current = version.parent
    while current is not None and current.pk not in seen:
        chain.append(current)
        seen.add(current.pk)
        current = current.parent
    return chain


def model_version_tree(*, project: Project) -> list[dict]:
    """Roots with nested children: ``[{"version": v, "children": [...]}, ...]``."""
    versions = model_version_list(project=project)
    children: dict[int | None, list[ModelVersion]] = {}
    for v in versions:
        children.setdefault(v.parent_id, []).append(v)

    def node(v: ModelVersion) -> dict:
        return {"version": v, "children": [node(c) for c in children.get(v.pk, [])]}

    return [node(v) for v in children.get(None, [])]


def audit_events(
    *, project: Project | None = None, version: ModelVersion | None = None
) -> list[AuditEvent]:
    events = AuditEvent.objects.select_related("version", "previous_version")
    if project is not None:
        events = events.filter(project=project)
    if version is not None:
        events = events.filter(version=version) | events.filter(previous_version=version)
    return list(events.order_by("id"))


AUDIT_PAGE_SIZE = 50


@dataclass(frozen=True)
class AuditEventPage:
    events: list[AuditEvent]
    """Newest first."""
    number: int
    pages: int
    total: int
    """Events matching the filters, over all pages."""


def audit_event_page(
    *,
    project: Project,
    version: ModelVersion | None = None,
    actor_name: str = "",
    action: str = "",
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
    page: int = 1,
    per_page: int = AUDIT_PAGE_SIZE,
) -> AuditEventPage:
    """One page of the project's audit trail, filtered on the server, newest first.

    ``version`` matches the events about it and the alias moves away from it (as
    ``audit_events`` does); ``actor_name`` is the name recorded at the time; the dates are
    inclusive days in the site's time zone. A page past the last is the last page."""
    events = AuditEvent.objects.filter(project=project)
    if version is not None:
        events = events.filter(version=version) | events.filter(previous_version=version)
    if actor_name:
        events = events.filter(actor_name=actor_name)
    if action:
        events = events.filter(action=action)
    if date_from is not None:
        events = events.filter(created_at__date__gte=date_from)
    if date_to is not None:
        events = events.filter(created_at__date__lte=date_to)
    events = events.select_related("version", "previous_version").order_by("-id")
    paginator = Paginator(events, per_page)
    current = paginator.get_page(page)
    return AuditEventPage(
        events=list(current.object_list),
        number=current.number,
        pages=paginator.num_pages,
        total=paginator.count,
    )


def audit_actor_names(*, project: Project) -> list[str]:
    """Everyone who appears in the project's audit trail, for the actor filter."""
    return sorted(
        set(AuditEvent.objects.filter(project=project).values_list("actor_name", flat=True))
    )


# --------------------------------------------------------------------------- review results


def review_comparisons(
    *, project: Project, versions: list[ModelVersion] | None = None
) -> list[stats.Comparison]:
    """Every pairwise label between two versions of the project, as version-id comparisons."""
    versions = versions if versions is not None else model_version_list(project=project)
    by_model_name = {v.response_model_name: v.pk for v in versions}
    if len(by_model_name) < 2:
        return []
    items = TaskItem.objects.filter(
        task__project=project,
        task__kind=TaskKind.PAIRWISE,
        response__model_name__in=list(by_model_name),
        response__origin="model",
    ).values_list("task_id", "position", "response__model_name")
    sides: dict[int, dict[int, int]] = {}
    for task_id, position, model_name in items:
        sides.setdefault(task_id, {})[position] = by_model_name[model_name]
    pairs = {
        task_id: (s[0], s[1]) for task_id, s in sides.items() if set(s) == {0, 1} and s[0] != s[1]
    }
    comparisons = []
    labels = Label.objects.filter(task_id__in=list(pairs), kind=TaskKind.PAIRWISE)
    for task_id, payload in labels.values_list("task_id", "payload").order_by("id"):
        a, b = pairs[task_id]
        outcome = payload.get("outcome")
        mapped = {"A": "a", "B": "b", "tie": "tie", "both_bad": "tie"}.get(outcome)
        if mapped is not None:
            comparisons.append(stats.Comparison(a, b, mapped))
    return comparisons


@dataclass(frozen=True)
class ReviewSummary:
    candidate_id: int
    opponent_id: int | None
    labels: int
    win_rate: stats.WinRate | None

    def as_evidence(self) -> dict:
        evidence = {
            "candidate_version": self.candidate_id,
            "opponent_version": self.opponent_id,
            "review_labels": self.labels,
        }
        if self.win_rate is not None:
            w = self.win_rate
            evidence.update(
                wins=w.wins,
                losses=w.losses,
                ties=w.ties,
                win_rate=round(w.win_rate, 6),
                win_rate_ci_95=[round(w.ci_low, 6), round(w.ci_high, 6)],
                ties_counted_as="half a win",
                interval="Wilson score",
            )
        return evidence


def review_summary(
    *, candidate: ModelVersion, opponent: ModelVersion | None = None
) -> ReviewSummary:
    """The candidate against ``opponent`` (default: the project's champion)."""
    if opponent is None:
        opponent = alias_target(project=candidate.project)
    if opponent is None or opponent.pk == candidate.pk:
        return ReviewSummary(candidate.pk, None, 0, None)
    comparisons = review_comparisons(project=candidate.project, versions=[candidate, opponent])
    result = stats.head_to_head(comparisons, candidate.pk, opponent.pk) if comparisons else None
    return ReviewSummary(candidate.pk, opponent.pk, len(comparisons), result)


def leaderboard(*, project: Project, bootstrap_samples: int = 1000) -> list[dict]:
    """Bradley-Terry rows for every version with reviews, strongest first.

    Each item: ``row`` (``stats.LeaderboardRow``), ``version``, ``aliases`` it holds (names),
    ``win_rate`` over all its comparisons (``stats.WinRate``: ties half a win, Wilson 95%) and
    ``rank_upper_bound`` (1 + the versions whose interval lies wholly above its own)."""
    versions = {v.pk: v for v in model_version_list(project=project, kind="policy")}
    rows = stats.leaderboard(
        review_comparisons(project=project, versions=list(versions.values())),
        bootstrap_samples=bootstrap_samples,
    )
    aliases: dict[int, list[str]] = {}
    for alias in ModelAlias.objects.filter(project=project).order_by("name"):
        aliases.setdefault(alias.version_id, []).append(alias.name)
    upper_bounds = stats.rank_upper_bounds(rows)
    return [
        {
            "row": row,
            "version": versions[row.version],
            "aliases": aliases.get(row.version, []),
            "win_rate": stats.win_rate(row.wins, row.losses, row.ties),
            "rank_upper_bound": upper_bound,
        }
        for row, upper_bound in zip(rows, upper_bounds, strict=True)
    ]


def model_versions_trained_on(*, snapshot_ids: list[int], run_ids: list[int]) -> list[int]:
    """Ids of the versions trained on these snapshots or made by these runs: what keeps what it
    learnt from a withdrawn snapshot (nothing removes a text from weights; docs/security.md)."""
    if not snapshot_ids and not run_ids:
        return []
    return list(
        ModelVersion.objects.filter(
            Q(dataset_snapshot_id__in=snapshot_ids) | Q(training_run_id__in=run_ids)
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def model_versions_for_sealed_text(*, details: dict, **_context) -> None:
    """``annotation.services.hooks.text_sealed_hooks`` (after rlhf's, which withdrew the
    snapshots): the versions trained on them, into the ``text_sealed`` audit details."""
    details["model_versions"] = model_versions_trained_on(
        snapshot_ids=details.get("withdrawn_snapshots", []),
        run_ids=details.get("training_runs", []),
    )
