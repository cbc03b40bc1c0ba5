"""Aggregation policies over the labels of one task."""

import pytest

from rlhf.data.aggregate import AggregationConfig, AggregationStats, aggregate_task
from rlhf.data.records import LabelRecord

RESPONSES = {11: "first answer", 12: "second answer"}


def pairwise(label_id, outcome, strength="clear", annotator=None):
    return LabelRecord(
        label_id=label_id,
        task_id=1,
        kind="pairwise",
        annotator_id=annotator or label_id,
        payload={"outcome": outcome, "strength": strength if outcome in "AB" else None},
        prompt_id=1,
        prompt=[{"role": "user", "content": "q"}],
        responses=RESPONSES,
    )


def run(labels, **config):
    stats = AggregationStats()
    units = aggregate_task(
        labels,
        config=AggregationConfig(**config),
        response_ids=list(RESPONSES),
        stats=stats,
        corrected_index={},
    )
    return units, stats


def test_majority_keeps_the_outcome_more_than_half_chose():
    # given three labels, two for A (clear, strong) and one for B
    labels = [pairwise(1, "A"), pairwise(2, "A", "strong"), pairwise(3, "B")]

    # when aggregated by majority
    units, stats = run(labels, policy="majority")

    # then one pair A over B with the agreeing labels' mean margin and 2/3 weight
    (unit,) = units
    (pair,) = unit.pairs
    assert (pair.chosen, pair.rejected, pair.margin, pair.weight) == (0, 1, 0.75, 0.6667)
    assert unit.kto == [(0, True), (1, False)]
    assert unit.key == "T1"
    assert stats.decisions["pairwise_pair"] == 1


def test_a_split_vote_has_no_majority():
    units, stats = run([pairwise(1, "A"), pairwise(2, "B")], policy="majority")
    assert units[0].pairs == []
    assert stats.decisions["no_agreement"] == 1


def test_unanimous_needs_every_label():
    units, _ = run([pairwise(1, "A"), pairwise(2, "A"), pairwise(3, "B")], policy="unanimous")
    assert units[0].pairs == []
    units, _ = run([pairwise(1, "B"), pairwise(2, "B")], policy="unanimous")
    assert [(p.chosen, p.rejected, p.weight) for p in units[0].pairs] == [(1, 0, 1.0)]


@pytest.mark.parametrize(("threshold", "pairs"), [(0.75, 1), (0.8, 0)])
def test_min_agreement(threshold, pairs):
    labels = [pairwise(1, "A"), pairwise(2, "A"), pairwise(3, "A"), pairwise(4, "tie")]
    units, _ = run(labels, policy="min_agreement", min_agreement=threshold)
    assert len(units[0].pairs) == pairs


def test_all_keeps_every_label_with_its_agreement_as_weight():
    units, _ = run([pairwise(1, "A"), pairwise(2, "B", "slight"), pairwise(3, "A")], policy="all")
    assert [u.key for u in units] == ["L1", "L2", "L3"]
    assert [(u.pairs[0].chosen, u.pairs[0].margin, u.pairs[0].weight) for u in units] == [
        (0, 0.5, 0.6667),
        (1, 0.25, 0.3333),
        (0, 0.5, 0.6667),
    ]


def test_ties_and_both_bad_stay_their_own_kind():
    # given a tie and a both-bad task
    tie_units, stats = run([pairwise(1, "tie")])
    bad_units, bad_stats = run([pairwise(1, "both_bad")])

    # then a tie makes nothing, both-bad makes two undesirable KTO rows and no pair
    assert tie_units[0].pairs == []
    assert tie_units[0].kto == []
    assert stats.decisions["pairwise_tie"] == 1
    assert bad_units[0].pairs == []
    assert bad_units[0].kto == [(0, False), (1, False)]
    assert bad_stats.decisions["both_bad"] == 1


def test_excluded_annotators_do_not_vote():
    # given A from a gold-failing annotator 9 and B from annotator 2
    labels = [pairwise(1, "A", annotator=9), pairwise(2, "B", annotator=2)]

    # when aggregated by unanimity without annotator 9
    units, stats = run(labels, policy="unanimous", exclude_annotators={9})

    # then B wins alone; the exclusion is counted
    assert [(p.chosen, p.rejected) for p in units[0].pairs] == [(1, 0)]
    assert stats.excluded["excluded_annotator"] == 1
    assert units[0].label_ids == [2]


def test_ranking_expands_to_pairs_without_ties():
    # given a ranking of four answers: 21 best, then 22 and 23 tied, then 24
    label = LabelRecord(
        label_id=5,
        task_id=2,
        kind="ranking",
        annotator_id=1,
        payload={"ranking": [[21], [22, 23], [24]]},
        prompt_id=1,
        prompt=[{"role": "user", "content": "q"}],
        responses={21: "a", 22: "b", 23: "c", 24: "d"},
    )
    stats = AggregationStats()

    # when aggregated
    (unit,) = aggregate_task(
        [label],
        config=AggregationConfig(),
        response_ids=[21, 22, 23, 24],
        stats=stats,
        corrected_index={},
    )

    # then 5 pairs (the tie gives none), the best is desirable, the worst undesirable
    assert sorted((p.chosen, p.rejected) for p in unit.pairs) == [
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 3),
        (2, 3),
    ]
    assert all(p.source == "ranking" and p.margin is None for p in unit.pairs)
    assert unit.kto == [(0, True), (3, False)]
    assert stats.decisions["ranking_tie"] == 1


def test_corrections_become_sft_and_a_pair_each():
    label = LabelRecord(
        label_id=7,
        task_id=3,
        kind="correction",
        annotator_id=1,
        payload={"response_id": 31, "corrected_text": "better", "unchanged": False},
        prompt_id=1,
        prompt=[{"role": "user", "content": "q"}],
        responses={31: "draft"},
    )
    stats = AggregationStats()
    (unit,) = aggregate_task(
        [label],
        config=AggregationConfig(policy="unanimous"),
        response_ids=[31],
        stats=stats,
        corrected_index={7: 1},
    )
    assert unit.sft == [1]
    assert [(p.chosen, p.rejected, p.source) for p in unit.pairs] == [(1, 0, "correction")]
    assert unit.kto == [(1, True), (0, False)]


def test_fleiss_kappa_of_perfect_and_split_agreement():
    _, agree = run([pairwise(1, "A"), pairwise(2, "A")])
    _, split = run([pairwise(1, "A"), pairwise(2, "B")])
    merged = AggregationStats()
    merged.merge(agree)
    merged.merge(split)
    assert agree.percent_agreement() == 1.0
    assert split.percent_agreement() == 0.0
    assert merged.percent_agreement() == 0.5
    # p(A) = 3/4, p(B) = 1/4: expected 0.625, observed 0.5
    assert merged.fleiss_kappa() == pytest.approx((0.5 - 0.625) / (1 - 0.625))


# -- one rule: the dashboard's final labels and a snapshot's rows decide alike -------------------

AGREEMENT_CASES = {
    "single": ["A"],
    "unanimous": ["B", "B"],
    "split": ["A", "B"],
    "two_of_three": ["A", "A", "B"],
    "plurality_of_five": ["A", "A", "B", "tie", "both_bad"],
    "two_ties_one_a": ["tie", "tie", "A"],
    "two_both_bad_one_b": ["both_bad", "both_bad", "B"],
    "tied_top": ["A", "A", "B", "B", "tie"],
    "33_of_50": ["A"] * 33 + ["B"] * 17,
}


def _snapshot_outcome(outcomes, config) -> str | None:
    labels = [pairwise(i + 1, outcome) for i, outcome in enumerate(outcomes)]
    stats = AggregationStats()
    units = aggregate_task(
        labels, config=config, response_ids=list(RESPONSES), stats=stats, corrected_index={}
    )
    if not units:  # too few labels
        return None
    (unit,) = units
    if unit.pairs:
        return "AB"[unit.pairs[0].chosen]
    if stats.decisions["pairwise_tie"]:
        return "tie"
    if stats.decisions["both_bad"]:
        return "both_bad"
    return None


@pytest.mark.parametrize("min_labels", [1, 2])
@pytest.mark.parametrize("policy", ["majority", "unanimous", "min_agreement"])
def test_dashboard_and_snapshot_aggregate_the_same_labels_alike(policy, min_labels):
    # given the same pairwise labels, read by the quality dashboard and by a snapshot
    from annotation.quality import aggregation as quality

    settings = {"policy": policy, "min_labels": min_labels}
    labels = {
        case: {f"annotator{i}": o for i, o in enumerate(outcomes)}
        for case, outcomes in AGREEMENT_CASES.items()
    }

    # when each aggregates them under the same policy and defaults
    dashboard = quality.aggregate(labels, quality.AggregationConfig(**settings))
    snapshot = {
        case: _snapshot_outcome(outcomes, AggregationConfig(**settings))
        for case, outcomes in AGREEMENT_CASES.items()
    }

    # then every task gets the same final outcome (or none) from both
    assert {case: d.value for case, d in dashboard.items()} == snapshot


def test_an_old_snapshot_config_loads_and_keeps_its_aggregation():
    # given the config a snapshot stored before the one engine (no Dawid-Skene knobs)
    from rlhf.data.config import PipelineConfig

    stored = {
        "aggregation": {
            "policy": "min_agreement",
            "min_agreement": 0.66,
            "min_labels": 2,
            "exclude_annotators": [7, 3],
        },
        "split": {"seed": 4},
    }

    # when it is read back
    config = PipelineConfig.from_dict(stored)

    # then it decides as it did, and is stored again with the same values
    assert config.aggregation == AggregationConfig(
        policy="min_agreement", min_agreement=0.66, min_labels=2, exclude_annotators={3, 7}
    )
    again = config.as_dict()["aggregation"]
    assert {k: again[k] for k in stored["aggregation"]} == {
        **stored["aggregation"],
        "exclude_annotators": [3, 7],
    }
    assert PipelineConfig.from_dict(config.as_dict()) == config


def test_a_snapshot_refuses_a_policy_that_must_fit_every_label_first():
    from rlhf.data.config import PipelineConfig

    with pytest.raises(ValueError, match="not available for snapshots"):
        PipelineConfig.from_dict({"aggregation": {"policy": "dawid_skene"}})
    with pytest.raises(ValueError, match="policy"):
        PipelineConfig.from_dict({"aggregation": {"policy": "loudest"}})
