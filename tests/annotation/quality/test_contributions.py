"""Task contributions: sums over tasks equal direct computations, in any order of updates."""

import random

import krippendorff
import numpy as np
import pytest

from annotation.quality import contributions as qc
from annotation.quality.config import QualityConfig
from annotation.quality.metrics import INTERVAL, NOMINAL, ORDINAL
from annotation.quality.report import quality_report

STRENGTHS = ("slight", "clear", "strong")


def _pairwise_label(rng, annotator, day="2025-03-01"):
    outcome = rng.choice(["A", "A", "B", "B", "tie", "both_bad"])
    strength = rng.choice(STRENGTHS) if outcome in ("A", "B") else None
    side = rng.choice(["l", "r"]) if outcome in ("A", "B") else None
    return {"a": annotator, "v": [outcome, strength], "s": side, "d": rng.randint(500, 90_000),
            "f": int(rng.random() < 0.05), "day": day}  # fmt: skip


def _pairwise_project(seed, tasks=60, annotators=6):
    rng = random.Random(seed)
    facts = {}
    for t in range(tasks):
        chosen = rng.sample(range(1, annotators + 1), rng.choice([1, 2, 3, 3]))
        day = f"2025-03-{1 + t % 5:02d}"
        facts[t] = {
            "kind": "pairwise",
            "items": [100 + 2 * t, 101 + 2 * t],
            "gold": None,
            "done_day": day if len(chosen) == 3 else None,
            "labels": [_pairwise_label(rng, a, day) for a in chosen],
            "skips": [{"a": 9, "day": day}] if t % 10 == 0 else [],
        }
    return facts


def _sum(all_facts):
    project, annotators, pairs = {}, {}, {}
    for facts in all_facts:
        p, a, pr = qc.task_contribution(facts)
        project = qc.nested_add(project, p)
        for k, v in a.items():
            annotators[k] = qc.nested_add(annotators.get(k), v)
        pairs = qc.nested_add(pairs, pr)
    return project, annotators, pairs


def test_incremental_updates_in_any_order_equal_the_full_sum():
    facts = _pairwise_project(0)
    full = _sum(facts.values())

    # given the caches built task by task while labels arrive and some tasks change
    rng = random.Random(1)
    project, annotators, pairs = {}, {}, {}
    applied = {}

    def apply(task, new):
        nonlocal project, pairs
        for sign, f in ((-1, applied.get(task)), (1, new)):
            if f is None:
                continue
            p, a, pr = qc.task_contribution(f)
            project = qc.nested_add(project, p, sign)
            pairs = qc.nested_add(pairs, pr, sign)
            for k, v in a.items():
                merged = qc.nested_add(annotators.get(k), v, sign)
                if merged:
                    annotators[k] = merged
                else:
                    annotators.pop(k, None)
        applied[task] = new

    order = list(facts)
    rng.shuffle(order)
    for t in order:
        partial = dict(facts[t], labels=facts[t]["labels"][:1], done_day=None)
        apply(t, partial)
    rng.shuffle(order)
    for t in order:
        apply(t, facts[t])

    assert (project, annotators, pairs) == full


def test_summed_alpha_equals_the_krippendorff_package():
    facts = _pairwise_project(2, tasks=120)
    project, _, _ = _sum(facts.values())
    annotator_ids = sorted({lb["a"] for f in facts.values() for lb in f["labels"]})
    # reliability data: (coders, units), NaN where a coder did not label the task
    outcome_index = {o: i for i, o in enumerate(qc.OUTCOMES)}
    outcome_data = np.full((len(annotator_ids), len(facts)), np.nan)
    strength_data = np.full_like(outcome_data, np.nan)
    for col, f in enumerate(facts.values()):
        for lb in f["labels"]:
            row = annotator_ids.index(lb["a"])
            outcome_data[row, col] = outcome_index[lb["v"][0]]
            if lb["v"][0] != "both_bad":
                key = "tie" if lb["v"][0] == "tie" else f"{lb['v'][0]}:{lb['v'][1]}"
                strength_data[row, col] = qc.STRENGTH_SCALE.index(key)

    report = quality_report(
        kinds={"pairwise": project}, annotators={}, pairs={}, config=QualityConfig()
    )
    agreement = report["kinds"]["pairwise"]["agreement"]

    expected_nominal = krippendorff.alpha(
        outcome_data, level_of_measurement=NOMINAL, value_domain=[0, 1, 2, 3]
    )
    expected_ordinal = krippendorff.alpha(
        strength_data, level_of_measurement=ORDINAL, value_domain=list(range(7))
    )
    assert agreement["outcome"]["alpha_nominal"] == pytest.approx(expected_nominal, abs=1e-4)
    assert agreement["strength"]["alpha_ordinal"] == pytest.approx(expected_ordinal, abs=1e-4)


def test_rubric_scores_give_interval_alpha_per_dimension():
    labels = [
        {"a": 1, "v": {"7": {"help": 4, "safe": 5}}, "day": "2025-01-01"},
        {"a": 2, "v": {"7": {"help": 5, "safe": 5}}, "day": "2025-01-01"},
    ]
    other = [
        {"a": 1, "v": {"8": {"help": 1, "safe": 2}}, "day": "2025-01-01"},
        {"a": 2, "v": {"8": {"help": 2, "safe": 2}}, "day": "2025-01-01"},
    ]
    project, _, _ = _sum(
        [
            {"kind": "rubric", "items": [7], "labels": labels},
            {"kind": "rubric", "items": [8], "labels": other},
        ]
    )
    summary = quality_report(
        kinds={"rubric": project}, annotators={}, pairs={}, config=QualityConfig()
    )["kinds"]["rubric"]
    expected = krippendorff.alpha([[4, 1], [5, 2]], level_of_measurement=INTERVAL)
    assert summary["agreement"]["rubric:help"]["alpha_interval"] == pytest.approx(
        expected, abs=1e-4
    )
    assert summary["distribution"]["safe"] == {"5": 2, "2": 2}


def test_ranking_tasks_give_kendall_w_and_tau_against_the_others():
    labels = [
        {"a": 1, "v": [[10], [11], [12]], "day": "2025-01-01"},
        {"a": 2, "v": [[10], [11], [12]], "day": "2025-01-01"},
        {"a": 3, "v": [[12], [11], [10]], "day": "2025-01-01"},
    ]
    facts = {"kind": "ranking", "items": [10, 11, 12], "labels": labels}
    project, annotators, _ = qc.task_contribution(facts)
    # rank sums (1+1+3, 2+2+2, 3+3+1) = (5, 6, 7): S = 2, W = 12·2 / (9·24) = 1/9
    assert project["kendall_w"] == {"sum_micro": round(1e6 / 9), "tasks": 1}
    assert annotators[3]["tau_sum_micro"] == -1_000_000
    assert qc.task_agreement(facts) == pytest.approx(1 / 9)


def test_gold_tasks_count_for_gold_accuracy_and_not_for_agreement():
    facts = {
        "kind": "pairwise",
        "items": [1, 2],
        "gold": ["B", None],
        "labels": [
            {"a": 1, "v": ["B", "slight"], "s": "r", "day": "2025-01-01"},
            {"a": 2, "v": ["A", "strong"], "s": "l", "day": "2025-01-01"},
        ],
    }
    project, annotators, pairs = qc.task_contribution(facts)
    assert "agreement" not in project
    assert pairs == {}
    assert project["gold_labels"] == 2
    assert annotators[1]["gold_correct"] == 1
    assert annotators[2]["gold_correct"] == 0
    assert annotators[2]["gold_answered"] == 1
    assert annotators[2]["left"] == 1


def test_gold_matching_by_kind():
    assert qc.gold_matches("pairwise", ["A", None], ["A", "strong"])
    assert not qc.gold_matches("pairwise", ["A", None], ["tie", None])
    assert qc.gold_matches("ranking", [[3], [1, 2]], [[3], [2], [1]])
    assert not qc.gold_matches("ranking", [[3], [1, 2]], [[1, 3], [2]])
    assert qc.gold_matches("rubric", {"5": {"help": 4}}, {"5": {"help": 3}})
    assert not qc.gold_matches("rubric", {"5": {"help": 4}}, {"5": {"help": 2}})


def test_nested_add_drops_what_falls_to_zero():
    base = {"x": 2, "y": [1, 0], "z": {"w": 1}}
    assert qc.nested_add(base, base, -1) == {}
    assert qc.nested_add(None, {"y": [[1, 2]]}) == {"y": [[1, 2]]}


def test_report_lists_annotators_with_alerts_and_sparklines():
    facts = _pairwise_project(3, tasks=80)
    project, annotators, pairs = _sum(facts.values())
    annotators[42] = {"labels": 40, "left": 40, "days": {"2025-03-05": {"labels": 40}}}

    report = quality_report(
        kinds={"pairwise": project},
        annotators=annotators,
        pairs=pairs,
        config=QualityConfig(sparkline_days=7),
        names={42: "lefty"},
        paused={42: True},
        tasks_total=100,
        tasks_done=50,
    )

    lefty = next(r for r in report["annotators"] if r["name"] == "lefty")
    assert lefty["position_bias"]["flagged"]
    assert set(lefty["alerts"]) == {"position_bias", "paused"}
    assert lefty["sparkline"]["labels"] == [0, 0, 0, 0, 0, 0, 40]
    assert report["cohen_kappa"]["pairs"] > 0
    assert [d["day"] for d in report["series"]] == [f"2025-03-0{i}" for i in range(1, 6)]
    assert sum(d["labels"] for d in report["series"]) == project["labels"]
    assert report["kinds"]["pairwise"]["tie_rate"] is not None
