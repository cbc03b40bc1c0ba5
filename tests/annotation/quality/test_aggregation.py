"""Aggregation policies: votes, thresholds, adjudication and Dawid-Skene on a simulated crowd."""

import numpy as np
import pytest

from annotation.quality import aggregation
from annotation.quality.aggregation import (
    ADJUDICATED,
    MAJORITY,
    SINGLE,
    UNANIMOUS,
    WEIGHTED,
    AggregationConfig,
)

OUTCOMES = ("A", "B", "tie", "both_bad")

LABELS = {
    "t-unanimous": {"ann": "A", "bob": "A", "cy": "A"},
    "t-majority": {"ann": "A", "bob": "A", "cy": "B"},
    "t-split": {"ann": "A", "bob": "B"},
    "t-plurality": {"ann": "A", "bob": "A", "cy": "B", "dee": "tie", "eve": "both_bad"},
    "t-single": {"ann": "tie"},
}


def _values(decisions):
    return {t: (d.value, d.provenance) for t, d in decisions.items()}


def test_majority_vote():
    decisions = aggregation.majority_vote(LABELS)
    assert _values(decisions) == {
        "t-unanimous": ("A", UNANIMOUS),
        "t-majority": ("A", MAJORITY),
        "t-split": (None, None),
        # 2 of 5 is a plurality, not a majority (snapshots never took it; now neither does
        # the dashboard)
        "t-plurality": (None, None),
        "t-single": ("tie", SINGLE),
    }
    assert decisions["t-majority"].support == pytest.approx(2 / 3)
    assert decisions["t-majority"].weights == {"ann": 1.0, "bob": 1.0, "cy": 1.0}


def test_majority_vote_leaves_tasks_with_too_few_labels_undecided():
    decisions = aggregation.majority_vote(LABELS, min_labels=2)
    assert decisions["t-single"].value is None


def test_unanimous_only():
    assert _values(aggregation.unanimous_only(LABELS)) == {
        "t-unanimous": ("A", UNANIMOUS),
        "t-majority": (None, None),
        "t-split": (None, None),
        "t-plurality": (None, None),
        "t-single": (None, None),
    }


def test_minimum_agreement():
    decisions = aggregation.minimum_agreement(LABELS, threshold=0.6)
    assert _values(decisions) == {
        "t-unanimous": ("A", UNANIMOUS),
        "t-majority": ("A", MAJORITY),
        "t-split": (None, None),
        "t-plurality": (None, None),  # 2 of 5 is under 0.6
        "t-single": (None, None),  # one label is under min_labels=2
    }


def test_adjudication_overrides_every_policy():
    for policy in aggregation.POLICIES:
        decisions = aggregation.aggregate(
            LABELS,
            AggregationConfig(policy=policy),
            classes=OUTCOMES,
            adjudicated={"t-split": "B", "t-majority": "B"},
        )
        assert decisions["t-split"].value == "B"
        assert decisions["t-split"].provenance == ADJUDICATED
        assert decisions["t-majority"].weights == {"ann": 0.0, "bob": 0.0, "cy": 1.0}
        assert decisions["t-majority"].support == pytest.approx(1 / 3)


def test_config_refuses_unknown_policies_and_thresholds():
    with pytest.raises(ValueError, match="policy"):
        AggregationConfig(policy="loudest")
    with pytest.raises(ValueError, match="threshold"):
        AggregationConfig(policy="min_agreement", min_agreement=0)


# -- Dawid-Skene -----------------------------------------------------------------------------------


def _simulated_crowd(seed, *, tasks=600, per_task=5):
    """Ground truth plus labels from good, mediocre and spamming annotators."""
    rng = np.random.default_rng(seed)
    priors = np.array([0.42, 0.38, 0.12, 0.08])
    truth = rng.choice(len(OUTCOMES), size=tasks, p=priors)
    accuracy = {"good1": 0.85, "good2": 0.85, "good3": 0.8, "mid1": 0.65, "mid2": 0.6}
    spammers = {"random1", "random2", "random3", "always_a1", "always_a2"}
    annotators = [*accuracy, *sorted(spammers)]
    labels = {}
    for t in range(tasks):
        chosen = rng.choice(annotators, size=per_task, replace=False)
        task_labels = {}
        for a in chosen:
            if a.startswith("always_a"):
                value = 0
            elif a.startswith("random"):
                value = int(rng.integers(len(OUTCOMES)))
            elif rng.random() < accuracy[a]:
                value = int(truth[t])
            else:
                value = int(rng.choice([k for k in range(len(OUTCOMES)) if k != truth[t]]))
            task_labels[str(a)] = OUTCOMES[value]
        labels[t] = task_labels
    return {t: OUTCOMES[k] for t, k in enumerate(truth)}, labels, spammers


def _expected_accuracy(decisions, labels, truth):
    """Accuracy with undecided majority ties broken at random (their expected accuracy)."""
    total = 0.0
    for t, decision in decisions.items():
        if decision.value is not None:
            total += decision.value == truth[t]
            continue
        counts = {}
        for v in labels[t].values():
            counts[v] = counts.get(v, 0) + 1
        top = max(counts.values())
        tied = [v for v, c in counts.items() if c == top]
        total += (truth[t] in tied) / len(tied)
    return total / len(decisions)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dawid_skene_recovers_the_truth_better_than_majority_vote(seed):
    truth, labels, _ = _simulated_crowd(seed)

    by_vote = aggregation.majority_vote(labels)
    by_weight = aggregation.aggregate(
        labels, AggregationConfig(policy="dawid_skene"), classes=OUTCOMES
    )

    vote_accuracy = _expected_accuracy(by_vote, labels, truth)
    weighted_accuracy = _expected_accuracy(by_weight, labels, truth)
    # half the crowd spams: the vote is right about 70% of the time, the weighting over 80%
    assert weighted_accuracy > vote_accuracy + 0.08, (weighted_accuracy, vote_accuracy)
    assert weighted_accuracy > 0.8
    assert all(d.provenance == WEIGHTED for d in by_weight.values())


def test_dawid_skene_finds_the_spammers_and_weights_their_labels_down():
    _, labels, spammers = _simulated_crowd(4)

    result = aggregation.dawid_skene(labels, classes=OUTCOMES)

    assert result.converged
    accuracy = result.annotator_accuracy()
    worst_honest = min(v for a, v in accuracy.items() if a not in spammers)
    assert all(accuracy[s] < worst_honest for s in spammers), accuracy
    weights = dict(zip(result.annotators, result.label_weights(), strict=True))
    # an "always A" label says little more than the prior of A; a good annotator's says a lot
    assert weights["always_a1"][0] < 0.6
    assert weights["good1"][0] > 0.7
    assert weights["good1"][0] > weights["always_a1"][0] + 0.2
    decisions = result.decisions(labels)
    some_task = next(t for t, ls in labels.items() if "always_a1" in ls and "good1" in ls)
    exported = decisions[some_task].weights
    assert exported["good1"] > exported["always_a1"]
    assert result.posteriors.sum(axis=1) == pytest.approx(np.ones(len(result.tasks)))


def test_dawid_skene_pins_gold_tasks():
    labels = {1: {"ann": "A", "bob": "A"}, 2: {"ann": "B", "bob": "A"}}
    result = aggregation.dawid_skene(labels, classes=("A", "B"), gold={1: "B"})
    assert result.posteriors[result.tasks.index(1)].tolist() == [0.0, 1.0]


def test_dawid_skene_on_degenerate_input():
    empty = aggregation.dawid_skene({}, classes=OUTCOMES)
    assert empty.tasks == ()
    single = aggregation.aggregate(
        {7: {"solo": "tie"}}, AggregationConfig(policy="dawid_skene"), classes=OUTCOMES
    )
    assert single[7].value == "tie"
    too_few = aggregation.aggregate(
        {7: {"solo": "tie"}},
        AggregationConfig(policy="dawid_skene", min_labels=2),
        classes=OUTCOMES,
    )
    assert too_few[7].value is None


# --------------------------------------------------------------------------------------------
# gold_weighted
# --------------------------------------------------------------------------------------------


def test_gold_weights_are_the_log_odds_of_the_shrunk_gold_accuracy():
    # given two annotators' gold records: 9 of 10 and 5 of 10 (pooled: 14 of 20 = 0.7)
    config = AggregationConfig(
        policy="gold_weighted", gold_accuracy=[("ann", 9, 10), ("bob", 5, 10)]
    )
    known, default = aggregation.gold_weights(config)
    # then each weighs log(acc / (1 - acc)), acc shrunk by two answers at the pooled 0.7
    ann = (9 + 2 * 0.7) / 12
    assert known["ann"] == pytest.approx(np.log(ann / (1 - ann)))
    # bob's shrunk accuracy, (5 + 1.4) / 12 = 0.533, is above a coin's: he weighs a little
    bob = (5 + 2 * 0.7) / 12
    assert known["bob"] == pytest.approx(np.log(bob / (1 - bob)))
    assert 0 < known["bob"] < known["ann"]
    # an annotator without gold answers weighs what the pooled accuracy gives
    assert default == pytest.approx(np.log(0.7 / 0.3))
    # a perfect record is capped, not infinite
    perfect = AggregationConfig(policy="gold_weighted", gold_accuracy=[("ann", 1000, 1000)])
    assert aggregation.gold_weights(perfect)[0]["ann"] == pytest.approx(np.log(0.999 / 0.001))


def test_gold_weighted_follows_the_accurate_annotator_against_two_poor_ones():
    labels = {"t1": {"ann": "A", "bob": "B", "cy": "B"}, "t2": {"bob": "A", "cy": "A"}}
    config = AggregationConfig(
        policy="gold_weighted",
        gold_accuracy=[("ann", 20, 20), ("bob", 11, 20), ("cy", 10, 20)],
    )
    decisions = aggregation.aggregate(labels, config)
    # ann's record (20/20) outweighs bob's (11/20) and cy's (10/20) together
    assert _values(decisions) == {"t1": ("A", WEIGHTED), "t2": ("A", WEIGHTED)}
    known, _ = aggregation.gold_weights(config)
    assert known["ann"] > known["bob"] + known["cy"] > 0
    total = known["ann"] + known["bob"] + known["cy"]
    assert decisions["t1"].support == pytest.approx(known["ann"] / total)
    assert decisions["t2"].support == 1.0
    assert decisions["t1"].weights == known


def test_gold_weighted_without_any_gold_record_is_a_plurality_vote_and_ties_stay_undecided():
    labels = {"t1": {"ann": "A", "bob": "A", "cy": "B"}, "t2": {"ann": "A", "bob": "B"}}
    config = AggregationConfig(policy="gold_weighted")
    decisions = aggregation.aggregate(labels, config)
    # nobody has a gold record: the pooled accuracy is 0.5, every weight 0 -> undecided
    assert _values(decisions) == {"t1": (None, None), "t2": (None, None)}
    # with a crowd record above a coin, an annotator without gold weighs the crowd's weight
    config = AggregationConfig(policy="gold_weighted", gold_accuracy=[("dee", 8, 10)])
    decisions = aggregation.aggregate(labels, config)
    assert _values(decisions) == {"t1": ("A", WEIGHTED), "t2": (None, None)}
    assert decisions["t1"].support == pytest.approx(2 / 3)


def test_gold_weighted_records_its_gold_accuracy_and_refuses_a_bad_one():
    config = AggregationConfig(policy="gold_weighted", gold_accuracy=[[7, 3, 4], [2, 1, 1]])
    assert config.as_dict()["gold_accuracy"] == [[2, 1, 1], [7, 3, 4]]
    assert AggregationConfig.from_dict(config.as_dict()) == config
    with pytest.raises(ValueError, match="gold_accuracy"):
        AggregationConfig(policy="gold_weighted", gold_accuracy=[[1, 5, 4]])
    with pytest.raises(ValueError, match="gold_accuracy"):
        AggregationConfig(policy="gold_weighted", gold_accuracy=[[1, 2]])
    assert "gold_weighted" in aggregation.POLICIES
