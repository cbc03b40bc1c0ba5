"""The bias audit is computed by the snapshot job and stored with the data card: report JSON,
card Markdown, the snapshot page, and the shown side of each row beside the export
(PostgreSQL; SQLite reads the same labels through the ORM)."""

import json
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from annotation import services as annotation_services
from annotation.models import Label, Membership, Prompt, Response, Task, TaskItem
from annotation.roles import Role
from rlhf.data.audit import SHOWN_SIDES_FILE
from rlhf.snapshots import services

LONG = "A long, careful answer that explains every step of pruning roses."
SHORT = "Cut them."


@pytest.fixture
def grouped(project, make_user):
    """Four annotators: two in group "north", one in "south", one without a group."""
    people = []
    for name, group in (("n1", "north"), ("n2", "north"), ("s1", "south"), ("x1", "")):
        user = make_user(name)
        annotation_services.membership_set(project=project, user=user, role=Role.ANNOTATOR)
        Membership.objects.filter(project=project, user=user).update(group=group)
        people.append(user)
    return people


def task_with(project, n, votes):
    """Pairwise task ``n`` (A = the long answer); ``votes``: (annotator, outcome, side)."""
    prompt = Prompt.objects.create(
        project=project,
        messages=[
            {"role": "user", "content": f"How do I prune the roses and the hedges, take {n}?"}
        ],
        content_hash=f"p{n}",
    )
    task = Task.objects.create(
        project=project, prompt=prompt, kind="pairwise", required_labels=len(votes),
        content_hash=f"t{n}",
    )  # fmt: skip
    ids = []
    for position, text in enumerate((LONG, SHORT)):
        response = Response.objects.create(
            prompt=prompt, text=text, content_hash=f"r{n}-{position}", origin="import"
        )
        TaskItem.objects.create(task=task, response=response, position=position)
        ids.append(response.pk)
    for annotator, outcome, side in votes:
        Label.objects.create(
            task=task, annotator=annotator, kind="pairwise",
            payload={"outcome": outcome, "strength": "clear", "chosen_side": side,
                     "winner": ids[0] if outcome == "A" else ids[1], "rationale": ""},
        )  # fmt: skip
    return task, ids


def test_the_snapshot_job_audits_length_position_and_groups(
    project, engineer, grouped, snapshot_settings
):
    n1, n2, s1, x1 = grouped
    # given three tasks: the north group picks the long answer, shown left; south the short,
    # shown right; the ungrouped annotator agrees with north once
    first, ids1 = task_with(project, 1, [(n1, "A", "left"), (n2, "A", "left"), (s1, "B", "right")])
    task_with(project, 2, [(n1, "A", "left"), (n2, "A", "left"), (s1, "B", "right")])
    task_with(project, 3, [(n1, "A", "right"), (x1, "A", None)])

    # when a snapshot is built (majority policy)
    snapshot = services.snapshot_create(
        project=project, created_by=engineer, config={"aggregation": {"policy": "majority"}}
    )
    snapshot.refresh_from_db()
    assert snapshot.status == "ready", snapshot.error
    audit = snapshot.report["audit"]

    # then three pairs were exported, each with the longer answer chosen
    assert audit["length"]["pairs"] == 3
    assert audit["length"]["chosen_longer"]["count"] == 3
    assert audit["length"]["chars"]["chosen_mean"] == len(LONG)
    assert audit["length"]["chars"]["rejected_mean"] == len(SHORT)
    # position: 4 left, 3 right of the 7 decided labels with a side; one without
    assert audit["position"]["chosen_left"]["count"] == 4
    assert audit["position"]["chosen_left"]["n"] == 7
    assert audit["position"]["not_recorded"] == 1
    # groups (leave-one-out): in tasks 1 and 2 the others of each north label tie (A, B: left
    # out) and south disagrees with A, A; in task 3 north agrees with the ungrouped annotator
    groups = audit["groups"]
    assert groups["annotators_by_group"] == {"north": 2, "south": 1}
    agreement = groups["agreement_with_others"]
    assert {g: (r["count"], r["n"]) for g, r in agreement["groups"].items()} == {
        "north": (1, 1), "south": (0, 2),
    }  # fmt: skip
    longer = groups["chose_longer"]
    assert {g: (r["count"], r["n"]) for g, r in longer["groups"].items()} == {
        "north": (5, 5), "south": (0, 2),
    }  # fmt: skip
    assert agreement["test"] == "fisher_exact"
    assert agreement["ungrouped_labels"] == 1
    assert audit["prompts"]["distinct"] == 3
    assert audit["prompts"]["language"]["languages"][0]["language"] == "en"

    # and the card says so, the API returns it, the page shows it, and the rows' sides lie
    # beside the export
    assert "## Bias audit" in snapshot.data_card
    assert "Chosen answer shown on the left: 57.1% (4 of 7;" in snapshot.data_card
    api = APIClient()
    api.force_authenticate(engineer)
    body = api.get(f"/api/snapshots/{snapshot.pk}/").json()
    assert body["report"]["audit"] == json.loads(json.dumps(audit))
    sides = json.loads((Path(snapshot.export_path) / SHOWN_SIDES_FILE).read_text())
    assert sides[f"T{first.pk}:r{ids1[0]}>r{ids1[1]}"] == "left"
    assert len(sides) == 3


def test_the_snapshot_page_shows_the_audit(project, engineer, grouped, snapshot_settings, client):
    n1, n2, *_ = grouped
    task_with(project, 1, [(n1, "A", "left"), (n2, "B", "right")])
    snapshot = services.snapshot_create(project=project, created_by=engineer)
    client.force_login(engineer)
    page = client.get(f"/data/snapshots/{snapshot.pk}/").content.decode()
    assert "Bias audit" in page
    assert "Position of the chosen answer as shown" in page
