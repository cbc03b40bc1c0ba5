"""What one task adds to the quality caches, from its labels alone (no Django).

A task's *facts* are the few fields of its labels, skips and gold answer that quality needs,
as plain JSON (stored on the task's cache row). ``task_contribution(facts)`` turns them into
nested integer counts for three kinds of cache rows: the project's (one per task kind), each
annotator's, and each pair of annotators'. A cache row holds the sum over all tasks. When a
task changes, the refresh subtracts the contribution of the facts it last applied and adds the
new one (``nested_add``): an update costs O(labels of the changed tasks), and because every
count is an integer it equals a full recompute exactly, in any order.

Facts of a task::

    {"kind": "pairwise", "items": [response_id, ...], "gold": expected | None,
     "done_day": "YYYY-MM-DD" | None,
     "labels": [{"a": annotator_id, "v": value, "s": "l" | "r" | None, "d": ms | None,
                 "f": 0 | 1, "g": 0 | 1, "day": "YYYY-MM-DD"}, ...],
     "skips": [{"a": annotator_id, "day": "YYYY-MM-DD"}, ...]}

with the value by kind: pairwise ``[outcome, strength]``, ranking the tiers (best first),
rubric ``{response_id: {dimension: score}}``, correction None; ``"g": 0`` marks a label given
before its task became gold (it does not count as a gold answer).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import numpy as np

from annotation.quality.metrics import (
    consensus_tau,
    duration_bin,
    kendall_w,
    leave_one_out_plurality,
    tiers_to_ranks,
)

PAIRWISE = "pairwise"
RANKING = "ranking"
RUBRIC = "rubric"
CORRECTION = "correction"

OUTCOMES = ("A", "B", "tie", "both_bad")
# The strength scale, from "A much better" to "B much better"; both-bad is off the scale.
STRENGTH_SCALE = ("A:strong", "A:clear", "A:slight", "tie", "B:slight", "B:clear", "B:strong")
# Rubric scores are counted over a fixed domain so every task's counts line up; interval
# distances use the numbers themselves, so unused values change nothing.
RUBRIC_SCORES = tuple(range(11))

MICRO = 1_000_000  # floats (Kendall's W and tau) are accumulated as integers in millionths


# --------------------------------------------------------------------------------------------
# Facts from canonical label payloads
# --------------------------------------------------------------------------------------------


def label_value(kind: str, payload: Mapping):
    """The part of a canonical payload (see annotation.labels) that agreement is about."""
    if kind == PAIRWISE:
        return [payload.get("outcome"), payload.get("strength")]
    if kind == RANKING:
        return payload.get("ranking")
    if kind == RUBRIC:
        return payload.get("scores")
    return None


def label_side(kind: str, payload: Mapping) -> str | None:
    """'l' or 'r' for a pairwise decision for the response shown on that side."""
    if kind != PAIRWISE or payload.get("outcome") not in ("A", "B"):
        return None
    side = payload.get("chosen_side")
    return {"left": "l", "right": "r"}.get(side)


def gold_matches(kind: str, expected, value) -> bool:
    """Whether a label's value meets a gold task's expected answer.

    pairwise: the same outcome (strength is a matter of degree, not of correctness);
    ranking: the same best tier; rubric: every score within one point of the expected one.
    """
    if kind == PAIRWISE:
        return value is not None and value[0] == expected[0]
    if kind == RANKING:
        return bool(value) and sorted(value[0]) == sorted(expected[0])
    if kind == RUBRIC:
        try:
            return all(
                abs(int(value[r][d]) - int(score)) <= 1
                for r, dims in expected.items()
                for d, score in dims.items()
            )
        except (KeyError, TypeError, ValueError):
            return False
    return False


# --------------------------------------------------------------------------------------------
# Nested integer counts
# --------------------------------------------------------------------------------------------


def _is_zero(value) -> bool:
    if isinstance(value, dict):
        return not value
    if isinstance(value, list):
        return all(_is_zero(v) for v in value)
    return value == 0


def _copy(value):
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _list_accumulate(target: list, delta: list, sign: int) -> list:
    if len(target) != len(delta):
        raise ValueError("cannot add count vectors of different lengths")
    for i, d in enumerate(delta):
        if isinstance(d, list):
            _list_accumulate(target[i], d, sign)
        else:
            target[i] += sign * int(d)
    return target


def nested_accumulate(target: dict, delta: Mapping | None, sign: int = 1) -> dict:
    """target += sign·delta in place, over nested dicts of ints and (nested) lists of ints.

    Keys whose counts fall to zero are dropped, so a cache row holds only what exists.
    In place because a cache row's sums hold thousands of keys (annotator pairs, days) and a
    refresh adds thousands of task contributions to them.
    """
    for key, value in (delta or {}).items():
        if isinstance(value, dict):
            sub = target.get(key)
            if not isinstance(sub, dict):
                sub = target[key] = {}
            nested_accumulate(sub, value, sign)
            if not sub:
                del target[key]
        elif isinstance(value, list):
            current = target.get(key)
            if current:
                _list_accumulate(current, value, sign)
            else:
                current = target[key] = _list_accumulate(_zeros_like(value), value, sign)
            if _is_zero(current):
                del target[key]
        else:
            total = target.get(key, 0) + sign * int(value)
            if total:
                target[key] = total
            else:
                target.pop(key, None)
    return target


def _zeros_like(value):
    if isinstance(value, list):
        return [_zeros_like(v) for v in value]
    return 0


def nested_add(base, delta, sign: int = 1):
    """base + sign·delta as a new value (see nested_accumulate); base is left unchanged."""
    if delta is None:
        return base
    if isinstance(delta, dict):
        return nested_accumulate(_copy(base) if base else {}, delta, sign)
    if isinstance(delta, list):
        return _list_accumulate(_copy(base) if base else _zeros_like(delta), delta, sign)
    return (base or 0) + sign * int(delta)


def _unit(counts: np.ndarray) -> dict:
    """One unit's share of an AgreementStats, by unit size, in sparse form.

    ``{"m": {"units": 1, "totals": {"i": n}, "pairs": {"i,j": n}}}``: only the values the unit
    holds (see ``dense_agreement`` for AgreementStats' dense form).
    """
    m = int(counts.sum())
    if m < 2:
        return {}
    present = [(i, int(c)) for i, c in enumerate(counts.tolist()) if c]
    pairs = {}
    for i, ci in present:
        for j, cj in present:
            n = ci * cj - (ci if i == j else 0)
            if n:
                pairs[f"{i},{j}"] = n
    return {str(m): {"units": 1, "totals": {str(i): c for i, c in present}, "pairs": pairs}}


def dense_agreement(by_size: Mapping | None, size: int) -> dict:
    """Sparse sums of ``_unit`` as AgreementStats.to_dict's ``by_size`` (dense lists)."""
    out = {}
    for m, d in (by_size or {}).items():
        totals = [0] * size
        for i, n in (d.get("totals") or {}).items():
            totals[int(i)] = n
        pairs = [[0] * size for _ in range(size)]
        for key, n in (d.get("pairs") or {}).items():
            i, j = key.split(",")
            pairs[int(i)][int(j)] = n
        out[m] = {"units": d.get("units", 0), "totals": totals, "pairs": pairs}
    return out


def dense_counts(sparse: Mapping | None, size: int) -> list[int]:
    """A sparse {"bin": count} as a list of ``size`` counts."""
    out = [0] * size
    for i, n in (sparse or {}).items():
        out[int(i)] = n
    return out


def _counts(indices, size: int) -> np.ndarray:
    return np.bincount(np.asarray(indices, dtype=np.int64), minlength=size).astype(np.int64)


# --------------------------------------------------------------------------------------------
# One task's contribution
# --------------------------------------------------------------------------------------------


def task_agreement(facts: Mapping) -> float | None:
    """The task's own agreement, for the reviewer queue (lowest first); None under two labels.

    pairwise: share of agreeing pairs of outcomes; ranking: Kendall's W; rubric: share of
    agreeing pairs of scores over every (response, dimension).
    """
    labels = facts.get("labels") or []
    if len(labels) < 2:
        return None
    kind = facts["kind"]
    if kind == PAIRWISE:
        outcomes = [lb["v"][0] for lb in labels]
        agree = sum(a == b for a, b in combinations(outcomes, 2))
        return agree / (len(outcomes) * (len(outcomes) - 1) / 2)
    if kind == RANKING:
        items = facts["items"]
        return kendall_w(np.array([tiers_to_ranks(lb["v"], items) for lb in labels]))
    if kind == RUBRIC:
        agree = total = 0
        for first, second in combinations(labels, 2):
            for r, dims in (first["v"] or {}).items():
                for d, score in dims.items():
                    total += 1
                    agree += (second["v"] or {}).get(r, {}).get(d) == score
        return agree / total if total else None
    return None


def task_contribution(facts: Mapping) -> tuple[dict, dict[int, dict], dict[str, dict]]:
    """(project part, {annotator: part}, {"a-b": part}) of one task; see the module docstring."""
    kind = facts["kind"]
    labels = facts.get("labels") or []
    skips = facts.get("skips") or []
    is_gold = facts.get("gold") is not None

    project: dict = {
        "tasks": 1 if labels else 0,
        "labels": len(labels),
        "skips": len(skips),
        "flagged": sum(1 for lb in labels if lb.get("f")),
        "durations": {},  # sparse histogram: {"bin": count}
        "days": {},
    }
    annotators: dict[int, dict] = {}

    def annotator(a) -> dict:
        return annotators.setdefault(int(a), {"days": {}})

    def bump(target: dict, key: str, amount: int = 1) -> None:
        target[key] = target.get(key, 0) + amount

    for lb in labels:
        own = annotator(lb["a"])
        bump(own, "labels")
        day = project["days"].setdefault(lb["day"], {})
        bump(day, "labels")
        bump(own["days"].setdefault(lb["day"], {}), "labels")
        if lb.get("f"):
            bump(own, "flagged_labels")
        if lb.get("d") is not None:
            b = str(duration_bin(lb["d"]))
            bump(project["durations"], b)
            bump(own.setdefault("durations", {}), b)
        if lb.get("s") == "l":
            bump(own, "left")
        elif lb.get("s") == "r":
            bump(own, "right")
        if is_gold and lb.get("g", 1):
            bump(own, "gold_answered")
            bump(own, "gold_correct", int(gold_matches(kind, facts["gold"], lb["v"])))
    for skip in skips:
        bump(annotator(skip["a"]), "skips")
    if facts.get("done_day"):
        bump(project["days"].setdefault(facts["done_day"], {}), "completed")
        bump(project, "done")
    if is_gold:
        bump(project, "gold_labels", len(labels))
        return project, annotators, {}

    agreement = task_agreement(facts)
    if agreement is not None and agreement < 1:
        project["disputed"] = 1  # labels disagree: a candidate for the reviewer queue
    pairs: dict[str, dict] = {}
    last_day = max((lb["day"] for lb in labels), default=None)
    if kind == PAIRWISE and labels:
        _pairwise(labels, project, annotator, pairs, last_day)
    elif kind == RANKING and len(labels) >= 2:
        _ranking(facts["items"], labels, project, annotator)
    elif kind == RUBRIC and labels:
        _rubric(labels, project)
    return project, annotators, pairs


def _strength_position(value) -> int | None:
    """A pairwise value's place on STRENGTH_SCALE; None off the scale (both bad) or for a
    decision without a strength (imported preference pairs say only which one was chosen)."""
    outcome, strength = value
    key = "tie" if outcome == "tie" else f"{outcome}:{strength}"
    return STRENGTH_SCALE.index(key) if key in STRENGTH_SCALE else None


def _pairwise(labels, project, annotator, pairs, last_day) -> None:
    index = {o: i for i, o in enumerate(OUTCOMES)}
    outcomes = [index[lb["v"][0]] for lb in labels]
    project["distribution"] = {OUTCOMES[o]: outcomes.count(o) for o in set(outcomes)}
    outcome_counts = _counts(outcomes, len(OUTCOMES))
    strengths = [s for s in (_strength_position(lb["v"]) for lb in labels) if s is not None]
    project["agreement"] = {
        "outcome": _unit(outcome_counts),
        "strength": _unit(_counts(strengths, len(STRENGTH_SCALE))),
    }
    if len(labels) >= 2:
        project["days"][last_day]["agreement"] = _unit(outcome_counts)
    for lb, own_value in zip(labels, outcomes, strict=True):
        consensus = leave_one_out_plurality(outcome_counts, own_value)
        if consensus is None:
            continue
        own = annotator(lb["a"])
        agree = int(consensus == own_value)
        own["consensus_compared"] = own.get("consensus_compared", 0) + 1
        own["consensus_agree"] = own.get("consensus_agree", 0) + agree
        day = own["days"].setdefault(lb["day"], {})
        day["compared"] = day.get("compared", 0) + 1
        day["agree"] = day.get("agree", 0) + agree
    by_annotator = sorted(zip((int(lb["a"]) for lb in labels), outcomes, strict=True))
    for (a, va), (b, vb) in combinations(by_annotator, 2):
        pairs[f"{a}-{b}"] = {"cells": {f"{va},{vb}": 1}}  # sparse (size x size) confusion


def _ranking(items, labels, project, annotator) -> None:
    ranks = {int(lb["a"]): tiers_to_ranks(lb["v"], items) for lb in labels}
    w = kendall_w(np.array(list(ranks.values())))
    if w is not None:
        project["kendall_w"] = {"sum_micro": round(w * MICRO), "tasks": 1}
    for a, tau in consensus_tau(ranks).items():
        if tau is not None:
            own = annotator(a)
            own["tau_sum_micro"] = own.get("tau_sum_micro", 0) + round(tau * MICRO)
            own["tau_tasks"] = own.get("tau_tasks", 0) + 1


def _rubric(labels, project) -> None:
    by_unit: dict[tuple[str, str], list[int]] = {}
    distribution: dict[str, dict[str, int]] = {}
    for lb in labels:
        for response, dims in (lb["v"] or {}).items():
            for dimension, score in dims.items():
                if score not in RUBRIC_SCORES:
                    continue  # outside the counted domain (see RUBRIC_SCORES)
                by_unit.setdefault((dimension, response), []).append(score)
                row = distribution.setdefault(dimension, {})
                row[str(score)] = row.get(str(score), 0) + 1
    agreement: dict[str, dict] = {}
    for (dimension, _response), scores in sorted(by_unit.items()):
        unit = _unit(_counts(scores, len(RUBRIC_SCORES)))
        agreement[f"rubric:{dimension}"] = nested_add(agreement.get(f"rubric:{dimension}"), unit)
    project["agreement"] = agreement
    project["distribution"] = distribution
