"""The bias audit's statistics against values computed by hand (no database)."""

import math

import pytest

from rlhf.data import audit, topics
from rlhf.data.records import LabelRecord


def test_proportion_has_the_exact_binomial_p_value_and_the_wilson_interval():
    # 7 of 10: P(X >= 7) + P(X <= 3) = 2 * (120 + 45 + 10 + 1) / 1024
    p = audit.proportion(7, 10)
    assert p["share"] == 0.7
    assert p["p_value"] == pytest.approx(2 * 176 / 1024, rel=1e-3)  # 4 significant digits
    # Wilson: centre (0.7 + z²/20) / (1 + z²/10), half-width z/(1 + z²/10) * sqrt(.021 + z²/400)
    z = 1.959964
    centre = (0.7 + z * z / 20) / (1 + z * z / 10)
    half = z / (1 + z * z / 10) * math.sqrt(0.021 + z * z / 400)
    assert p["ci95"] == pytest.approx([centre - half, centre + half], abs=1e-4)
    assert audit.proportion(0, 0) == {"count": 0, "n": 0, "share": None, "ci95": None,
                                      "p_value": None}  # fmt: skip


def test_length_audit_counts_characters_words_and_the_longer_chosen_share():
    chosen = ["aaaa bb", "c", "ddd"]
    rejected = ["a", "cc dd", "eee"]
    out = audit.length_audit(chosen, rejected)
    assert out["pairs"] == 3
    assert out["chars"] == {"chosen_mean": 3.67, "rejected_mean": 3.0, "chosen_median": 3,
                            "rejected_median": 3}  # fmt: skip
    assert out["words"] == {"chosen_mean": 1.33, "rejected_mean": 1.33, "chosen_median": 1,
                            "rejected_median": 1}  # fmt: skip
    # one pair longer, one shorter, one tie (left out)
    assert (out["chosen_longer"]["count"], out["chosen_longer"]["n"]) == (1, 2)
    assert out["chosen_longer"]["p_value"] == 1.0
    assert out["equal_length"] == 1


def test_position_audit_tests_the_left_share_against_one_half():
    out = audit.position_audit(9, 1, not_recorded=4)
    # P(X >= 9) + P(X <= 1) = 2 * (1 + 10) / 1024
    assert out["chosen_left"]["p_value"] == pytest.approx(22 / 1024, rel=1e-3)
    assert out["chosen_left"]["share"] == 0.9
    assert out["not_recorded"] == 4


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("The cat is on the table and you can see it from the door", "en"),
        ("¿Dónde está el baño? Para una persona muy cansada es difícil", "es"),
        ("Ich bin nicht sicher, ob das stimmt, aber wir können es versuchen", "de"),
        ("Je ne suis pas sûr, mais nous pouvons essayer avec vous dans la maison", "fr"),
        ("Где находится вокзал?", "cyrillic"),
        ("東京はどこですか", "ja"),
        ("北京在哪里", "zh"),
        ("안녕하세요", "ko"),
        ("12345 !!", "und"),
        ("xyz qrs", "latin"),
    ],
)
def test_language_of_reads_the_script_then_stopwords(text, language):
    assert topics.language_of(text) == language


def test_language_audit_shares_sum_to_one_largest_first():
    out = topics.language_audit(["the cat and the dog", "Где вокзал", "where is the cat and"])
    assert out["languages"] == [
        {"language": "en", "count": 2, "share": 0.6667},
        {"language": "cyrillic", "count": 1, "share": 0.3333},
    ]


def test_tfidf_rows_are_unit_vectors_with_smoothed_idf():
    matrix, terms = topics.tfidf(["apple banana", "apple cherry", "banana cherry", "kiwi"])
    # every kept term is in two of four documents: idf = ln(5/3) + 1 for each, so equal
    assert terms == ["apple", "banana", "cherry"]
    row = matrix[0].toarray()[0]
    assert row == pytest.approx([1 / math.sqrt(2), 1 / math.sqrt(2), 0.0])
    assert matrix[3].nnz == 0  # "kiwi" is in one document only


def test_clusters_separate_two_topics():
    roses = [f"how do I prune roses in the garden in month {i}" for i in range(15)]
    code = [f"python function raises error in code line {i}" for i in range(15)]
    out = topics.cluster_audit(roses + code, k=2, seed=3)
    assert out["k"] == 2
    assert sorted(c["size"] for c in out["clusters"]) == [15, 15]
    tops = [set(c["top_terms"]) for c in out["clusters"]]
    assert any({"roses", "prune", "garden"} <= t for t in tops)
    assert any({"python", "function", "error"} <= t for t in tops)
    assert topics.cluster_audit(roses[:5])["clusters"] == []


def test_leave_one_out_agreement_skips_labels_whose_others_tie():
    assert audit.leave_one_out_agreement([(1, "A"), (2, "A"), (3, "B")]) == [(3, False)]
    assert audit.leave_one_out_agreement([(1, "A"), (2, "A"), (3, "A"), (4, "B")]) == [
        (1, True), (2, True), (3, True), (4, False),
    ]  # fmt: skip


def test_group_test_chi_square_fisher_and_no_variation():
    # 8/2 against 2/8: expected 5 in every cell, chi² = 4 * (3² / 5) = 7.2 on 1 dof
    chi = audit.group_test({"x": (8, 2), "y": (2, 8)})
    assert chi["test"] == "chi_square"
    assert chi["statistic"] == pytest.approx(7.2)
    assert chi["p_value"] == pytest.approx(math.erfc(math.sqrt(7.2 / 2)), rel=1e-3)
    assert chi["groups"]["x"]["share"] == 0.8
    # 3/0 against 0/3: expected 1.5, so Fisher: each extreme table has probability 1/20
    fisher = audit.group_test({"x": (3, 0), "y": (0, 3)})
    assert (fisher["test"], fisher["p_value"]) == ("fisher_exact", pytest.approx(0.1))
    assert audit.group_test({"x": (3, 0), "y": (2, 0)})["test"] is None
    assert audit.group_test({"x": (3, 1)})["test"] is None


def test_reward_probes_split_accuracy_by_length_and_side():
    # lengths: chosen longer in pairs 0 and 2, shorter in pair 1, equal in pair 3
    chosen = ["a" * 30, "a" * 10, "a" * 25, "a" * 7]
    rejected = ["a" * 20, "a" * 15, "a" * 5, "a" * 7]
    # scores rise with length everywhere: 30>25>20>15>10>7=7>5
    score = {30: 8.0, 25: 7.0, 20: 6.0, 15: 5.0, 10: 4.0, 7: 3.0, 5: 1.0}
    c = [score[len(t)] for t in chosen]
    r = [score[len(t)] for t in rejected]
    out = audit.reward_probes(c, r, chosen, rejected, ["left", "right", "left", None])
    assert out["pairs"] == 4
    assert (out["accuracy_chosen_longer"]["count"], out["accuracy_chosen_longer"]["n"]) == (2, 2)
    assert (out["accuracy_chosen_shorter"]["count"], out["accuracy_chosen_shorter"]["n"]) == (0, 1)
    assert out["reward_length_spearman"]["rho"] == 1.0
    assert (out["prefers_longer"]["count"], out["prefers_longer"]["n"]) == (3, 3)
    sides = out["accuracy_by_shown_side"]
    assert (sides["left"]["count"], sides["left"]["n"]) == (2, 2)
    assert (sides["right"]["count"], sides["right"]["n"]) == (0, 1)
    assert "accuracy_by_shown_side" not in audit.reward_probes(c, r, chosen, rejected)


def test_pairwise_calibration_bins_confidence_against_accuracy():
    # given margins 2 (right), -2 (wrong), 1 (right) and 0 (a tie, left out)
    out = audit.pairwise_calibration([2.0, 0.0, 1.0, 0.0], [0.0, 2.0, 0.0, 0.0])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    # then sigmoid(1) = 0.731 sits in 0.7-0.8, right; sigmoid(2) = 0.881 twice in 0.8-0.9, half
    assert out["pairs"] == 3
    assert [b["pairs"] for b in out["bins"]] == [0, 0, 1, 2, 0]
    assert out["bins"][2] == {"low": 0.7, "high": 0.8, "pairs": 1,
                              "confidence": round(sig(1), 4), "accuracy": 1.0}  # fmt: skip
    assert out["bins"][3]["accuracy"] == 0.5
    # and the ECE is the pair-weighted gap, by hand
    assert out["ece"] == round(1 / 3 * (1 - sig(1)) + 2 / 3 * (sig(2) - 0.5), 4)
    # a huge margin (confidence rounds to 1.0) lands in the last bin; only ties: no ECE
    assert audit.pairwise_calibration([100.0], [0.0])["bins"][4]["pairs"] == 1
    assert audit.pairwise_calibration([1.0], [1.0])["ece"] is None
    assert "calibration" in audit.reward_probes([1.0], [0.0], ["a"], ["b"])


def record(label_id, task_id, annotator, outcome, side, texts=("short", "a longer answer")):
    winner = {"A": 10 * task_id, "B": 10 * task_id + 1}.get(outcome)
    return LabelRecord(
        label_id=label_id, task_id=task_id, kind="pairwise", annotator_id=annotator,
        payload={"outcome": outcome, "winner": winner, "chosen_side": side},
        prompt_id=task_id, prompt=[{"role": "user", "content": f"question {task_id}"}],
        responses={10 * task_id: texts[0], 10 * task_id + 1: texts[1]},
    )  # fmt: skip


def test_collector_counts_sides_groups_and_names_the_side_of_each_row():
    # given task 1 labelled B by annotators 1 and 2 (both saw B on the left) and A by 3;
    # and task 2 labelled A by annotator 1 on the right, with no side recorded for annotator 2
    records = [
        record(1, 1, 1, "B", "left"),
        record(2, 1, 2, "B", "left"),
        record(3, 1, 3, "A", "right"),
        record(4, 2, 1, "A", "right"),
        record(5, 2, 2, "A", None),
    ]
    rows = [
        ("T1:r11>r10", "a longer answer", "short"),
        ("T2:r20>r21", "short", "a longer answer"),
        ("L3:r10>r11", "short", "a longer answer"),
    ]

    def collected(**options):
        collector = audit.AuditCollector(seed=0, **options)
        collector.observe_records(records)
        for row_id, chosen, rejected in rows:
            collector.observe_preference(
                {"id": row_id, "source": "pairwise", "chosen": [{"content": chosen}],
                 "rejected": [{"content": rejected}]}
            )  # fmt: skip
        return collector

    collector = collected()
    result = collector.result({1: "north", 2: "north", 3: "south"})

    # then: 2 left, 2 right, 1 without a side
    assert result["position"]["chosen_left"]["count"] == 2
    assert result["position"]["chosen_left"]["n"] == 4
    assert result["position"]["not_recorded"] == 1
    # task rows name the side most of their choosers saw; under the policy "all" (rows by
    # label) a row names its own label's side
    assert collector.row_sides == {"T1:r11>r10": "left", "T2:r20>r21": "right"}
    assert collected(rows_by_label=True).row_sides == {"L3:r10>r11": "right"}
    assert result["length"]["chosen_longer"]["count"] == 1
    # agreement with the others of the task: in task 1 the others of 1 and of 2 tie (B, A:
    # left out) and 3 disagrees with B, B; in task 2, 1 and 2 each agree with the other
    groups = result["groups"]
    assert groups["annotators_by_group"] == {"north": 2, "south": 1}
    agreement = groups["agreement_with_others"]["groups"]
    assert (agreement["north"]["count"], agreement["north"]["n"]) == (2, 2)
    assert (agreement["south"]["count"], agreement["south"]["n"]) == (0, 1)
    # chose the longer answer: B is longer in both tasks; north: B, B, A, A -> 2 of 4
    longer = groups["chose_longer"]["groups"]
    assert (longer["north"]["count"], longer["north"]["n"]) == (2, 4)
    assert (longer["south"]["count"], longer["south"]["n"]) == (0, 1)
    assert result["prompts"]["distinct"] == 2
    assert audit.AuditCollector().result({})["groups"] == {"recorded": False}


def test_the_card_section_states_each_probe():
    collector = audit.AuditCollector()
    collector.observe_records([record(1, 1, 1, "B", "left"), record(2, 1, 2, "A", "right")])
    collector.observe_preference(
        {"id": "T1:r11>r10", "source": "pairwise", "chosen": [{"content": "a longer answer"}],
         "rejected": [{"content": "short"}]}
    )  # fmt: skip
    text = "\n".join(audit.audit_markdown(collector.result({1: "a|b"})))
    assert "## Bias audit" in text
    assert "Chosen answer is the longer one: 100.0% (1 of 1;" in text
    assert "Chosen answer shown on the left: 50.0% (1 of 2;" in text
    assert "fewer than 20 prompts: not clustered" in text
    assert "a\\|b 1" in text  # a group name cannot break the table


def test_the_card_section_survives_pairs_of_equal_length_and_no_labels():
    collector = audit.AuditCollector()
    collector.observe_preference(
        {"id": "T1:r1>r2", "source": "import", "chosen": [{"content": "same"}],
         "rejected": [{"content": "SAME"}]}
    )  # fmt: skip
    text = "\n".join(audit.audit_markdown(collector.result({})))
    assert "Chosen answer is the longer one: not measurable" in text
    assert "No decided pairwise label records the side" in text
    assert "No annotator of this project has a group" in text
