"""What a round bought: the round report's figures, the reward model's accuracy before and after
on the same held-out pairs, and the pages that show them."""

import json

import pytest
from django.test import Client

from annotation.models import Prompt
from annotation.services import prompt_messages_hash
from models_registry import review_cycle, review_settings, round_report, services, stats
from models_registry.models import (
    LoopRound,
    ModelVersion,
    RoundKind,
    RoundStatus,
    VersionKind,
    VersionState,
)
from rlhf.models import DatasetSnapshot, SnapshotStatus
from rlhf.training.evaluation import evaluate_reward
from tests.models_registry.conftest import snapshot_and_run

pytestmark = pytest.mark.django_db

TINY_GENERATION = {"max_new_tokens": 8, "temperature": 1.0, "top_p": 1.0, "backend": "transformers"}


def _evaluation(cand_reward, champ_reward, kl, cand_len, champ_len, accuracy=None) -> dict:
    return {
        "reward_model": {"id": 1, "label": "rm v1"},
        "reward_accuracy": accuracy,
        "candidate": {
            "prompts": 4,
            "reward_mean": cand_reward,
            "kl_to_parent": kl,
            "lengths": {"mean": cand_len},
        },
        "champion": {"prompts": 4, "reward_mean": champ_reward, "lengths": {"mean": champ_len}},
    }


def _policy(project, engineer, parent, folder, name, label_count):
    snapshot, run = snapshot_and_run(project, engineer, status="succeeded")
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(label_count=label_count)
    return services.model_version_register(
        project=project, folder=folder, name=name, kind=VersionKind.POLICY,
        registered_by=engineer, parent=parent, launched_by=engineer, training_run=run,
        dataset_snapshot=snapshot,
    )  # fmt: skip


def _review_round(project, version, opponent, evaluation) -> LoopRound:
    return LoopRound.objects.create(
        project=project, kind=RoundKind.REVIEW, version=version, opponent=opponent,
        status=RoundStatus.READY, evaluation=evaluation,
    )  # fmt: skip


def test_the_report_gives_each_rounds_labels_reward_kl_lengths_and_win_rate(
    project, engineer, base_version, tiny_candidate_dir, add_reviews
):
    # given two review rounds: the first candidate trained on 120 labels, the second on 200
    first = _policy(project, engineer, base_version, tiny_candidate_dir, "dpo-one", 120)
    second = _policy(project, engineer, first, tiny_candidate_dir, "dpo-two", 200)
    accuracy = {
        "snapshot": 1,
        "split": "test",
        "pairs": 40,
        "before": {"version": 3, "accuracy": 0.55},
        "after": {"version": 4, "accuracy": 0.625},
    }
    one = _review_round(project, first, base_version, _evaluation(0.5, 0.25, 1.5, 60.0, 50.0))
    two = _review_round(project, second, first, _evaluation(-0.1, 0.3, 3.25, 40.0, 80.0, accuracy))
    # and blind reviews of the second: 3 wins, 1 loss, 1 tie
    add_reviews(second, first, "AABAt")

    # when the rounds are reported
    series = round_report.loop_round_series(project)

    # then each round shows what it spent and what it measured
    assert [r["round"] for r in series] == [one.pk, two.pk]
    first_report, second_report = series
    assert (first_report["labels_total"], first_report["labels_spent"]) == (120, 120)
    assert (second_report["labels_total"], second_report["labels_spent"]) == (200, 80)
    assert first_report["reward_gain"] == 0.25
    assert second_report["reward_gain"] == -0.4
    assert (first_report["kl_to_parent"], second_report["kl_to_parent"]) == (1.5, 3.25)
    assert (first_report["length_ratio"], second_report["length_ratio"]) == (1.2, 0.5)
    assert first_report["reward_accuracy"] == {"pairs": None, "before": None, "after": None}
    assert second_report["reward_accuracy"] == {"pairs": 40, "before": 0.55, "after": 0.625}
    # and the win rate only once reviews are in, with the review page's interval
    assert (first_report["win_rate"], first_report["reviews"]) == (None, 0)
    expected = stats.win_rate(3, 1, 1)
    assert second_report["reviews"] == 5
    assert second_report["win_rate"] == round(expected.win_rate, 4) == 0.7
    assert second_report["win_rate_ci"] == [round(expected.ci_low, 4), round(expected.ci_high, 4)]

    # and the chart plots accuracy and win rate against the labels in each snapshot
    chart = round_report.loop_round_chart(series)
    assert chart["accuracy"] == [{"x": 200, "y": 0.625, "round": two.pk}]
    assert chart["win_rate"] == [
        {
            "x": 200,
            "y": 0.7,
            "low": second_report["win_rate_ci"][0],
            "high": second_report["win_rate_ci"][1],
            "round": two.pk,
        }
    ]
    # and the text report (manage.py loop) says the same
    lines = round_report.loop_round_lines(second_report)
    assert "labels spent: 80 (200 in the snapshot)" in lines[1]
    assert "before 0.550, after 0.625 (40 test pairs)" in lines[2]
    assert "gain -0.400" in lines[3]
    assert "ratio 0.50" in lines[5]
    assert "0.700 (95% CI" in lines[6]
    assert "5 reviews" in lines[6]
    assert round_report.loop_round_lines(first_report)[6] == "  blind win rate: no reviews yet"


def _export_with_test_pairs(tmp_path, pairs: list[tuple[str, str, str]]):
    folder = tmp_path / "export"
    (folder / "preference").mkdir(parents=True)
    rows = [
        {
            "id": str(i),
            "prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
        for i, (prompt, chosen, rejected) in enumerate(pairs)
    ]
    test_file = folder / "preference" / "test.jsonl"
    test_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder, test_file


@pytest.fixture
def other_reward_dir(tiny_base_dir, tmp_path_factory):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-reward-other")
    torch.manual_seed(11)
    AutoModelForSequenceClassification.from_pretrained(tiny_base_dir, num_labels=1).save_pretrained(
        out
    )
    AutoTokenizer.from_pretrained(tiny_base_dir).save_pretrained(out)
    return out


def test_evaluation_scores_the_previous_and_the_rounds_reward_model_on_the_same_test_pairs(
    project,
    engineer,
    base_version,
    tiny_candidate_dir,
    tiny_reward_dir,
    other_reward_dir,
    tmp_path,
):
    # given a candidate whose snapshot holds 12 test pairs, pinned prompts to answer
    words = ["bread", "knife", "oven", "salt", "rest", "yeast", "flour", "water", "heat"]
    pairs = [
        (f"Question {i}?", " ".join(words[i % 9 :][:3]), " ".join(words[: (i * 5) % 9 + 1]))
        for i in range(12)
    ]
    export, test_file = _export_with_test_pairs(tmp_path, pairs)
    candidate = _policy(project, engineer, base_version, tiny_candidate_dir, "dpo", 30)
    DatasetSnapshot.objects.filter(pk=candidate.dataset_snapshot_id).update(
        export_path=str(export), status=SnapshotStatus.READY
    )
    messages = [{"role": "user", "content": "Question 0?"}]
    prompt = Prompt.objects.create(
        project=project, messages=messages, content_hash=prompt_messages_hash(messages)
    )
    project.options = {"review_fresh_prompts": 0, "review_generation": TINY_GENERATION}
    project.save()
    review_settings.eval_prompts_pin(project=project, prompt_ids=[prompt.pk])
    # and three reward models: the previous one, a rejected one after it, and the round's
    register = {"project": project, "kind": VersionKind.REWARD, "registered_by": engineer}
    before = services.model_version_register(folder=other_reward_dir, name="rm-old", **register)
    rejected = services.model_version_register(folder=tiny_reward_dir, name="rm-bad", **register)
    ModelVersion.objects.filter(pk=rejected.pk).update(state=VersionState.REJECTED)
    after = services.model_version_register(folder=tiny_reward_dir, name="rm-new", **register)

    # when the round is prepared and evaluated
    loop_round = review_cycle.loop_round_start_review(version=candidate)
    review_cycle.loop_round_prepare(round_id=loop_round.pk)
    evaluated = review_cycle.loop_round_evaluate(round_id=loop_round.pk)

    # then the previous (not the rejected) and the round's reward model were scored on the
    # candidate's test pairs, each as evaluate-reward scores it
    accuracy = evaluated.evaluation["reward_accuracy"]
    assert (accuracy["snapshot"], accuracy["split"], accuracy["pairs"]) == (
        candidate.dataset_snapshot_id,
        "test",
        12,
    )
    assert (accuracy["before"]["version"], accuracy["after"]["version"]) == (before.pk, after.pk)
    for key, folder in (("before", other_reward_dir), ("after", tiny_reward_dir)):
        assert accuracy[key]["accuracy"] == round(evaluate_reward(folder, test_file)["accuracy"], 6)
    # (the two models disagree on these pairs, so a swap of "before" and "after" would show)
    assert accuracy["before"]["accuracy"] != accuracy["after"]["accuracy"]
    report = round_report.loop_round_report(evaluated)
    assert report["reward_accuracy"] == {
        "pairs": 12,
        "before": round(accuracy["before"]["accuracy"], 4),
        "after": round(accuracy["after"]["accuracy"], 4),
    }


def test_a_round_without_test_pairs_records_no_accuracy(
    project, engineer, candidate, base_version, tiny_reward_dir
):
    messages = [{"role": "user", "content": "Question?"}]
    prompt = Prompt.objects.create(
        project=project, messages=messages, content_hash=prompt_messages_hash(messages)
    )
    project.options = {"review_fresh_prompts": 0, "review_generation": TINY_GENERATION}
    project.save()
    review_settings.eval_prompts_pin(project=project, prompt_ids=[prompt.pk])
    services.model_version_register(
        project=project, folder=tiny_reward_dir, name="rm", kind=VersionKind.REWARD,
        registered_by=engineer,
    )  # fmt: skip
    loop_round = review_cycle.loop_round_start_review(version=candidate)
    review_cycle.loop_round_prepare(round_id=loop_round.pk)
    evaluated = review_cycle.loop_round_evaluate(round_id=loop_round.pk)
    assert evaluated.evaluation["reward_accuracy"] is None
    assert evaluated.evaluation["candidate"]["kl_to_parent"] is not None


def test_the_pages_show_the_rounds_and_the_chart_data(
    project, engineer, reviewer, annotator, base_version, tiny_candidate_dir, add_reviews
):
    candidate = _policy(project, engineer, base_version, tiny_candidate_dir, "dpo", 64)
    accuracy = {"pairs": 20, "before": None, "after": {"version": 9, "accuracy": 0.6}}
    loop_round = _review_round(
        project, candidate, base_version, _evaluation(0.4, 0.1, 2.0, 30.0, 20.0, accuracy)
    )
    add_reviews(candidate, base_version, "AB")
    client = Client()
    client.force_login(reviewer)

    rounds = client.get(f"/models/projects/{project.pk}/rounds/")
    assert rounds.status_code == 200
    html = rounds.content.decode()
    assert f'data-testid="round-{loop_round.pk}"' in html
    chart = json.loads(rounds.context["chart_json"])
    assert chart["accuracy"] == [{"x": 64, "y": 0.6, "round": loop_round.pk}]
    assert [p["y"] for p in chart["win_rate"]] == [0.5]
    assert "<script>" not in html  # data travels in an attribute (CSP)

    report = client.get(f"/models/{candidate.pk}/report/")
    assert report.status_code == 200
    assert [r["round"] for r in report.context["reports"]] == [loop_round.pk]
    assert "(x1.50)" in report.content.decode()

    # an annotator reviews blind: no report, no chart
    client.force_login(annotator)
    assert client.get(f"/models/projects/{project.pk}/rounds/").status_code == 403
    assert client.get(f"/models/{candidate.pk}/report/").status_code == 403
