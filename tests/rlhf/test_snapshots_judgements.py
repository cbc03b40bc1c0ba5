"""Every human judgement reaches the training data: flags, adjudications and reliability
policies, as snapshots built on PostgreSQL export them (exact rows)."""

import json
from pathlib import Path

import pytest

from annotation.models import Label, Prompt, Response, Task, TaskItem
from annotation.quality.aggregation import AggregationConfig, gold_weights
from annotation.quality.models import Adjudication, AnnotatorQuality
from annotation.services import project_settings_update
from annotation.services.labels import label_edit
from rlhf.data.export import iter_export_rows
from rlhf.data.records import SPLITS
from rlhf.models import DatasetSnapshot, SnapshotStatus
from rlhf.snapshots import services
from rlhf.snapshots.selectors import snapshot_flag_policy

pytestmark = pytest.mark.postgres

SAFE = "Here is a careful and honest answer about gardening."
UNSAFE = "Here is how to hurt someone badly with garden tools."


@pytest.fixture
def crowd(make_user):
    return [make_user(f"crowd{i}") for i in range(3)]


def pairwise_task(project, prompt_text, a_text, b_text, votes):
    """A pairwise task (A = ``a_text``) with one label per ``(annotator, outcome, flags)``."""
    prompt = Prompt.objects.create(
        project=project,
        messages=[{"role": "user", "content": prompt_text}],
        content_hash=f"h-{prompt_text}",
    )
    task = Task.objects.create(
        project=project,
        prompt=prompt,
        kind="pairwise",
        required_labels=len(votes),
        content_hash=f"t-{prompt_text}",
    )
    responses = []
    for position, text in enumerate((a_text, b_text)):
        response = Response.objects.create(
            prompt=prompt, text=text, content_hash=f"r-{prompt_text}-{position}", origin="import"
        )
        TaskItem.objects.create(task=task, response=response, position=position)
        responses.append(response)
    for annotator, outcome, flags in votes:
        winner = {"A": responses[0].pk, "B": responses[1].pk}.get(outcome)
        Label.objects.create(
            task=task,
            annotator=annotator,
            kind="pairwise",
            payload={
                "outcome": outcome,
                "strength": "clear" if winner else None,
                "winner": winner,
                "chosen_side": None,
                "rationale": "",
            },
            flags=flags,
        )
    return task


def flagged_by_the_minority(project, crowd):
    """Two annotators prefer the unsafe answer B; the third prefers A and flags the task."""
    a, b, c = crowd
    return pairwise_task(
        project, "How do I prune roses?", SAFE, UNSAFE,
        [(a, "B", []), (b, "B", []), (c, "A", ["unsafe"])],
    )  # fmt: skip


def build(project, engineer, **config):
    snapshot = services.snapshot_create(project=project, created_by=engineer, config=config)
    snapshot.refresh_from_db()
    assert snapshot.status == "ready", snapshot.error
    return snapshot


def rows(snapshot, shape="preference"):
    export = Path(snapshot.export_path)
    return [row for split in SPLITS for row in iter_export_rows(export, shape, split)]


def pairs(snapshot):
    return sorted(
        (row["prompt"][-1]["content"], row["chosen"][0]["content"], row["rejected"][0]["content"])
        for row in rows(snapshot)
    )


def test_a_response_flagged_unsafe_is_never_chosen_and_the_pair_is_dropped_by_default(
    project, engineer, crowd, snapshot_settings
):
    # given a task where two annotators prefer the unsafe answer B and one prefers A and
    # flags the task unsafe, and a clean task
    a = crowd[0]
    flagged_by_the_minority(project, crowd)
    pairwise_task(project, "When do tulips bloom?", "In spring.", "Never.", [(a, "A", [])])

    # when a snapshot is built under the default flag policy
    snapshot = build(project, engineer)

    # then the flagged task gives no preference row, no desirable KTO row, and is counted
    assert pairs(snapshot) == [("When do tulips bloom?", "In spring.", "Never.")]
    kto = sorted((r["completion"][0]["content"], r["label"]) for r in rows(snapshot, "kto"))
    assert kto == [("In spring.", True), ("Never.", False)]
    flags = snapshot.report["flags"]
    assert flags["policy"] == {
        "min_flags": 1,
        "unsafe": "drop",
        "personal_data": "drop",
        "spam": "drop",
        "other": "keep",
    }
    assert flags["tasks_flagged"] == {"unsafe": 1}
    assert flags["rows_removed"] == {"unsafe": {"preference": 1, "kto": 2}}
    assert flags["rows_changed"] == {}
    assert snapshot.config["flags"] == flags["policy"]
    assert "## Flags" in snapshot.data_card
    assert "| unsafe | 1 | preference 1, kto 2 | none |" in snapshot.data_card


def test_under_the_reject_policy_the_flagged_side_becomes_rejected(
    project, engineer, crowd, snapshot_settings
):
    # given the majority prefers B, which the third annotator flagged unsafe (preferring A)
    flagged_by_the_minority(project, crowd)

    # when built with the reject policy
    snapshot = build(project, engineer, flags={"unsafe": "reject"})

    # then the pair is kept with the flagged answer as rejected
    assert pairs(snapshot) == [("How do I prune roses?", SAFE, UNSAFE)]
    kto = sorted((r["completion"][0]["content"], r["label"]) for r in rows(snapshot, "kto"))
    assert kto == sorted([(SAFE, True), (UNSAFE, False)])
    assert snapshot.report["flags"]["rows_changed"] == {"unsafe": {"preference": 1, "kto": 2}}
    assert snapshot.report["flags"]["rows_removed"] == {}


def test_a_flag_below_the_projects_minimum_changes_nothing(
    project, engineer, crowd, snapshot_settings
):
    # given a project that needs two annotators to agree on a flag, and a task flagged once
    project.options = {**project.options, "flags": {"min_flags": 2}}
    project.save(update_fields=["options"])
    flagged_by_the_minority(project, crowd)

    # when built without a flag policy in the request
    snapshot = build(project, engineer)

    # then the project's policy is recorded and the majority's pair is exported unchanged
    assert snapshot.config["flags"]["min_flags"] == 2
    assert pairs(snapshot) == [("How do I prune roses?", UNSAFE, SAFE)]
    assert snapshot.report["flags"]["tasks_flagged"] == {}
    assert snapshot.report["flags"]["flagged_below_minimum"] == {"unsafe": 1}


def test_spam_drops_the_item_and_personal_data_is_dropped_or_scrubbed(
    project, engineer, crowd, snapshot_settings
):
    # given a task flagged spam, one flagged personal data (an e-mail address the cleaning
    # config would keep), and a clean task
    a = crowd[0]
    pairwise_task(project, "Buy cheap pills?", "BUY NOW!!!", "CLICK HERE!!!", [(a, "A", ["spam"])])
    pairwise_task(
        project, "Who runs the shop?", "Mail jo@example.com for it.", "No idea at all.",
        [(a, "A", ["personal_data"])],
    )  # fmt: skip
    pairwise_task(project, "When do tulips bloom?", "In spring.", "Never.", [(a, "A", [])])
    no_scrub = {"scrub_pii": False}

    # when built with personal data dropped (the default), then scrubbed
    dropped = build(project, engineer, cleaning=no_scrub)
    scrubbed = build(project, engineer, cleaning=no_scrub, flags={"personal_data": "scrub"})

    # then spam is gone everywhere, and the personal-data task is gone or scrubbed
    assert pairs(dropped) == [("When do tulips bloom?", "In spring.", "Never.")]
    assert sorted(r["prompt"][-1]["content"] for r in rows(dropped, "prompt_only")) == [
        "When do tulips bloom?"
    ]
    assert dropped.report["flags"]["rows_removed"] == {
        "personal_data": {"preference": 1, "kto": 2, "prompt_only": 1},
        "spam": {"preference": 1, "kto": 2, "prompt_only": 1},
    }
    assert pairs(scrubbed) == [
        ("When do tulips bloom?", "In spring.", "Never."),
        ("Who runs the shop?", "Mail [EMAIL] for it.", "No idea at all."),
    ]
    assert scrubbed.report["flags"]["texts_scrubbed"] == 1
    assert scrubbed.report["flags"]["rows_removed"] == {
        "spam": {"preference": 1, "kto": 2, "prompt_only": 1}
    }


def test_flags_export_as_their_own_dataset(project, engineer, crowd, snapshot_settings):
    # given a task the third annotator flags unsafe, attributing it to the answer they rejected
    task = flagged_by_the_minority(project, crowd)

    # when a snapshot is built
    snapshot = build(project, engineer)

    # then the flags file holds the flagged text with its agreement, and the card lists it
    unsafe_id = task.items.get(position=1).response_id
    assert rows(snapshot, "flags") == [
        {
            "id": f"T{task.pk}:r{unsafe_id}:unsafe",
            "prompt": [{"role": "user", "content": "How do I prune roses?"}],
            "completion": [{"role": "assistant", "content": UNSAFE}],
            "flag": "unsafe",
            "flagged_by": 1,
            "labels": 3,
            "agreement": 0.3333,
        }
    ]
    manifest = json.loads((Path(snapshot.export_path) / "manifest.json").read_text())
    assert sum(manifest["shapes"]["flags"].values()) == 1
    assert "| flags |" in snapshot.data_card


def test_the_flag_policy_is_read_through_one_selector_with_a_documented_default(project):
    # given a project without a setting, then one with a partial setting
    assert snapshot_flag_policy(project=project) == {
        "min_flags": 1,
        "unsafe": "drop",
        "personal_data": "drop",
        "spam": "drop",
        "other": "keep",
    }
    project.options = {**project.options, "flags": {"unsafe": "reject"}}
    assert snapshot_flag_policy(project=project)["unsafe"] == "reject"
    assert snapshot_flag_policy(project=project)["spam"] == "drop"


def test_a_snapshot_config_recorded_before_flag_policies_ignores_flags():
    from rlhf.data.config import PipelineConfig

    old = PipelineConfig.from_dict({"aggregation": {"policy": "majority"}})
    assert old.flags.as_dict() == {
        "min_flags": 1,
        "unsafe": "keep",
        "personal_data": "keep",
        "spam": "keep",
        "other": "keep",
    }


def adjudicate(task, reviewer, outcome, flags=None):
    winner = task.items.get(position={"A": 0, "B": 1}[outcome]).response_id
    return Adjudication.objects.update_or_create(
        task=task,
        defaults={
            "project": task.project,
            "reviewer": reviewer,
            "flags": flags,
            "payload": {
                "outcome": outcome,
                "strength": "strong",
                "winner": winner,
                "chosen_side": None,
                "rationale": "",
            },
            "reason": "checked the facts",
        },
    )[0]


@pytest.mark.parametrize("policy", ["majority", "all"])
def test_an_adjudicated_task_exports_the_adjudicators_outcome_whatever_the_votes(
    project, engineer, crowd, snapshot_settings, policy
):
    # given a task two of three annotators decided for B, adjudicated for A, and a plain task
    a, b, c = crowd
    task = pairwise_task(
        project, "How do I prune roses?", SAFE, "Cut everything down to the ground.",
        [(a, "B", []), (b, "B", []), (c, "A", [])],
    )  # fmt: skip
    pairwise_task(project, "When do tulips bloom?", "In spring.", "Never.", [(a, "A", [])])
    adjudicate(task, engineer, "A")

    # when a snapshot is built
    snapshot = build(project, engineer, aggregation={"policy": policy})

    # then the adjudicated task gives one row, the adjudicator's, counted as changed
    assert pairs(snapshot) == [
        ("How do I prune roses?", SAFE, "Cut everything down to the ground."),
        ("When do tulips bloom?", "In spring.", "Never."),
    ]
    adjudicated = next(r for r in rows(snapshot) if r["id"].startswith(f"T{task.pk}:"))
    assert adjudicated["margin"] == 1.0
    assert snapshot.report["adjudications"] == {"tasks": 1, "comparisons_changed": 1}
    assert snapshot.report["adjudications_changed"] == 1
    assert "Tasks decided by an adjudicator: 1" in snapshot.data_card


def test_the_adjudication_is_frozen_when_the_snapshot_is_built(
    project, engineer, crowd, snapshot_settings
):
    # given an adjudicated task and a snapshot built from it
    a, b, c = crowd
    task = pairwise_task(
        project, "How do I prune roses?", SAFE, "Cut everything down to the ground.",
        [(a, "B", []), (b, "B", []), (c, "A", [])],
    )  # fmt: skip
    adjudicate(task, engineer, "A")
    snapshot = build(project, engineer)
    first = pairs(snapshot)

    # when the adjudication is edited and the snapshot is built again
    adjudicate(task, engineer, "B")
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(status=SnapshotStatus.FAILED)
    rebuilt = services.snapshot_build(snapshot_id=snapshot.pk)

    # then it exports the decision it froze, and records it
    assert (
        pairs(rebuilt)
        == first
        == [("How do I prune roses?", SAFE, "Cut everything down to the ground.")]
    )
    assert rebuilt.frozen_adjudications == {
        str(task.pk): Adjudication.objects.get(task=task).payload | {
            "outcome": "A", "winner": task.items.get(position=0).response_id
        }
    }  # fmt: skip


def test_agreeing_adjudication_changes_no_row(project, engineer, crowd, snapshot_settings):
    # given a task the majority and the adjudicator both decide for A
    a, b, c = crowd
    task = pairwise_task(
        project, "How do I prune roses?", SAFE, "Cut everything down to the ground.",
        [(a, "A", []), (b, "A", []), (c, "B", [])],
    )  # fmt: skip
    adjudicate(task, engineer, "A")

    # when built
    snapshot = build(project, engineer)

    # then the row is the same, and no change is counted
    assert pairs(snapshot) == [
        ("How do I prune roses?", SAFE, "Cut everything down to the ground.")
    ]
    assert snapshot.report["adjudications"] == {"tasks": 1, "comparisons_changed": 0}


def test_dawid_skene_outvotes_a_block_of_always_first_clickers(
    project, engineer, make_user, snapshot_settings
):
    # given 12 tasks, half with the better answer first and half second: two careful
    # annotators always pick the better answer, three clickers always pick A
    careful = [make_user(f"careful{i}") for i in range(2)]
    clickers = [make_user(f"clicker{i}") for i in range(3)]
    for n in range(12):
        good, bad = f"Good answer number {n} here.", f"Bad answer number {n} there."
        better_first = n % 2 == 0
        a, b = (good, bad) if better_first else (bad, good)
        truth = "A" if better_first else "B"
        votes = [(u, truth, []) for u in careful] + [(u, "A", []) for u in clickers]
        pairwise_task(project, f"Question number {n} please?", a, b, votes)

    # when built by majority and by Dawid-Skene
    majority = build(project, engineer, aggregation={"policy": "majority"})
    weighted = build(project, engineer, aggregation={"policy": "dawid_skene"})

    # then the majority follows the clickers on every second task, Dawid-Skene never
    def wrong(snapshot):
        return sum(chosen.startswith("Bad") for _, chosen, _ in pairs(snapshot))

    assert (len(pairs(majority)), wrong(majority)) == (12, 6)
    assert (len(pairs(weighted)), wrong(weighted)) == (12, 0)
    assert weighted.report["aggregation"]["policy"] == "dawid_skene"
    # each row's weight is its Dawid-Skene posterior; a vote's, its share (3 of 5, or all)
    assert all(0.5 < row["weight"] <= 1.0 for row in rows(weighted))
    assert sorted({row["weight"] for row in rows(majority)}) == [0.6, 1.0]
    assert "exported as the preference `weight` column" in weighted.data_card


def rubric_task(project, prompt_text, texts, scores_by_annotator):
    """A rubric task over ``texts``; ``scores_by_annotator``: (annotator, [{dim: score}] per
    text, flags)."""
    prompt = Prompt.objects.create(
        project=project,
        messages=[{"role": "user", "content": prompt_text}],
        content_hash=f"h-{prompt_text}",
    )
    task = Task.objects.create(
        project=project, prompt=prompt, kind="rubric", content_hash=f"t-{prompt_text}"
    )
    ids = []
    for position, text in enumerate(texts):
        response = Response.objects.create(
            prompt=prompt, text=text, content_hash=f"r-{prompt_text}-{position}", origin="import"
        )
        TaskItem.objects.create(task=task, response=response, position=position)
        ids.append(response.pk)
    for annotator, scores, flags in scores_by_annotator:
        Label.objects.create(
            task=task,
            annotator=annotator,
            kind="rubric",
            payload={"scores": {str(rid): s for rid, s in zip(ids, scores, strict=True)}},
            flags=flags,
        )
    return task, ids


def test_rubric_scores_export_as_pairs_per_dimension_and_as_scores(
    project, engineer, crowd, snapshot_settings
):
    # given two annotators scoring two answers on two dimensions: helpfulness differs, harm ties
    a, b = crowd[:2]
    task, (first, second) = rubric_task(
        project, "How do I prune roses?", [SAFE, "Roses? No idea."],
        [
            (a, [{"helpful": 5, "harmless": 5}, {"helpful": 2, "harmless": 5}], []),
            (b, [{"helpful": 4, "harmless": 5}, {"helpful": 2, "harmless": 5}], []),
        ],
    )  # fmt: skip

    # when a snapshot is built
    snapshot = build(project, engineer)

    # then helpfulness gives one pair (the tie on harmlessness gives none), and every answer
    # and dimension its mean score
    assert rows(snapshot, "rubric_preference") == [
        {
            "id": f"T{task.pk}:r{first}>r{second}:helpful",
            "prompt": [{"role": "user", "content": "How do I prune roses?"}],
            "chosen": [{"role": "assistant", "content": SAFE}],
            "rejected": [{"role": "assistant", "content": "Roses? No idea."}],
            "dimension": "helpful",
            "margin": 2.5,
        }
    ]
    scores = sorted(
        (r["completion"][0]["content"], r["dimension"], r["score"], r["labels"])
        for r in rows(snapshot, "score")
    )
    assert scores == [
        (SAFE, "harmless", 5.0, 2),
        (SAFE, "helpful", 4.5, 2),
        ("Roses? No idea.", "harmless", 5.0, 2),
        ("Roses? No idea.", "helpful", 2.0, 2),
    ]
    assert snapshot.report["rubric_rows_exported"] == {"rubric_preference": 1, "score": 4}
    assert snapshot.report["aggregation"]["decisions"]["rubric_tie"] == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_flags_are_read_at_the_frozen_label_version(
    project, engineer, crowd, snapshot_settings, workers
):
    # given a snapshot built while the third label flagged the task unsafe
    task = flagged_by_the_minority(project, crowd)
    snapshot = build(project, engineer)
    assert pairs(snapshot) == []

    # when the flag is taken back (a new label version) and the snapshot is built again
    label = Label.objects.get(task=task, annotator=crowd[2])
    label_edit(label=label, editor=crowd[2], payload={"choice": "A"}, flags=[])
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(status=SnapshotStatus.FAILED)
    rebuilt = services.snapshot_build(snapshot_id=snapshot.pk, workers=workers)

    # then the label is read with the flag it had when frozen, while a new snapshot sees none
    assert pairs(rebuilt) == []
    assert rebuilt.report["flags"]["tasks_flagged"] == {"unsafe": 1}
    assert pairs(build(project, engineer)) == [("How do I prune roses?", UNSAFE, SAFE)]


def test_gold_weighted_follows_the_annotators_with_a_good_gold_record(
    project, engineer, make_user, snapshot_settings
):
    # given two careful annotators with a perfect gold record and three clickers at 15 of 20
    # (above the gold threshold, so not left out), on 4 tasks where the careful pick the
    # better answer and the clickers the other
    careful = [make_user(f"careful{i}") for i in range(2)]
    clickers = [make_user(f"clicker{i}") for i in range(3)]
    for user, correct in [*((u, 20) for u in careful), *((u, 15) for u in clickers)]:
        AnnotatorQuality.objects.create(
            project=project, annotator=user, gold_answered=20, gold_correct=correct
        )
    for n in range(4):
        good, bad = f"Good answer number {n} here.", f"Bad answer number {n} there."
        truth, other = ("A", "B") if n % 2 == 0 else ("B", "A")
        a, b = (good, bad) if truth == "A" else (bad, good)
        votes = [(u, truth, []) for u in careful] + [(u, other, []) for u in clickers]
        pairwise_task(project, f"Question number {n} please?", a, b, votes)

    # when built by majority and by gold_weighted
    majority = build(project, engineer, aggregation={"policy": "majority"})
    weighted = build(project, engineer, aggregation={"policy": "gold_weighted"})

    # then the majority follows the clickers, gold_weighted the careful, with these weights
    assert [chosen[:4] for _, chosen, _ in pairs(majority)] == ["Bad "] * 4
    assert [chosen[:4] for _, chosen, _ in pairs(weighted)] == ["Good"] * 4
    recorded = weighted.config["aggregation"]["gold_accuracy"]
    assert recorded == sorted(
        [[u.pk, 20, 20] for u in careful] + [[u.pk, 15, 20] for u in clickers]
    )
    config = AggregationConfig.from_dict(weighted.config["aggregation"])
    known, _ = gold_weights(config)
    share = 2 * known[careful[0].pk] / (2 * known[careful[0].pk] + 3 * known[clickers[0].pk])
    assert {row["weight"] for row in rows(weighted)} == {round(share, 4)}
    assert "gold accuracy of 5 annotators" in weighted.data_card


def test_a_snapshot_uses_the_projects_aggregation_setting_unless_the_request_names_one(
    project, engineer, make_user, snapshot_settings
):
    # given a project whose aggregation setting is unanimous, and a 2-to-1 task
    project_settings_update(project=project, changes={"aggregation": {"policy": "unanimous"}})
    project.refresh_from_db()
    a, b, c = (make_user(f"voter{i}") for i in range(3))
    pairwise_task(project, "Which is kinder?", "A kind answer.", "A rude answer.",
                  [(a, "A", []), (b, "A", []), (c, "B", [])])  # fmt: skip

    # when a snapshot is requested without an aggregation, and one naming majority
    default = build(project, engineer)
    named = build(project, engineer, aggregation={"policy": "majority"})

    # then the first is unanimous (no pair), the second majority (one pair, weight 2/3)
    assert default.config["aggregation"]["policy"] == "unanimous"
    assert pairs(default) == []
    assert named.config["aggregation"]["policy"] == "majority"
    assert [row["weight"] for row in rows(named)] == [0.6667]
    assert "Aggregation policy: `unanimous`" in default.data_card


def test_an_adjudicated_row_weighs_one_and_the_card_links_to_examples(
    project, engineer, crowd, snapshot_settings
):
    # given a task all three voted B on, adjudicated A, and a task flagged unsafe (dropped)
    a, b, c = crowd
    task = pairwise_task(project, "Is the sky green?", "No, it is blue.", "Yes, always.",
                         [(a, "B", []), (b, "B", []), (c, "B", [])])  # fmt: skip
    adjudicate(task, engineer, "A")
    flagged = flagged_by_the_minority(project, crowd)

    snapshot = build(project, engineer)

    # then the adjudicator's outcome is exported with weight 1.0, though nobody voted for it
    assert [(r["chosen"][0]["content"], r["weight"]) for r in rows(snapshot)] == [
        ("No, it is blue.", 1.0)
    ]
    # and the card links to an example of each decision
    assert snapshot.report["examples"] == {
        "adjudication_changed": [task.pk],
        "removed:flag_unsafe": [flagged.pk],
    }
    assert "## Links to examples" in snapshot.data_card
    assert (
        f"- adjudication changed the exported outcome: [task {task.pk}](/tasks/{task.pk}/review/)"
        in snapshot.data_card
    )
    assert f"flagged unsafe: rows removed: [task {flagged.pk}]" in snapshot.data_card


@pytest.mark.parametrize("action", ["drop", "reject"])
def test_an_adjudicators_unsafe_flag_counts_whatever_the_labels_and_the_minimum(
    project, engineer, crowd, snapshot_settings, action
):
    # given a task all three annotators decided for the unsafe answer B, none flagging it, and
    # an adjudicator who decided A and flagged the task unsafe; the project wants 2 flags
    a, b, c = crowd
    task = pairwise_task(project, "How do I prune roses?", SAFE, UNSAFE,
                         [(a, "B", []), (b, "B", []), (c, "B", [])])  # fmt: skip
    adjudicate(task, engineer, "A", flags=["unsafe"])

    # when a snapshot is built with the unsafe action dropping or rejecting
    snapshot = build(project, engineer, flags={"min_flags": 2, "unsafe": action})

    # then the reviewer's flag counted: dropped, or kept with the flagged answer rejected
    # (the adjudicator's decision already rejects it, so nothing is turned round)
    expected = [] if action == "drop" else [("How do I prune roses?", SAFE, UNSAFE)]
    assert pairs(snapshot) == expected
    assert snapshot.report["flags"]["tasks_flagged"] == {"unsafe": 1}
    flag_rows = [(r["completion"][0]["content"], r["flagged_by"], r["labels"]) for r in
                 rows(snapshot, "flags")]  # fmt: skip
    assert flag_rows == [(UNSAFE, 1, 4)]
