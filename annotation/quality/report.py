"""From the cached sums to the figures a dashboard, the API and the CLI show (no Django).

The refresh calls ``quality_report`` once after applying new contributions and stores the
result, so a page reads one JSON document instead of computing anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

import numpy as np

from annotation.quality.config import QualityConfig
from annotation.quality.contributions import (
    MICRO,
    OUTCOMES,
    RUBRIC_SCORES,
    STRENGTH_SCALE,
    dense_agreement,
    dense_counts,
)
from annotation.quality.metrics import (
    DURATION_EDGES_S,
    INTERVAL,
    NOMINAL,
    ORDINAL,
    AgreementStats,
    AnnotatorCounters,
    annotator_summary,
    histogram_quantile,
    position_bias,
)

REPORT_VERSION = 1


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def _stats(data: Mapping | None, values) -> AgreementStats:
    values = list(values)
    return AgreementStats.from_dict(
        {"values": values, "by_size": dense_agreement(data, len(values))}
    )


def agreement_summary(agreement: Mapping, kind: str) -> dict:
    """Krippendorff's alpha (each level that applies), Fleiss' kappa, % agreement per metric."""
    out = {}
    if kind == "pairwise":
        outcome = _stats(agreement.get("outcome"), OUTCOMES)
        strength = _stats(agreement.get("strength"), range(len(STRENGTH_SCALE)))
        out["outcome"] = {
            "units": outcome.units,
            "alpha_nominal": _rounded(outcome.alpha(NOMINAL)),
            "fleiss_kappa": _rounded(outcome.fleiss_kappa()),
            "observed_agreement": _rounded(outcome.observed_agreement()),
        }
        out["strength"] = {
            "units": strength.units,
            "alpha_ordinal": _rounded(strength.alpha(ORDINAL)),
        }
    for key, data in sorted(agreement.items()):
        if key.startswith("rubric:"):
            stats = _stats(data, RUBRIC_SCORES)
            out[key] = {
                "units": stats.units,
                "alpha_interval": _rounded(stats.alpha(INTERVAL)),
                "alpha_ordinal": _rounded(stats.alpha(ORDINAL)),
                "observed_agreement": _rounded(stats.observed_agreement()),
            }
    return out


def kind_summary(kind: str, stats: Mapping) -> dict:
    labels = int(stats.get("labels", 0))
    durations = dense_counts(stats.get("durations"), len(DURATION_EDGES_S))
    distribution = dict(stats.get("distribution") or {})
    out = {
        "kind": kind,
        "tasks": int(stats.get("tasks", 0)),
        "labels": labels,
        "skips": int(stats.get("skips", 0)),
        "flagged": int(stats.get("flagged", 0)),
        "gold_labels": int(stats.get("gold_labels", 0)),
        "disputed": int(stats.get("disputed", 0)),
        "distribution": distribution,
        "agreement": agreement_summary(stats.get("agreement") or {}, kind),
        "durations": {
            "edges_seconds": list(DURATION_EDGES_S),
            "counts": durations,
            "median_seconds": _rounded(histogram_quantile(durations, 0.5), 2),
        },
    }
    if kind == "pairwise":
        decided = sum(distribution.get(o, 0) for o in OUTCOMES)
        out["tie_rate"] = _rounded(distribution.get("tie", 0) / decided) if decided else None
        out["both_bad_rate"] = (
            _rounded(distribution.get("both_bad", 0) / decided) if decided else None
        )
    if kind == "ranking":
        w = stats.get("kendall_w") or {}
        tasks = int(w.get("tasks", 0))
        out["kendall_w_mean"] = _rounded(w.get("sum_micro", 0) / MICRO / tasks) if tasks else None
        out["kendall_w_tasks"] = tasks
    return out


def daily_series(kinds: Mapping[str, Mapping]) -> list[dict]:
    """Per day: labels, completed tasks, pairwise outcome alpha of that day and cumulative."""
    days: dict[str, dict] = {}
    for kind, stats in kinds.items():
        for day, row in (stats.get("days") or {}).items():
            out = days.setdefault(day, {"labels": 0, "completed": 0, "agreement": None})
            out["labels"] += int(row.get("labels", 0))
            out["completed"] += int(row.get("completed", 0))
            if kind == "pairwise" and row.get("agreement"):
                out["agreement"] = row["agreement"]
    series = []
    cumulative = AgreementStats(values=OUTCOMES)
    for day in sorted(days):
        row = days[day]
        today = _stats(row["agreement"], OUTCOMES)
        cumulative = cumulative + today
        series.append(
            {
                "day": day,
                "labels": row["labels"],
                "completed": row["completed"],
                "alpha": _rounded(today.alpha(NOMINAL)),
                "alpha_cumulative": _rounded(cumulative.alpha(NOMINAL)),
            }
        )
    return series


def sparse_cohen_kappa(cells: Mapping[str, int]) -> float | None:
    """Cohen's kappa from sparse confusion cells {"i,j": n} (metrics.cohen_kappa, densely)."""
    n = diagonal = 0
    rows: dict[str, int] = {}
    cols: dict[str, int] = {}
    for key, count in cells.items():
        i, j = key.split(",")
        n += count
        rows[i] = rows.get(i, 0) + count
        cols[j] = cols.get(j, 0) + count
        if i == j:
            diagonal += count
    if n == 0:
        return None
    expected = sum(r * cols.get(k, 0) for k, r in rows.items()) / n**2
    if abs(expected - 1.0) < 1e-12:
        return None
    return (diagonal / n - expected) / (1 - expected)


def pair_kappas(pairs: Mapping[str, Mapping]) -> tuple[dict, dict[int, list[float]]]:
    """Cohen's kappa of every annotator pair (pairwise outcomes) and each annotator's list."""
    by_annotator: dict[int, list[float]] = {}
    kappas = []
    for key, data in pairs.items():
        kappa = sparse_cohen_kappa(data.get("cells") or {})
        if kappa is None:
            continue
        kappas.append(kappa)
        for a in key.split("-"):
            by_annotator.setdefault(int(a), []).append(kappa)
    summary = {
        "pairs": len(kappas),
        "mean": _rounded(np.mean(kappas)) if kappas else None,
        "median": _rounded(np.median(kappas)) if kappas else None,
    }
    return summary, by_annotator


def _sparkline(days: Mapping, last_day: str | None, length: int) -> dict:
    if last_day is None:
        return {"labels": [0] * length, "agreement": [None] * length}
    end = date.fromisoformat(last_day)
    labels, agreement = [], []
    for offset in range(length - 1, -1, -1):
        row = days.get((end - timedelta(days=offset)).isoformat()) or {}
        labels.append(int(row.get("labels", 0)))
        compared = int(row.get("compared", 0))
        agreement.append(_rounded(row.get("agree", 0) / compared, 3) if compared else None)
    return {"labels": labels, "agreement": agreement}


def annotator_rows(
    annotators: Mapping[int, Mapping],
    *,
    config: QualityConfig,
    names: Mapping[int, str],
    paused: Mapping[int, bool],
    kappas_by_annotator: Mapping[int, list[float]],
    last_day: str | None,
) -> list[dict]:
    counters = {a: AnnotatorCounters.from_dict(d) for a, d in annotators.items()}
    bias = position_bias(
        {a: (c.left, c.right) for a, c in counters.items()}, alpha=config.position_bias_alpha
    )
    rows = []
    for a in sorted(counters, key=lambda a: names.get(a, str(a))):
        s = annotator_summary(counters[a], fast_seconds=config.fast_seconds)
        b = bias[a]
        alerts = []
        if b.flagged:
            alerts.append("position_bias")
        if s.fast_share is not None and s.fast_share > config.fast_share_alert:
            alerts.append("too_fast")
        failing = (
            s.gold_answered >= config.gold_min_answers
            and s.gold_accuracy is not None
            and s.gold_accuracy < config.gold_threshold
        )
        if failing:
            alerts.append("gold_below_threshold")
        if paused.get(a):
            alerts.append("paused")
        kappas = kappas_by_annotator.get(a) or []
        rows.append(
            {
                "id": a,
                "name": names.get(a, str(a)),
                "labels": s.labels,
                "skips": counters[a].skips,
                "skip_rate": _rounded(s.skip_rate),
                "flag_rate": _rounded(s.flag_rate),
                "consensus_agreement": _rounded(s.consensus_agreement),
                "consensus_compared": s.consensus_compared,
                "cohen_kappa_mean": _rounded(np.mean(kappas)) if kappas else None,
                "consensus_tau": _rounded(s.consensus_tau),
                "gold_accuracy": _rounded(s.gold_accuracy),
                "gold_answered": s.gold_answered,
                "gold_failing": failing,
                "median_seconds": _rounded(s.median_seconds, 2),
                "fast_share": _rounded(s.fast_share),
                "position_bias": {
                    "left": b.left,
                    "decided": b.decided,
                    "share_left": _rounded(b.share_left),
                    "p_value": None if b.p_value is None else float(f"{b.p_value:.3g}"),
                    "p_adjusted": None if b.p_adjusted is None else float(f"{b.p_adjusted:.3g}"),
                    "flagged": b.flagged,
                },
                "paused": bool(paused.get(a)),
                "alerts": alerts,
                "sparkline": _sparkline(
                    annotators[a].get("days") or {}, last_day, config.sparkline_days
                ),
            }
        )
    return rows


def quality_report(
    *,
    kinds: Mapping[str, Mapping],
    annotators: Mapping[int, Mapping],
    pairs: Mapping[str, Mapping],
    config: QualityConfig,
    names: Mapping[int, str] | None = None,
    paused: Mapping[int, bool] | None = None,
    tasks_total: int | None = None,
    tasks_done: int | None = None,
) -> dict:
    """Every figure of the dashboard, JSON-ready."""
    series = daily_series(kinds)
    last_day = series[-1]["day"] if series else None
    pair_summary, kappas_by_annotator = pair_kappas(pairs)
    return {
        "version": REPORT_VERSION,
        "config": config.to_dict(),
        "progress": {
            "tasks_total": tasks_total,
            "tasks_done": tasks_done,
            "labels": sum(int(s.get("labels", 0)) for s in kinds.values()),
        },
        "kinds": {k: kind_summary(k, s) for k, s in sorted(kinds.items())},
        "cohen_kappa": pair_summary,
        "series": series,
        "annotators": annotator_rows(
            annotators,
            config=config,
            names=names or {},
            paused=paused or {},
            kappas_by_annotator=kappas_by_annotator,
            last_day=last_day,
        ),
    }
