"""Label aggregation: from the labels of one task to training rows, by a chosen policy.

Every comparison (a pairwise label, or each pair of responses a ranking orders) is a vote
among "first better", "second better", "tie" and, for pairwise tasks, "both bad". Which
outcome a comparison's votes yield is decided by the one aggregation engine
(``annotation.quality.aggregation``, the same rule the quality pages' final labels use), under
its ``AggregationConfig``; besides the engine's policies a snapshot may keep ``all`` labels:
every label counts on its own (one unit per label) and its ``weight`` is the share of the
task's labels that agree with it. A pooled policy (Dawid-Skene) is fitted on every comparison
of the snapshot first (``comparison_votes``, ``fit_pooled``), then decides each one; a pair's
``weight`` is then its posterior. Under a vote it is the winning share, under
``gold_weighted`` the winning share of the gold-accuracy weight. A task's frozen adjudication
decides it under every policy, with weight 1.0 (a reviewer's decision is not a vote). The
weight is exported with each preference row, and the reward trainer weighs the pair's loss by
it. An adjudicated correction task gives the adjudicator's final text (its SFT row and its
pair over the original, none when the original needs no correction) instead of each label's
rewrite.

Ties and "both bad" stay what they are: a tie yields no pair and no KTO row, "both bad"
yields two undesirable KTO rows and no pair. Corrections are not votes: each corrected
answer is its own SFT row and its own pair (corrected over original). Rubric labels give,
per dimension, each answer's mean score over the task's labels (a ``score`` row) and a pair
for every two answers whose means differ (a ``rubric_preference`` row; equal means, a tie,
give none).

A KTO row is derived from a unit's pairs: a response that wins at least one pair and loses
none is desirable, one that loses and never wins is undesirable, and the middle of a
ranking (wins and losses) gives no KTO row.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from annotation.quality.aggregation import (
    KEEP_ALL,
    POLICY_MAJORITY,
    POLICY_MIN_AGREEMENT,
    POLICY_TABLE,
    POLICY_UNANIMOUS,
    AggregationConfig,
    Decision,
    unit_rule,
)
from rlhf.data.records import LabelRecord

# What a snapshot can be built with: every label on its own, or any engine policy (a pooled
# one, such as Dawid-Skene, is fitted on every frozen comparison first: ``fit_pooled``).
POLICIES = (KEEP_ALL, *POLICY_TABLE)
# Reward-model margin per pairwise strength (RewardTrainer subtracts it inside the
# log-sigmoid, so a "strong" preference must be won by a wider reward gap).
STRENGTH_MARGIN = {"slight": 0.25, "clear": 0.5, "strong": 1.0}
FIRST, SECOND, TIE, BOTH_BAD = "first", "second", "tie", "both_bad"
# The ``corrected_index`` key of an adjudicated correction's final text (no label has id 0).
ADJUDICATED = 0
OUTCOMES = (FIRST, SECOND, TIE, BOTH_BAD)


@dataclass
class Pair:
    chosen: int  # index into Unit.texts
    rejected: int
    margin: float | None
    weight: float | None
    source: str


@dataclass
class Unit:
    """What one task (or one label, under ``all`` and for corrections) contributes.

    ``texts`` indices refer to the task's texts: its responses in canonical order, then the
    corrected answers of its correction labels. ``key`` prefixes the row ids: ``T<task>`` for
    an aggregate, ``L<label>`` for a single label.
    """

    key: str
    label_ids: list[int]
    pairs: list[Pair] = field(default_factory=list)
    kto: list[tuple[int, bool]] = field(default_factory=list)
    sft: list[int] = field(default_factory=list)
    # Rubric labels: (text index, dimension, mean score, labels) and
    # (higher index, lower index, dimension, difference of the means).
    scores: list[tuple[int, str, float, int]] = field(default_factory=list)
    rubric_pairs: list[tuple[int, int, str, float]] = field(default_factory=list)


@dataclass
class AggregationStats:
    """Counts that go into the report and the data card; merge with ``+=``."""

    labels: Counter = field(default_factory=Counter)  # by kind
    outcomes: Counter = field(default_factory=Counter)  # by kind:outcome, per label vote
    decisions: Counter = field(default_factory=Counter)  # tie, both_bad, no_agreement...
    excluded: Counter = field(default_factory=Counter)
    annotators: set[int] = field(default_factory=set)
    # Fleiss' kappa accumulators over comparisons with >= 2 votes (Fleiss 1971, with a
    # per-item rater count): sum of per-item agreement, items, and category totals.
    kappa_items: int = 0
    kappa_agreement: float = 0.0
    kappa_categories: Counter = field(default_factory=Counter)

    def merge(self, other: AggregationStats) -> None:
        self.labels += other.labels
        self.outcomes += other.outcomes
        self.decisions += other.decisions
        self.excluded += other.excluded
        self.annotators |= other.annotators
        self.kappa_items += other.kappa_items
        self.kappa_agreement += other.kappa_agreement
        self.kappa_categories += other.kappa_categories

    def fleiss_kappa(self) -> float | None:
        if self.kappa_items == 0:
            return None
        total = sum(self.kappa_categories.values())
        expected = sum((n / total) ** 2 for n in self.kappa_categories.values())
        observed = self.kappa_agreement / self.kappa_items
        if expected >= 1.0:
            return 1.0 if observed >= 1.0 else None
        return (observed - expected) / (1.0 - expected)

    def percent_agreement(self) -> float | None:
        return self.kappa_agreement / self.kappa_items if self.kappa_items else None

    def as_dict(self) -> dict:
        kappa = self.fleiss_kappa()
        agreement = self.percent_agreement()
        return {
            "labels_by_kind": dict(sorted(self.labels.items())),
            "votes": dict(sorted(self.outcomes.items())),
            "decisions": dict(sorted(self.decisions.items())),
            "excluded": dict(sorted(self.excluded.items())),
            "annotators": len(self.annotators),
            "agreement": {
                "items_with_2plus_labels": self.kappa_items,
                "percent_agreement": None if agreement is None else round(agreement, 4),
                "fleiss_kappa": None if kappa is None else round(kappa, 4),
            },
        }


# A comparison a pooled policy decides: (task id, first position, second position).
Comparison = tuple[int, int, int]


def comparison_votes(
    labels: list[LabelRecord], *, config: AggregationConfig
) -> dict[Comparison, dict[int, str]]:
    """The votes of one task's labels per compared pair, ``{(task, i, j): {annotator:
    outcome}}``: what a pooled policy fits on (corrections and rubric labels are no votes)."""
    if labels[0].kind not in ("pairwise", "ranking"):
        return {}
    position = {rid: i for i, rid in enumerate(labels[0].responses)}
    votes: dict[Comparison, dict[int, str]] = {}
    for label in labels:
        if label.annotator_id in config.exclude_annotators:
            continue
        for (first, second), outcome in _votes(label, position).items():
            votes.setdefault((label.task_id, first, second), {})[label.annotator_id] = outcome
    return votes


def fit_pooled(
    votes: dict[Comparison, dict[int, str]], *, config: AggregationConfig
) -> dict[Comparison, Decision]:
    """Fit a pooled policy (Dawid-Skene) on every comparison of the snapshot at once, through
    the engine the quality pages use, and decide each comparison."""
    decide = POLICY_TABLE[config.policy].fit(votes, config, classes=OUTCOMES)
    return {comparison: decide(comparison, cast) for comparison, cast in votes.items()}


def aggregate_task(
    labels: list[LabelRecord],
    *,
    config: AggregationConfig,
    response_ids: list[int],
    stats: AggregationStats,
    corrected_index: dict[int, int],
    pooled: dict[Comparison, Decision] | None = None,
) -> list[Unit]:
    """The units of one task. ``corrected_index`` maps a correction label id (``ADJUDICATED``
    for an adjudicated task's final text) to the index of its corrected text in the task's
    texts (after the responses). Under a pooled policy,
    ``pooled`` holds the fitted decisions (``fit_pooled``) of this task's comparisons."""
    adjudication = labels[0].adjudication
    single = len(labels) == 1 and labels[0].kind == "pairwise"
    # A weighting policy may give the one label no weight: the general path decides those.
    if single and adjudication is None and config.policy in _VOTES:
        return _single_pairwise(labels[0], config, stats)
    kept = []
    for label in labels:
        stats.labels[label.kind] += 1
        if label.annotator_id in config.exclude_annotators:
            stats.excluded["excluded_annotator"] += 1
            continue
        kept.append(label)
        stats.annotators.add(label.annotator_id)
    if not kept and adjudication is None:
        return []
    kind = labels[0].kind
    if kind == "correction":
        if adjudication is not None:
            task_id = labels[0].task_id
            return [_correction_adjudicated(task_id, kept, adjudication, response_ids,
                                            corrected_index, stats)]  # fmt: skip
        return [_correction_unit(label, response_ids, corrected_index, stats) for label in kept]
    if kind == "rubric":
        if adjudication is not None:
            return [_rubric_adjudicated(labels[0].task_id, kept, adjudication, response_ids, stats)]
        return [_rubric_unit(kept, response_ids, stats)] if kept else []
    if len(kept) < config.min_labels and adjudication is None:
        stats.decisions["too_few_labels"] += 1
        return []
    position = {rid: i for i, rid in enumerate(response_ids)}
    # votes[(i, j)] = one outcome per label, for each compared pair of positions i < j.
    votes: list[dict[tuple[int, int], str]] = [_votes(label, position) for label in kept]
    strengths = [label.payload.get("strength") for label in kept]
    source = "pairwise" if kind == "pairwise" else "ranking"
    comparisons = sorted({pair for v in votes for pair in v})
    for pair in comparisons:
        cast = [v[pair] for v in votes if pair in v]
        for outcome in cast:
            stats.outcomes[f"{kind}:{outcome}"] += 1
        _kappa(stats, cast)

    task_id = labels[0].task_id
    if config.policy == KEEP_ALL:
        decide = None
    elif config.pooled:
        decide = _pooled_rule(task_id, pooled or {})
    else:
        decide = unit_rule(config)
    if adjudication is not None:
        unit = Unit(key=f"T{task_id}", label_ids=[label.label_id for label in kept])
        annotators = [label.annotator_id for label in kept]
        _adjudicate(unit, adjudication, kind, position, votes, annotators, decide, source, stats)
        return [unit]

    if config.policy == KEEP_ALL:
        units = []
        for label, label_votes, strength in zip(kept, votes, strengths, strict=True):
            unit = Unit(key=f"L{label.label_id}", label_ids=[label.label_id])
            for pair, outcome in sorted(label_votes.items()):
                cast = [v[pair] for v in votes if pair in v]
                share = cast.count(outcome) / len(cast)
                margins = [STRENGTH_MARGIN[strength]] if strength in STRENGTH_MARGIN else []
                _decide(unit, pair, outcome, share, margins, source, stats)
            derive_kto(unit)
            units.append(unit)
        return units

    unit = Unit(key=f"T{task_id}", label_ids=[label.label_id for label in kept])
    annotators = [label.annotator_id for label in kept]
    strength_of = dict(zip(annotators, strengths, strict=True))
    for pair in comparisons:
        # {annotator: outcome}: a weighting policy weighs each vote by who cast it.
        cast = {annotators[i]: v[pair] for i, v in enumerate(votes) if pair in v}
        decision = decide(pair, cast)
        if decision.value is None:
            stats.decisions["no_agreement"] += 1
            continue
        top = decision.value
        agreeing = [strength_of[a] for a, outcome in cast.items() if outcome == top]
        margins = [STRENGTH_MARGIN[s] for s in agreeing if s in STRENGTH_MARGIN]
        _decide(unit, pair, top, decision.support, margins, source, stats)
    derive_kto(unit)
    return [unit]


def _adjudicate(unit, adjudication, kind, position, votes, annotators, decide, source, stats):
    """The adjudicator's outcome for every comparison it orders, whatever the votes were; a
    comparison counts as changed when the policy alone would have exported another outcome
    (or nothing; under ``all``, where ``decide`` is None, when any label voted otherwise)."""
    verdict = _votes(LabelRecord(0, 0, kind, 0, adjudication, 0, [], {}), position)
    strength = adjudication.get("strength")
    margins = [STRENGTH_MARGIN[strength]] if strength in STRENGTH_MARGIN else []
    stats.decisions["adjudicated_tasks"] += 1
    for pair, outcome in sorted(verdict.items()):
        cast = {annotators[i]: v[pair] for i, v in enumerate(votes) if pair in v}
        if decide is None:
            changed = not cast or any(vote != outcome for vote in cast.values())
        else:
            changed = decide(pair, cast).value != outcome
        stats.decisions["adjudication_changed"] += int(changed)
        _decide(unit, pair, outcome, 1.0, margins, source, stats)
    derive_kto(unit)


def _pooled_rule(task_id: int, pooled: dict[Comparison, Decision]):
    """The fitted decision of each of the task's comparisons (undecided when it has none)."""

    def decide(pair: tuple[int, int], cast: dict) -> Decision:
        fitted = pooled.get((task_id, *pair))
        return fitted if fitted is not None else Decision(pair, None, None, 0.0, len(cast))

    return decide


def _single_pairwise(label: LabelRecord, config: AggregationConfig, stats) -> list[Unit]:
    """The most common task (one pairwise label), without the general voting machinery;
    yields exactly what ``aggregate_task``'s general path yields for it."""
    stats.labels["pairwise"] += 1
    if label.annotator_id in config.exclude_annotators:
        stats.excluded["excluded_annotator"] += 1
        return []
    stats.annotators.add(label.annotator_id)
    if config.min_labels > 1:
        stats.decisions["too_few_labels"] += 1
        return []
    outcome = _PAIRWISE_OUTCOME.get(label.payload.get("outcome"))
    if outcome is None:
        return [Unit(key=f"T{label.task_id}", label_ids=[label.label_id])]
    stats.outcomes[f"pairwise:{outcome}"] += 1
    key = f"L{label.label_id}" if config.policy == KEEP_ALL else f"T{label.task_id}"
    unit = Unit(key=key, label_ids=[label.label_id])
    strength = label.payload.get("strength")
    margins = [STRENGTH_MARGIN[strength]] if strength in STRENGTH_MARGIN else []
    _decide(unit, (0, 1), outcome, 1.0, margins, "pairwise", stats)
    derive_kto(unit)
    return [unit]


_VOTES = (KEEP_ALL, POLICY_MAJORITY, POLICY_UNANIMOUS, POLICY_MIN_AGREEMENT)
_PAIRWISE_OUTCOME = {"A": FIRST, "B": SECOND, "tie": TIE, "both_bad": BOTH_BAD}


def _votes(label: LabelRecord, position: dict[int, int]) -> dict[tuple[int, int], str]:
    payload = label.payload
    if label.kind == "pairwise":
        outcome = payload.get("outcome")
        mapped = _PAIRWISE_OUTCOME.get(outcome)
        return {(0, 1): mapped} if mapped else {}
    # ranking: tiers of response ids, best first; same tier = tie.
    tier_of = {}
    for tier_index, tier in enumerate(payload.get("ranking") or []):
        for rid in tier if isinstance(tier, list) else [tier]:
            if rid in position:
                tier_of[position[rid]] = tier_index
    out = {}
    ranked = sorted(tier_of)
    for a_i, a in enumerate(ranked):
        for b in ranked[a_i + 1 :]:
            ta, tb = tier_of[a], tier_of[b]
            out[(a, b)] = TIE if ta == tb else (FIRST if ta < tb else SECOND)
    return out


def _decide(unit, pair, outcome, share, margins, source, stats) -> None:
    first, second = pair
    if outcome == TIE:
        stats.decisions[f"{source}_tie"] += 1
    elif outcome == BOTH_BAD:
        stats.decisions["both_bad"] += 1
        unit.kto.extend([(first, False), (second, False)])
    else:
        chosen, rejected = (first, second) if outcome == FIRST else (second, first)
        margin = round(sum(margins) / len(margins), 4) if margins else None
        unit.pairs.append(Pair(chosen, rejected, margin, round(share, 4), source))
        stats.decisions[f"{source}_pair"] += 1


def derive_kto(unit: Unit) -> None:
    if len(unit.pairs) == 1 and not unit.kto:  # the common case, without the bookkeeping
        pair = unit.pairs[0]
        unit.kto.extend([(pair.chosen, True), (pair.rejected, False)])
        return
    wins: dict[int, int] = {}
    losses: dict[int, int] = {}
    for pair in unit.pairs:
        wins[pair.chosen] = wins.get(pair.chosen, 0) + 1
        losses[pair.rejected] = losses.get(pair.rejected, 0) + 1
    both_bad = {i for i, _ in unit.kto}
    for index in sorted(wins.keys() | losses.keys()):
        if index in both_bad:
            continue
        if index in wins and index not in losses:
            unit.kto.append((index, True))
        elif index in losses and index not in wins:
            unit.kto.append((index, False))


def _correction_outcome(payload: dict) -> str:
    return "correction:" + ("unchanged" if payload.get("unchanged") else "edited")


def _correction_unit(label, response_ids, corrected_index, stats) -> Unit:
    stats.outcomes[_correction_outcome(label.payload)] += 1
    unit = Unit(key=f"L{label.label_id}", label_ids=[label.label_id])
    corrected = corrected_index[label.label_id]
    return _correction_rows(unit, label.payload, response_ids, corrected, stats)


def _correction_adjudicated(
    task_id: int,
    labels: list[LabelRecord],
    adjudication: dict,
    response_ids: list[int],
    corrected_index: dict[int, int],
    stats,
) -> Unit:
    """The adjudicator's final text as the task's only correction: its SFT row and its pair
    (final over original; none when the original needs no correction), in place of each
    label's rewrite. It counts as changed unless every label gave that same text."""
    for label in labels:
        stats.outcomes[_correction_outcome(label.payload)] += 1
    unit = Unit(key=f"T{task_id}", label_ids=[label.label_id for label in labels])
    stats.decisions["adjudicated_tasks"] += 1
    decided = (adjudication.get("response_id"), adjudication.get("corrected_text"))
    changed = not labels or any(
        (label.payload.get("response_id"), label.payload.get("corrected_text")) != decided
        for label in labels
    )
    stats.decisions["adjudication_changed"] += int(changed)
    corrected = corrected_index[ADJUDICATED]
    return _correction_rows(unit, adjudication, response_ids, corrected, stats)


def _correction_rows(unit: Unit, payload: dict, response_ids, corrected: int, stats) -> Unit:
    original = response_ids.index(payload["response_id"])
    if payload.get("unchanged"):
        unit.sft.append(original)
        unit.kto.append((original, True))
        stats.decisions["correction_unchanged"] += 1
        return unit
    unit.sft.append(corrected)
    unit.pairs.append(Pair(corrected, original, None, None, "correction"))
    unit.kto.extend([(corrected, True), (original, False)])
    stats.decisions["correction_pair"] += 1
    return unit


def _rubric_adjudicated(
    task_id: int, labels: list[LabelRecord], adjudication: dict, response_ids: list[int], stats
) -> Unit:
    """The adjudicator's scores as the task's only scores (each ``score`` row then counts one
    label); a row counts as changed when the labels alone would have exported a different
    score row or rubric pair (or none)."""
    decided = LabelRecord(0, task_id, "rubric", 0, adjudication, 0, [], {})
    unit = _rubric_unit([decided], response_ids, stats)
    unit.label_ids = [label.label_id for label in labels]
    stats.decisions["adjudicated_tasks"] += 1
    by_votes = _rubric_unit(labels, response_ids, AggregationStats()) if labels else Unit("", [])
    scores = {(i, d): s for i, d, s, _ in unit.scores}
    pairs = {(h, lo, d) for h, lo, d, _ in unit.rubric_pairs}
    voted_scores = {(i, d): s for i, d, s, _ in by_votes.scores}
    voted_pairs = {(h, lo, d) for h, lo, d, _ in by_votes.rubric_pairs}
    changed = sum(voted_scores.get(key) != value for key, value in scores.items())
    changed += len(pairs ^ voted_pairs)
    stats.decisions["adjudication_changed"] += changed
    return unit


def _rubric_unit(labels: list[LabelRecord], response_ids: list[int], stats) -> Unit:
    unit = Unit(key=f"T{labels[0].task_id}", label_ids=[label.label_id for label in labels])
    given: dict[tuple[int, str], list[float]] = {}
    for label in labels:
        for rid, dims in ((label.payload or {}).get("scores") or {}).items():
            if int(rid) not in response_ids:
                continue
            for dimension, value in dims.items():
                given.setdefault((response_ids.index(int(rid)), dimension), []).append(value)
    means = {key: sum(values) / len(values) for key, values in given.items()}
    for (index, dimension), mean in sorted(means.items()):
        unit.scores.append((index, dimension, round(mean, 4), len(given[index, dimension])))
    stats.decisions["rubric_score"] += len(unit.scores)
    for dimension in sorted({d for _, d in means}):
        scored = sorted(i for i, d in means if d == dimension)
        for a_i, first in enumerate(scored):
            for second in scored[a_i + 1 :]:
                difference = means[first, dimension] - means[second, dimension]
                if difference == 0:
                    stats.decisions["rubric_tie"] += 1
                    continue
                higher, lower = (first, second) if difference > 0 else (second, first)
                unit.rubric_pairs.append((higher, lower, dimension, round(abs(difference), 4)))
                stats.decisions["rubric_pair"] += 1
    return unit


def _kappa(stats: AggregationStats, cast: list[str]) -> None:
    n = len(cast)
    if n < 2:
        return
    counts = Counter(cast)
    stats.kappa_items += 1
    stats.kappa_agreement += sum(c * (c - 1) for c in counts.values()) / (n * (n - 1))
    stats.kappa_categories += counts
