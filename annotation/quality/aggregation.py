"""From several labels per task to one final label: the aggregation policies snapshots use.

numpy only, no Django. Labels come in as ``{task: {annotator: value}}``; a policy returns one
``Decision`` per task, with the final value (None when the policy cannot decide), its
provenance and the weight each label carried.

Provenance of a final label:
- ``unanimous``: every label agrees (at least two labels);
- ``single``: the only label of a task labelled once (overlap 1): agreement is unknown;
- ``majority``: a unique plurality (``majority`` policy) or a share ≥ threshold
  (``min_agreement`` policy);
- ``weighted``: decided by annotator-reliability weighting (Dawid-Skene);
- ``adjudicated``: a reviewer's decision, which overrides every policy.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

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
POLICIES = (POLICY_MAJORITY, POLICY_UNANIMOUS, POLICY_MIN_AGREEMENT, POLICY_DAWID_SKENE)

TaskLabels = Mapping[Hashable, Mapping[Hashable, Hashable]]  # {task: {annotator: value}}


@dataclass(frozen=True)
class AggregationConfig:
    """How a snapshot turns several labels per task into one; stored with the snapshot."""

    # majority | unanimous | min_agreement | dawid_skene
    policy: str = POLICY_MAJORITY
    # Tasks with fewer labels are left undecided. 1 keeps single-label tasks (overlap 1).
    min_labels: int = 1
    # min_agreement only: the winning value's share of the labels, in (0, 1].
    threshold: float = 2 / 3
    # dawid_skene only: EM stops after this many iterations or when the log-likelihood
    # improves by less than ``tolerance`` (relative).
    max_iterations: int = 100
    tolerance: float = 1e-7
    # dawid_skene only: pseudo-count added to every cell of each annotator's confusion matrix
    # (a flat Dirichlet prior), so a value an annotator never used is unlikely, not impossible.
    smoothing: float = 0.01
    # dawid_skene only: a decision needs at least this posterior probability, else undecided.
    min_posterior: float = 0.0

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {self.policy!r}")
        if not 0 < self.threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        if self.min_labels < 1:
            raise ValueError("min_labels must be at least 1")


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


def _tally(labels: Mapping[Hashable, Hashable]) -> tuple[list, list[int]]:
    values, counts = [], []
    for v in labels.values():
        if v in values:
            counts[values.index(v)] += 1
        else:
            values.append(v)
            counts.append(1)
    return values, counts


def _vote(task, labels, *, min_labels: int, threshold: float | None, unanimous_only: bool):
    n = len(labels)
    weights = dict.fromkeys(labels, 1.0)
    undecided = Decision(task, None, None, 0.0, n, weights)
    if n < min_labels or n == 0:
        return undecided
    values, counts = _tally(labels)
    top = max(counts)
    share = top / n
    if counts.count(top) > 1:
        return Decision(task, None, None, share, n, weights)
    value = values[counts.index(top)]
    if len(values) == 1:
        return Decision(task, value, UNANIMOUS if n > 1 else SINGLE, 1.0, n, weights)
    if unanimous_only or (threshold is not None and share < threshold):
        return Decision(task, None, None, share, n, weights)
    return Decision(task, value, MAJORITY, share, n, weights)


def majority_vote(labels: TaskLabels, *, min_labels: int = 1) -> dict[Hashable, Decision]:
    """The unique plurality value; a tie at the top leaves the task undecided."""
    return {
        t: _vote(t, ls, min_labels=min_labels, threshold=None, unanimous_only=False)
        for t, ls in labels.items()
    }


def unanimous_only(labels: TaskLabels, *, min_labels: int = 2) -> dict[Hashable, Decision]:
    """Only tasks where every label agrees (and at least ``min_labels`` were given)."""
    return {
        t: _vote(t, ls, min_labels=min_labels, threshold=None, unanimous_only=True)
        for t, ls in labels.items()
    }


def minimum_agreement(
    labels: TaskLabels, *, threshold: float = 2 / 3, min_labels: int = 2
) -> dict[Hashable, Decision]:
    """The plurality value when its share of the labels is at least ``threshold``."""
    return {
        t: _vote(t, ls, min_labels=min_labels, threshold=threshold, unanimous_only=False)
        for t, ls in labels.items()
    }


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
# One entry point for snapshots
# --------------------------------------------------------------------------------------------


def aggregate(
    labels: TaskLabels,
    config: AggregationConfig,
    *,
    classes: Sequence[Hashable] | None = None,
    adjudicated: Mapping[Hashable, Hashable] | None = None,
    gold: Mapping[Hashable, Hashable] | None = None,
) -> dict[Hashable, Decision]:
    """Apply ``config.policy`` to every task; a reviewer's decision replaces the policy's."""
    if config.policy == POLICY_DAWID_SKENE:
        result = dawid_skene(
            labels,
            classes=classes,
            gold=gold,
            max_iterations=config.max_iterations,
            tolerance=config.tolerance,
            smoothing=config.smoothing,
        )
        decisions = result.decisions(labels, min_posterior=config.min_posterior)
        for t, ls in labels.items():
            if len(ls) < config.min_labels or not ls:
                decisions[t] = Decision(t, None, None, 0.0, len(ls), dict.fromkeys(ls, 1.0))
    elif config.policy == POLICY_UNANIMOUS:
        decisions = unanimous_only(labels, min_labels=max(config.min_labels, 2))
    elif config.policy == POLICY_MIN_AGREEMENT:
        decisions = minimum_agreement(
            labels, threshold=config.threshold, min_labels=config.min_labels
        )
    else:
        decisions = majority_vote(labels, min_labels=config.min_labels)
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
