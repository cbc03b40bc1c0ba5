"""Snapshots of model-proposed data people confirmed: a prompt variant's rows sit on its
source prompt's split (no leakage), rejected proposals give nothing, and the data card counts
the augmented rows."""

import json
import random
from pathlib import Path

import pytest
from django.db import transaction

from annotation import services as annotation_services
from annotation.models import Label, Prompt, Proposal, ProposalKind, Task, TaskKind
from annotation.roles import Role
from rlhf.snapshots import services

WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "garden",
    "engine",
    "violet",
    "marble",
    "candle",
    "window",
    "forest",
    "silver",
    "copper",
    "ladder",
    "pepper",
    "rocket",
    "saddle",
    "thunder",
    "velvet",
    "walnut",
    "harbor",
    "island",
    "jacket",
    "kettle",
    "lemon",
]
SPLIT = {"seed": 3, "validation": 0.25, "test": 0.25}


def words(rng, n=30):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def label_next(project, annotator, payload):
    lease = annotation_services.task_claim_next(project=project, annotator=annotator)
    annotation_services.label_submit(task=lease.task, annotator=annotator, payload=payload)
    return lease.task


def rows_by_task(snapshot) -> dict[int, str]:
    """task id -> the split its preference rows are on."""
    side = {}
    for split in ("train", "validation", "test"):
        path = Path(snapshot.export_path) / "preference" / f"{split}.jsonl"
        for line in path.read_text().splitlines():
            key = json.loads(line)["id"].split(":")[0]
            if key.startswith("T"):
                side[int(key[1:])] = split
    return side


@pytest.fixture
def annotator(project, make_user):
    user = make_user("ann")
    annotation_services.membership_set(project=project, user=user, role=Role.ANNOTATOR)
    return user


def test_confirmed_variants_stay_on_their_source_split_and_the_card_counts_them(
    snapshot_settings, small_project, engineer, annotator
):
    rng = random.Random(1)
    project = small_project
    source_tasks = {
        t.prompt_id: t.pk for t in Task.objects.filter(project=project, kind=TaskKind.PAIRWISE)
    }
    # given a model's variant of each of the 40 labelled prompts, and a draft correction of
    # one rejected answer
    annotation_services.proposals_store(
        project=project,
        kind=ProposalKind.PROMPT_VARIANT,
        model_name="policy@v1",
        proposals=[
            {"prompt_id": prompt_id, "text": words(rng), "generation": {"seed": i}}
            for i, prompt_id in enumerate(sorted(source_tasks))
        ],
    )
    hh_label = Label.objects.filter(task__project=project).select_related("task").first()
    loser = hh_label.task.items.exclude(response_id=hh_label.payload["winner"]).get().response
    annotation_services.proposals_store(
        project=project,
        kind=ProposalKind.CORRECTION,
        model_name="policy@v1",
        proposals=[
            {
                "prompt_id": loser.prompt_id,
                "response_id": loser.pk,
                "text": "A careful, harmless answer.",
                "generation": {"seed": 0},
            }
        ],
    )
    # when a person confirms 35 variants, rejects 5 and edits the correction
    for i in range(40):
        label_next(project, annotator, {"decision": "reject" if i % 8 == 7 else "confirm"})
    label_next(project, annotator, {"decision": "edit", "text": "A careful, kind answer."})
    variants = list(Prompt.objects.filter(project=project, source_prompt__isnull=False))
    assert len(variants) == 35
    assert Proposal.objects.filter(status="rejected").count() == 5
    # and the variants are answered and judged like any prompt
    variant_tasks = {}
    for variant in variants:
        task, _ = annotation_services.task_create(
            project=project,
            messages=variant.messages,
            kind=TaskKind.PAIRWISE,
            responses=[{"text": words(rng)}, {"text": words(rng)}],
        )
        assert task.prompt_id == variant.pk
        variant_tasks[task.pk] = source_tasks[variant.source_prompt_id]
    for _ in variant_tasks:
        label_next(project, annotator, {"choice": "A"})

    # when a snapshot is built with large held-out shares
    with transaction.atomic():
        snapshot = services.snapshot_create(
            project=project, created_by=engineer, enqueue=False, config={"split": SPLIT}
        )
    snapshot = services.snapshot_build(snapshot_id=snapshot.pk)

    # then every variant's rows are on its source's split, and some are held out (so the
    # check is not only "everything is in train")
    side = rows_by_task(snapshot)
    assert all(v in side for v in variant_tasks)
    # (a few HH source pairs are dropped by cleaning or de-duplication; the rest compare)
    compared = [(v, s) for v, s in variant_tasks.items() if s in side]
    assert len(compared) >= 30
    assert all(side[v] == side[s] for v, s in compared)
    assert sum(side[v] != "train" for v in variant_tasks) >= 5
    report = snapshot.report
    assert report["leakage"]["ok"] is True
    assert report["leakage"]["variant_prompts"] == 35
    assert report["leakage"]["variants_across_splits"] == 0
    # and the data card counts the augmented rows: 35 variant pairs, one correction pair
    augmented = report["augmented"]
    assert (augmented["variant_tasks"], augmented["model_corrections"]) == (35, 1)
    assert augmented["rows"]["preference"] == 36
    assert augmented["rows"]["sft"] == 1
    assert "## Augmented (model-proposed, person-confirmed) data" in snapshot.data_card
    assert "Tasks on confirmed prompt variants: 35" in snapshot.data_card
    assert "Confirmed corrections drafted by a model: 1" in snapshot.data_card
    assert snapshot.counts_by_kind == {"confirm": 41, "pairwise": 75}
