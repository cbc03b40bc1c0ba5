"""From several labels per unit to one final label: the one aggregation engine.

Both readers of labels decide through here: the quality pages (``final_labels``, one unit per
task) and snapshots (``rlhf.data.aggregate``, one unit per compared pair of responses), so a
policy means the same on the dashboard and in a training set. numpy only, no Django.

Labels come in as ``{unit: {annotator: value}}``; a policy returns one ``Decision`` per unit,
with the final value (None when the policy cannot decide), its provenance and the weight each
label carried. Every policy is one entry of ``POLICY_TABLE``: ``fit`` sees all the labels
first (a policy that learns from the whole crowd, as Dawid-Skene does, fits there; a vote
ignores them) and returns the rule that decides one unit.

The vote policies, on a unit with ``n >= min_labels`` labels:
- ``majority``: the value more than half of the labels chose (a strict majority; a plurality
  such as 2 of 5 is no majority, ``min_agreement`` is the knob for other shares);
- ``unanimous``: the value every label chose;
- ``min_agreement``: the most chosen value, when no other was chosen as often and its share
  of the labels is at least ``min_agreement`` (default two thirds).
A unit with a single label (and ``min_labels`` 1) is decided by that label under every vote
policy: how many labels a decision needs is ``min_labels``'s business, not a policy's.

The weighting policies:
- ``dawid_skene``: Dawid & Skene (1979) EM over every annotator's confusion matrix, fitted on
  all the units at once (pooled); a label's weight is P(true value = its value | annotator).
- ``gold_weighted``: a weighted vote, each label weighing the log-odds of its annotator's
  accuracy on gold tasks, ``log(acc / (1 - acc))`` (the optimal weights for independent
  annotators choosing between two answers: Nitzan & Paroush 1982; errors are taken to fall on
  the other side, as they do in a pairwise comparison). ``acc`` is
  ``(correct + m * p) / (answered + m)``: the annotator's gold record shrunk towards the
  crowd's pooled gold accuracy ``p`` by ``gold_prior_answers`` (m) pseudo-answers, so an
  annotator with no gold answers weighs what an average one does, and capped at 0.999. An
  annotator no better than a coin (acc <= 0.5) weighs 0. The record comes from the config
  (``gold_accuracy``), so a snapshot records the accuracies it was weighted with. The value
  with the largest total weight wins (a tie of totals, or a total of 0, is undecided);
  support is its share of the unit's weight.

Provenance of a final label:
- ``unanimous``: every label agrees (at least two labels);
- ``single``: the only label of a unit labelled once (overlap 1): agreement is unknown;
- ``majority``: decided by ``majority`` or ``min_agreement`` without every label agreeing;
- ``weighted``: decided by annotator-reliability weighting (Dawid-Skene, gold_weighted);
- ``adjudicated``: a reviewer's decision, which overrides every policy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

UNANIMOUS = "unanimous"
SINGLE = "single"
MAJORITY = "majority"
WEIGHTED = "weighted"
ADJUDICATED = "adjudicated"
PROVENANCES = (UNANIMOUS, SINGLE, MAJORITY, WEIGHTED, ADJUDICATED)

POLICY_MAJORITY = "majority"
POLICY_UNANIMOUS = "unanimous"
POLICY_MIN_AGREEMENT = "min_agreement"
POLICY_DAWID_SKENE = "dawid_skene"
POLICY_GOLD_WEIGHTED = "gold_weighted"
# Not a policy: snapshots keep every label as its own row (weighted by its share of agreement),
# so nothing is decided and there is no final label to show.
KEEP_ALL = "all"

TaskLabels = Mapping[Hashable, Mapping[Hashable, Hashable]]  # {unit: {annotator: value}}

DEFAULT_MIN_AGREEMENT = 2 / 3
# A share computed as k / n may sit one rounding step under a threshold written as a fraction.
_SHARE_EPSILON = 1e-12


@dataclass(frozen=True)
class AggregationConfig:
    """How several labels per unit become one; stored with a snapshot (``as_dict``)."""

    # One of POLICIES (the keys of POLICY_TABLE), or KEEP_ALL (snapshots only).
    policy: str = POLICY_MAJORITY
    # min_agreement only: the winning value's share of the unit's labels, in (0, 1].
    # Two thirds: with three labels, two must agree.
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    # Units with fewer labels (after exclusions) are left undecided. 1 keeps single-label
    # tasks (overlap 1) under every policy.
    min_labels: int = 1
    # Annotators whose labels are left out before any policy sees them (e.g. those failing
    # gold checks).
    exclude_annotators: frozenset = frozenset()
    # dawid_skene only: EM stops after this many iterations or when the log-likelihood
    # improves by less than ``tolerance`` (relative).
    max_iterations: int = 100
    tolerance: float = 1e-7
    # dawid_skene only: pseudo-count added to every cell of each annotator's confusion matrix
    # (a flat Dirichlet prior), so a value an annotator never used is unlikely, not impossible.
    smoothing: float = 0.01
    # dawid_skene only: a decision needs at least this posterior probability, else undecided.
    min_posterior: float = 0.0
    # gold_weighted only: each annotator's gold record, (annotator, correct, answered) triples
    # (``annotation.quality.selectors.annotator_gold_accuracy``); an annotator left out has
    # answered no gold task.
    gold_accuracy: tuple = ()
    # gold_weighted only: pseudo-answers at the crowd's pooled gold accuracy added to each
    # annotator's record (a Beta prior), so two gold answers do not make anyone infallible.
    gold_prior_answers: float = 2.0

    def __post_init__(self):
        if self.policy not in POLICY_TABLE and self.policy != KEEP_ALL:
            raise ValueError(f"policy must be one of {(KEEP_ALL, *POLICIES)}, not {self.policy!r}")
        if not 0 < self.min_agreement <= 1:
            raise ValueError("min_agreement (threshold) must be in (0, 1]")
        if self.min_labels < 1:
            raise ValueError("min_labels must be at least 1")
        object.__setattr__(self, "exclude_annotators", frozenset(self.exclude_annotators))
        try:
            record = tuple(
                sorted(
                    (a, int(correct), int(answered)) for a, correct, answered in self.gold_accuracy
                )
            )
        except (TypeError, ValueError):
            raise ValueError(
                "gold_accuracy must be a list of [annotator, correct, answered]"
            ) from None
        if any(not 0 <= correct <= answered for _, correct, answered in record):
            raise ValueError("gold_accuracy: correct must be from 0 to answered")
        object.__setattr__(self, "gold_accuracy", record)
        if not self.gold_prior_answers > 0:
            raise ValueError("gold_prior_answers must be positive")

    @property
    def pooled(self) -> bool:
        """Whether the policy learns from every label before deciding any unit."""
        return self.policy in POLICY_TABLE and POLICY_TABLE[self.policy].pooled

    def as_dict(self) -> dict:
        data = asdict(self)
        data["exclude_annotators"] = sorted(self.exclude_annotators)
        data["gold_accuracy"] = [list(row) for row in self.gold_accuracy]
        return data

    @classmethod
    def from_dict(cls, data: Mapping | None) -> AggregationConfig:
        """From ``as_dict`` output, or an older shape: ``threshold`` was the quality pages'
        name for ``min_agreement``."""
        data = dict(data or {})
        if "threshold" in data:
            data.setdefault("min_agreement", data.pop("threshold"))
        if "exclude_annotators" in data:
            data["exclude_annotators"] = frozenset(data["exclude_annotators"])
        return cls(**data)


@dataclass(frozen=True)
class Decision:
    task: Hashable
    value: Hashable | None  # None: the policy could not decide
    provenance: str | None  # one of PROVENANCES, None when undecided
    support: float  # the value's share of the labels, or its posterior probability
    labels: int
    # The weight each annotator's label carried in the decision: 1.0 for a vote; under
    # Dawid-Skene, P(true value = the label's value | this annotator gave it).
    weights: dict = field(default_factory=dict)


# One unit's decision: (unit, {annotator: value}) -> Decision.
Decide = Callable[[Hashable, Mapping[Hashable, Hashable]], Decision]


@dataclass(frozen=True)
class Policy:
    """One aggregation policy.

    fit(labels, config, classes=..., gold=...) -> Decide: sees every unit's labels, returns
        the rule for one unit.
    pooled: fit learns from the labels (so a caller that streams units must first gather
        them all); False for a vote, whose fit ignores them.
    """

    fit: Callable[..., Decide]
    pooled: bool = False


def _tally(labels: Mapping[Hashable, Hashable]) -> tuple[list, list[int]]:
    values, counts = [], []
    for v in labels.values():
        if v in values:
            counts[values.index(v)] += 1
        else:
            values.append(v)
            counts.append(1)
    return values, counts


def _vote(task, labels, *, min_labels: int, accept: Callable[[float, bool], bool]) -> Decision:
    """Count the votes; ``accept(share, unique_top)`` says whether a split vote decides."""
    n = len(labels)
    weights = dict.fromkeys(labels, 1.0)
    if n < min_labels or n == 0:
        return Decision(task, None, None, 0.0, n, weights)
    values, counts = _tally(labels)
    top = max(counts)
    share = top / n
    if len(values) == 1:
        return Decision(task, values[0], UNANIMOUS if n > 1 else SINGLE, 1.0, n, weights)
    if not accept(share, counts.count(top) == 1):
        return Decision(task, None, None, share, n, weights)
    return Decision(task, values[counts.index(top)], MAJORITY, share, n, weights)


def _vote_policy(accept: Callable[[float, bool, AggregationConfig], bool]) -> Policy:
    def fit(labels: TaskLabels, config: AggregationConfig, **_) -> Decide:
        return functools.partial(
            _vote,
            min_labels=config.min_labels,
            accept=lambda share, unique: accept(share, unique, config),
        )

    return Policy(fit=fit)


def _fit_dawid_skene(labels: TaskLabels, config: AggregationConfig, *, classes=None, gold=None):
    result = dawid_skene(
        labels,
        classes=classes,
        gold=gold,
        max_iterations=config.max_iterations,
        tolerance=config.tolerance,
        smoothing=config.smoothing,
    )
    fitted = result.decisions(labels, min_posterior=config.min_posterior)

    def decide(task, task_labels) -> Decision:
        if task_labels and len(task_labels) >= config.min_labels and task in fitted:
            return fitted[task]
        return Decision(task, None, None, 0.0, len(task_labels), dict.fromkeys(task_labels, 1.0))

    return decide


# An annotator's gold accuracy is capped here: a perfect record would weigh infinitely.
_MAX_GOLD_ACCURACY = 0.999


def gold_weights(config: AggregationConfig) -> tuple[dict, float]:
    """{annotator: weight} for the annotators with a gold record, and the weight of one
    without (the crowd's pooled accuracy): log(acc / (1 - acc)), at least 0."""
    correct = sum(c for _, c, _ in config.gold_accuracy)
    answered = sum(n for _, _, n in config.gold_accuracy)
    pooled = correct / answered if answered else 0.5
    m = config.gold_prior_answers

    def weight(c: float, n: float) -> float:
        accuracy = min((c + m * pooled) / (n + m), _MAX_GOLD_ACCURACY)
        return float(np.log(accuracy / (1 - accuracy))) if accuracy > 0.5 else 0.0

    return {a: weight(c, n) for a, c, n in config.gold_accuracy}, weight(0, 0)


def _fit_gold_weighted(labels: TaskLabels, config: AggregationConfig, **_) -> Decide:
    known, default = gold_weights(config)

    def decide(task, task_labels) -> Decision:
        n = len(task_labels)
        weights = {a: known.get(a, default) for a in task_labels}
        if n == 0 or n < config.min_labels:
            return Decision(task, None, None, 0.0, n, weights)
        totals: dict = {}
        for a, v in task_labels.items():
            totals[v] = totals.get(v, 0.0) + weights[a]
        total = sum(totals.values())
        top = max(totals.values())
        if total <= 0 or sum(1 for t in totals.values() if t == top) > 1:
            return Decision(task, None, None, 0.0, n, weights)
        value = next(v for v, t in totals.items() if t == top)
        return Decision(task, value, WEIGHTED, top / total, n, weights)

    return decide


POLICY_TABLE: dict[str, Policy] = {
    POLICY_MAJORITY: _vote_policy(lambda share, unique, config: share > 0.5),
    POLICY_UNANIMOUS: _vote_policy(lambda share, unique, config: False),
    POLICY_MIN_AGREEMENT: _vote_policy(
        lambda share, unique, config: unique and share + _SHARE_EPSILON >= config.min_agreement
    ),
    POLICY_DAWID_SKENE: Policy(fit=_fit_dawid_skene, pooled=True),
    POLICY_GOLD_WEIGHTED: Policy(fit=_fit_gold_weighted),
}
POLICIES = tuple(POLICY_TABLE)


@functools.lru_cache(maxsize=32)  # a worker sees few configs; bounded all the same
def unit_rule(config: AggregationConfig) -> Decide:
    """The rule that decides one unit, for callers that stream units (snapshots). Only for
    policies that learn nothing from the other units."""
    if config.policy == KEEP_ALL:
        raise ValueError(f"policy {KEEP_ALL!r} keeps every label and decides nothing")
    if config.pooled:
        raise ValueError(f"policy {config.policy!r} must first fit every label; use aggregate")
    return POLICY_TABLE[config.policy].fit({}, config)


def _kept(labels: TaskLabels, excluded: Iterable[Hashable]) -> TaskLabels:
    excluded = frozenset(excluded)
    if not excluded:
        return labels
    return {t: {a: v for a, v in ls.items() if a not in excluded} for t, ls in labels.items()}


def majority_vote(labels: TaskLabels, *, min_labels: int = 1) -> dict[Hashable, Decision]:
    """The value more than half of the labels chose."""
    return aggregate(labels, AggregationConfig(policy=POLICY_MAJORITY, min_labels=min_labels))


def unanimous_only(labels: TaskLabels, *, min_labels: int = 2) -> dict[Hashable, Decision]:
    """Only units where every label agrees (and at least ``min_labels`` were given)."""
    return aggregate(labels, AggregationConfig(policy=POLICY_UNANIMOUS, min_labels=min_labels))


def minimum_agreement(
    labels: TaskLabels, *, threshold: float = DEFAULT_MIN_AGREEMENT, min_labels: int = 2
) -> dict[Hashable, Decision]:
    """The plurality value when its share of the labels is at least ``threshold``."""
    config = AggregationConfig(
        policy=POLICY_MIN_AGREEMENT, min_agreement=threshold, min_labels=min_labels
    )
    return aggregate(labels, config)


# --------------------------------------------------------------------------------------------
# Dawid-Skene
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DawidSkeneResult:
    classes: tuple
    tasks: tuple
    annotators: tuple
    posteriors: np.ndarray  # (tasks, classes): P(true class | all labels)
    priors: np.ndarray  # (classes,)
    confusion: np.ndarray  # (annotators, classes, classes): P(label = l | true = k) at [a, k, l]
    iterations: int
    converged: bool
    log_likelihood: float

    def label_weights(self) -> np.ndarray:
        """(annotators, classes): P(true = l | annotator a labelled l), Bayes on the confusion.

        The weight exported for each label: how far a label with this value from this
        annotator can be trusted. A spammer's labels sit near the class prior.
        """
        joint = self.priors[None, :, None] * self.confusion  # (A, K_true, K_label)
        diagonal = np.einsum("akk->ak", joint)
        return diagonal / joint.sum(axis=1)

    def annotator_accuracy(self) -> dict[Hashable, float]:
        """Σ_k prior_k P(label = k | true = k): each annotator's expected accuracy."""
        accuracy = np.einsum("k,akk->a", self.priors, self.confusion)
        return dict(zip(self.annotators, accuracy.tolist(), strict=True))

    def decisions(self, labels: TaskLabels, *, min_posterior: float = 0.0) -> dict:
        weights = self.label_weights()
        a_index = {a: i for i, a in enumerate(self.annotators)}
        c_index = {c: i for i, c in enumerate(self.classes)}
        out = {}
        for row, task in enumerate(self.tasks):
            task_labels = labels[task]
            best = int(np.argmax(self.posteriors[row]))
            support = float(self.posteriors[row, best])
            label_weights = {
                a: float(weights[a_index[a], c_index[v]]) for a, v in task_labels.items()
            }
            decided = support >= min_posterior
            out[task] = Decision(
                task,
                self.classes[best] if decided else None,
                WEIGHTED if decided else None,
                support,
                len(task_labels),
                label_weights,
            )
        return out


def dawid_skene(
    labels: TaskLabels,
    *,
    classes: Sequence[Hashable] | None = None,
    gold: Mapping[Hashable, Hashable] | None = None,
    max_iterations: int = 100,
    tolerance: float = 1e-7,
    smoothing: float = 0.01,
) -> DawidSkeneResult:
    """Dawid & Skene (1979) expectation-maximisation over each annotator's confusion matrix.

    Starts from the majority-vote shares (their eq. 2.6 initialisation), then alternates
    M: priors and confusion matrices from the current posteriors, and
    E: posterior_t(k) ∝ prior_k Π_{labels (a, l) of t} confusion_a[k, l].
    ``gold`` pins tasks with a known answer to it, which anchors the confusion matrices.
    Vectorised over labels, so a million labels take seconds per run (snapshot time, not page).
    """
    tasks = tuple(t for t, ls in labels.items() if ls)
    if classes is None:
        classes = sorted({v for t in tasks for v in labels[t].values()}, key=repr)
    classes = tuple(classes)
    annotators = tuple(sorted({a for t in tasks for a in labels[t]}, key=repr))
    t_index = {t: i for i, t in enumerate(tasks)}
    a_index = {a: i for i, a in enumerate(annotators)}
    c_index = {c: i for i, c in enumerate(classes)}
    n_tasks, n_annotators, n_classes = len(tasks), len(annotators), len(classes)

    rows = [(t_index[t], a_index[a], c_index[v]) for t in tasks for a, v in labels[t].items()]
    label_task, label_annotator, label_value = (
        (np.array(col, dtype=np.int64) for col in zip(*rows, strict=True))
        if rows
        else (np.zeros(0, np.int64),) * 3
    )
    # Flat index of (annotator, given value): the row of a label in the confusion tables.
    label_cell = label_annotator * n_classes + label_value

    pinned = np.zeros(n_tasks, dtype=bool)
    pinned_posteriors = np.zeros((n_tasks, n_classes))
    for t, v in (gold or {}).items():
        if t in t_index:
            pinned[t_index[t]] = True
            pinned_posteriors[t_index[t], c_index[v]] = 1.0

    posteriors = np.zeros((n_tasks, n_classes))  # (T, K)
    np.add.at(posteriors, (label_task, label_value), 1.0)
    posteriors /= np.maximum(posteriors.sum(axis=1, keepdims=True), 1)
    posteriors[pinned] = pinned_posteriors[pinned]

    previous = -np.inf
    log_likelihood = -np.inf
    converged = False
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 (reported after the loop)
        # M-step.
        priors = (posteriors.sum(axis=0) + smoothing) / (n_tasks + n_classes * smoothing)
        # counts[a * K + l, k] = Σ over labels (a, l) of posterior_t(k)
        counts = np.stack(
            [
                np.bincount(label_cell, weights=posteriors[label_task, k],
                            minlength=n_annotators * n_classes)
                for k in range(n_classes)
            ],
            axis=1,
        )  # fmt: skip
        confusion = counts.reshape(n_annotators, n_classes, n_classes).transpose(0, 2, 1)
        confusion = confusion + smoothing  # (A, K_true, K_label)
        confusion /= confusion.sum(axis=2, keepdims=True)

        # E-step, in logs: a task with many labels would underflow a product of probabilities.
        log_label = np.log(confusion[label_annotator, :, label_value])  # (L, K)
        log_joint = np.stack(
            [np.bincount(label_task, weights=log_label[:, k], minlength=n_tasks)
             for k in range(n_classes)],
            axis=1,
        ) + np.log(priors)  # fmt: skip
        top = log_joint.max(axis=1, keepdims=True)
        log_norm = top + np.log(np.exp(log_joint - top).sum(axis=1, keepdims=True))
        posteriors = np.exp(log_joint - log_norm)
        posteriors[pinned] = pinned_posteriors[pinned]
        log_likelihood = float(log_norm.sum())
        if abs(log_likelihood - previous) <= tolerance * max(1.0, abs(log_likelihood)):
            converged = True
            break
        previous = log_likelihood

    if n_tasks == 0:
        priors = np.full(n_classes, 1 / max(n_classes, 1))
        confusion = np.zeros((0, n_classes, n_classes))
    return DawidSkeneResult(
        classes=classes,
        tasks=tasks,
        annotators=annotators,
        posteriors=posteriors,
        priors=priors,
        confusion=confusion,
        iterations=iterations,
        converged=converged,
        log_likelihood=log_likelihood,
    )


# --------------------------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------------------------


def aggregate(
    labels: TaskLabels,
    config: AggregationConfig,
    *,
    classes: Sequence[Hashable] | None = None,
    adjudicated: Mapping[Hashable, Hashable] | None = None,
    gold: Mapping[Hashable, Hashable] | None = None,
) -> dict[Hashable, Decision]:
    """Apply ``config.policy`` to every unit; a reviewer's decision replaces the policy's."""
    if config.policy == KEEP_ALL:
        raise ValueError(f"policy {KEEP_ALL!r} keeps every label and decides no final label")
    labels = _kept(labels, config.exclude_annotators)
    decide = POLICY_TABLE[config.policy].fit(labels, config, classes=classes, gold=gold)
    decisions = {t: decide(t, ls) for t, ls in labels.items()}
    for t, value in (adjudicated or {}).items():
        task_labels = labels.get(t, {})
        agreeing = sum(1 for v in task_labels.values() if v == value)
        decisions[t] = Decision(
            t,
            value,
            ADJUDICATED,
            agreeing / len(task_labels) if task_labels else 1.0,
            len(task_labels),
            {a: 1.0 if v == value else 0.0 for a, v in task_labels.items()},
        )
    return decisions
