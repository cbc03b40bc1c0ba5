"""Snapshot API, pages and command line, scoped to the user's projects."""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from annotation import services as annotation_services
from annotation.audit import DataAuditEvent
from annotation.roles import Role
from rlhf.models import DatasetSnapshot, SnapshotStatus

pytestmark = pytest.mark.postgres


@pytest.fixture
def api(engineer):
    client = APIClient()
    client.force_authenticate(engineer)
    return client


@pytest.fixture
def ready(small_project, api, snapshot_settings):
    response = api.post(
        f"/api/projects/{small_project.pk}/snapshots/",
        {"name": "first", "config": {"split": {"seed": 2, "validation": 0.2, "test": 0.2}}},
        format="json",
    )
    assert response.status_code == 202, response.content
    return DatasetSnapshot.objects.get(pk=response.json()["id"])


def test_create_list_and_read_a_snapshot(ready, api, small_project):
    # then the enqueued build ran and the snapshot reads back complete
    assert ready.status == SnapshotStatus.READY
    listing = api.get(f"/api/projects/{small_project.pk}/snapshots/").json()
    assert [s["id"] for s in listing] == [ready.pk]
    assert listing[0]["label_count"] == 40
    detail = api.get(f"/api/snapshots/{ready.pk}/").json()
    assert detail["config"]["split"]["seed"] == 2
    assert detail["report"]["input"] == {"labels": 40, "tasks": 40}
    card = api.get(f"/api/snapshots/{ready.pk}/data-card/")
    assert card["Content-Type"].startswith("text/markdown")
    assert card.content.decode().startswith("# Harmless: snapshot")


def test_export_through_the_api_is_written_in_the_background(ready, api, engineer):
    # when an export with truncated prompts is requested
    response = api.post(
        f"/api/snapshots/{ready.pk}/exports/",
        {"name": "short", "max_prompt_chars": 200},
        format="json",
    )

    # then it is accepted and, once the job ran, listed with its counts
    assert response.status_code == 202
    exports = api.get(f"/api/snapshots/{ready.pk}/exports/").json()
    assert [e["name"] for e in exports] == ["canonical", "short"]
    assert exports[1]["shapes"] == ready.row_counts
    assert exports[1]["truncation"]["max_prompt_chars"] == 200
    again = api.post(f"/api/snapshots/{ready.pk}/exports/", {"name": "short"}, format="json")
    assert again.status_code == 409
    # and the data audit log holds who asked, once (the refused second request records nothing)
    events = DataAuditEvent.objects.filter(action="snapshot_exported")
    assert [(e.actor, e.subject, e.details["name"]) for e in events] == [
        (engineer, f"snapshot:{ready.pk}", "short")
    ]


def test_an_export_can_carry_the_pairs_as_label_studio_tasks_and_argilla_records(ready, api):
    # when an export asks for both peer tools' shapes
    response = api.post(
        f"/api/snapshots/{ready.pk}/exports/",
        {"name": "peers", "tools": ["label_studio", "argilla"]},
        format="json",
    )
    assert response.status_code == 202
    (listed,) = [e for e in api.get(f"/api/snapshots/{ready.pk}/exports/").json()
                 if e["name"] == "peers"]  # fmt: skip
    # then each split's preference pairs are in both shapes, one record per pair, and each
    # reads back (formats.peers) as the snapshot's decision: the chosen answer ranked first
    from formats.peers import read_argilla_record, read_label_studio_task
    from rlhf.data.export import iter_export_rows

    folder = Path(listed["path"])
    assert set(listed["peer_exports"]) == {"label_studio", "argilla"}
    readers = {"label_studio": read_label_studio_task, "argilla": read_argilla_record}
    for tool, read in readers.items():
        for split, relative in listed["peer_exports"][tool].items():
            pairs = list(iter_export_rows(folder, "preference", split))
            records = [read(r) for r in json.loads((folder / relative).read_text())]
            assert len(records) == len(pairs) == ready.row_counts["preference"][split]
            for pair, record in zip(pairs, records, strict=True):
                (judgement,) = record.judgements
                assert record.responses[judgement.tiers[0][0]] == pair["chosen"][-1]["content"]
                assert record.responses[judgement.tiers[1][0]] == pair["rejected"][-1]["content"]
    # and an unknown tool is refused, naming the field
    bad = api.post(
        f"/api/snapshots/{ready.pk}/exports/", {"name": "x", "tools": ["prodigy"]}, format="json"
    )
    assert bad.status_code == 400
    assert "tools" in bad.json()  # DRF names the field as a key


def test_foreign_ids_are_404_and_annotators_are_403(ready, make_user):
    outsider, annotator = make_user("mallory"), make_user("ann")
    annotation_services.membership_set(project=ready.project, user=annotator, role=Role.ANNOTATOR)
    for user, code in ((outsider, 404), (annotator, 403)):
        client = APIClient()
        client.force_authenticate(user)
        assert client.get(f"/api/snapshots/{ready.pk}/").status_code == code
        assert client.get(f"/api/projects/{ready.project_id}/snapshots/").status_code == code
        created = client.post(f"/api/projects/{ready.project_id}/snapshots/", {}, format="json")
        assert created.status_code == code
    assert DatasetSnapshot.objects.count() == 1


def test_bad_config_is_a_400_with_a_reason(small_project, api, snapshot_settings):
    response = api.post(
        f"/api/projects/{small_project.pk}/snapshots/",
        {"config": {"dedup": {"threshold": 2}}},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_config"
    assert DatasetSnapshot.objects.count() == 0


@pytest.mark.parametrize(
    "dedup",
    [{"num_perm": 32768}, {"num_perm": 100}, {"num_perm": 0}, {"shingle_words": 0}],
)
def test_minhash_sizes_that_would_exhaust_a_worker_are_a_400(
    small_project, api, snapshot_settings, dedup
):
    # given MinHash parameters whose tables would take tens of GiB (or that MinHash refuses)
    # when a snapshot is requested with them
    response = api.post(
        f"/api/projects/{small_project.pk}/snapshots/",
        {"config": {"dedup": dedup}},
        format="json",
    )

    # then it is refused at once, and no build is queued for a worker to choke on
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_config"
    assert DatasetSnapshot.objects.count() == 0


def test_snapshot_page_shows_card_report_and_charts(ready, client, engineer):
    client.force_login(engineer)
    listing = client.get(f"/data/projects/{ready.project_id}/snapshots/")
    assert listing.status_code == 200
    assert f'href="/data/snapshots/{ready.pk}/"' in listing.content.decode()
    page = client.get(f"/data/snapshots/{ready.pk}/").content.decode()
    assert 'data-testid="data-card"' in page
    assert "<h2>What was removed and why</h2>" in page
    assert 'data-testid="cleaning-report"' in page
    assert page.count('class="card chart"') == 6
    assert 'aria-label="Label distribution (votes)"' in page
    assert 'aria-label="Prompt length (characters)"' in page
    assert "<script" not in page


def test_page_form_creates_a_snapshot(small_project, client, engineer, snapshot_settings):
    client.force_login(engineer)
    response = client.post(
        f"/data/projects/{small_project.pk}/snapshots/",
        {"name": "from the page", "policy": "unanimous", "threshold": "0.7", "seed": "3"},
    )
    assert response.status_code == 302
    snapshot = DatasetSnapshot.objects.get()
    assert snapshot.config["aggregation"]["policy"] == "unanimous"
    assert snapshot.config["dedup"]["near"] is False  # checkbox left unticked


def test_page_form_with_a_bad_number_says_so_and_creates_nothing(
    small_project, client, engineer, snapshot_settings
):
    client.force_login(engineer)
    response = client.post(
        f"/data/projects/{small_project.pk}/snapshots/", {"threshold": "high"}, follow=True
    )
    assert response.status_code == 200
    assert "could not convert" in response.content.decode()
    assert DatasetSnapshot.objects.count() == 0


def test_command_line_create_and_export(small_project, snapshot_settings, tmp_path):
    out, err = StringIO(), StringIO()
    call_command(
        "snapshot", "create", "--project", small_project.slug, "--inline", "--workers", "0",
        "--policy", "majority", "--seed", "4", stdout=out, stderr=err,
    )  # fmt: skip
    snapshot = DatasetSnapshot.objects.get()
    # stdout holds the summary alone
    assert len(out.getvalue().splitlines()) == 1
    assert out.getvalue().startswith(f"snapshot {snapshot.pk} [ready]")
    # the build's stages went to stderr as plain lines (no terminal here)
    progress = err.getvalue().splitlines()
    assert progress[0].startswith(f"snapshot {snapshot.pk} [")
    assert f"snapshot {snapshot.pk} [read]: " in err.getvalue()
    assert "\r" not in err.getvalue()
    assert snapshot.split_seed == 4
    out, err = StringIO(), StringIO()
    target = tmp_path / "cli-export"
    call_command(
        "snapshot", "export", str(snapshot.pk), "--out", str(target), "--max-prompt-chars", "300",
        stdout=out, stderr=err,
    )  # fmt: skip
    rows = sum(sum(splits.values()) for splits in snapshot.row_counts.values())
    assert err.getvalue().splitlines() == [
        f"export {snapshot.pk} [rows]: 0/{rows} row (0%)",
        f"export {snapshot.pk} [assemble]: {rows}/{rows} row (100%)",
    ]
    printed = json.loads(out.getvalue())
    assert printed["shapes"] == snapshot.row_counts
    assert (Path(target) / "preference" / "hf" / "dataset_dict.json").is_file()
