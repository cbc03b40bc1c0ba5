"""Snapshots on PostgreSQL: HH-RLHF labels in, TRL-ready exports out, frozen and scoped."""

import json
from pathlib import Path

import datasets
import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404

from annotation import services as annotation_services
from annotation.models import Label
from annotation.roles import Role
from rlhf.data.idcodec import decode_ids, decode_versions
from rlhf.models import DatasetSnapshot, SnapshotStatus
from rlhf.snapshots import selectors, services
from rlhf.snapshots.readers import iter_label_records
from tests.hh_dialogues import hh_lines

pytestmark = pytest.mark.postgres


@pytest.fixture
def hh_snapshot(hh_project, engineer, snapshot_settings):
    # the immediate task backend runs the enqueued build when the request's work commits
    snapshot = services.snapshot_create(
        project=hh_project, created_by=engineer, name="hh", config={"split": {"seed": 1}}
    )
    snapshot.refresh_from_db()
    return snapshot


def test_hh_import_snapshot_counts_match_the_file(hh_snapshot):
    # given the 800 HH pairs imported as labels and snapshotted
    rows_in_file = len(hh_lines())
    snapshot = hh_snapshot

    # then the job finished, froze every label and accounted for every pair
    assert snapshot.status == SnapshotStatus.READY
    assert snapshot.label_count == rows_in_file == 800
    assert snapshot.counts_by_kind == {"pairwise": 800}
    assert len(decode_ids(bytes(snapshot.label_ids))) == 800
    report = snapshot.report
    kept = sum(snapshot.row_counts["preference"].values())
    removed = sum(report["removed"]["preference"].values())
    assert kept + removed == rows_in_file
    assert report["aggregation"]["decisions"] == {"pairwise_pair": 800}
    assert report["leakage"]["ok"] is True
    # the files say the same as the report
    manifest = json.loads((Path(snapshot.export_path) / "manifest.json").read_text())
    assert manifest["shapes"] == snapshot.row_counts
    assert manifest["rows_sha256_all"] == snapshot.content_sha256
    for split, n in snapshot.row_counts["preference"].items():
        path = Path(snapshot.export_path) / "preference" / f"{split}.jsonl"
        assert len(path.read_text().splitlines()) == n
    assert "## What was removed and why" in snapshot.data_card
    assert snapshot.code_version


def test_snapshot_keeps_the_label_versions_it_froze(hh_snapshot, engineer):
    # given a label edited after the snapshot froze it
    label = Label.objects.order_by("id").first()
    before = dict(label.payload)
    flipped = {"choice": "B" if before["outcome"] == "A" else "A"}
    external = label.annotator
    annotation_services.label_edit(label=label, editor=external, payload=flipped)
    label.refresh_from_db()
    assert label.version == 2

    # when the snapshot's records are read again
    ids = decode_ids(bytes(hh_snapshot.label_ids))
    versions = decode_versions(bytes(hh_snapshot.label_versions))
    first = next(iter_label_records(ids[:1], versions[:1]))

    # then the frozen version (1) comes back from the revision history
    assert json.loads(first.payload)["outcome"] == before["outcome"]


def test_exports_run_one_reward_and_one_dpo_step(hh_snapshot, tmp_path):
    pytest.importorskip("trl")
    from tests.rlhf.trl_steps import dpo_step, reward_step

    # given an export of the snapshot with prompts cut to 600 characters
    manifest = services.snapshot_export(snapshot=hh_snapshot, name="short", max_prompt_chars=600)
    export_dir = Path(hh_snapshot.export_path).parent / "exports" / "short"
    assert manifest["shapes"] == hh_snapshot.row_counts
    assert manifest["truncation"]["rows_truncated"]["preference"] > 0

    # when TRL's trainers take one step on it
    preference = datasets.load_from_disk(str(export_dir / "preference" / "hf"))
    reward_loss = reward_step(preference["train"].select(range(8)), tmp_path / "rm")
    dpo_loss = dpo_step(preference["train"].select(range(8)), tmp_path / "dpo")

    # then both trained (finite losses)
    assert reward_loss == reward_loss
    assert dpo_loss == dpo_loss


def test_only_members_with_the_data_capability_see_snapshots(hh_snapshot, make_user):
    # given an outsider and an annotator of the project
    outsider = make_user("mallory")
    annotator = make_user("ann")
    annotation_services.membership_set(
        project=hh_snapshot.project, user=annotator, role=Role.ANNOTATOR
    )

    # then the outsider gets a 404, the annotator a 403, the engineer the snapshot
    with pytest.raises(Http404):
        selectors.snapshot_get(user=outsider, snapshot_id=hh_snapshot.pk)
    with pytest.raises(PermissionDenied):
        selectors.snapshot_get(user=annotator, snapshot_id=hh_snapshot.pk)
    engineer = hh_snapshot.created_by
    assert selectors.snapshot_get(user=engineer, snapshot_id=hh_snapshot.pk) == hh_snapshot
    assert [
        s.pk for s in selectors.snapshot_list(user=engineer, project_id=hh_snapshot.project_id)
    ] == [hh_snapshot.pk]


def test_a_ready_snapshot_is_not_rebuilt(hh_snapshot):
    # when the job runs again (a retried job)
    again = services.snapshot_build(snapshot_id=hh_snapshot.pk)

    # then nothing changed
    assert again.finished_at == hh_snapshot.finished_at
    assert again.content_sha256 == hh_snapshot.content_sha256


def test_invalid_config_is_refused_and_nothing_is_created(project, engineer, snapshot_settings):
    from config.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        services.snapshot_create(
            project=project, created_by=engineer, config={"aggregation": {"policy": "loudest"}}
        )
    assert DatasetSnapshot.objects.count() == 0


def test_a_snapshot_recorded_before_the_one_aggregation_engine_still_builds(
    small_project, engineer, snapshot_settings
):
    # given a snapshot row whose config has the shape snapshots stored before the engine was
    # shared (no Dawid-Skene knobs, min_agreement 0.66)
    old_config = {
        "cleaning": {},
        "dedup": {"exact": True, "near": True, "threshold": 0.8, "num_perm": 64},
        "aggregation": {
            "policy": "min_agreement",
            "min_agreement": 0.66,
            "min_labels": 1,
            "exclude_annotators": [],
        },
        "split": {"seed": 1},
        "excluded_eval_prompt_ids": [],
    }
    snapshot = DatasetSnapshot.objects.create(
        project=small_project,
        created_by=engineer,
        max_label_id=Label.objects.order_by("-id").values_list("id", flat=True).first(),
        config=old_config,
        split_seed=1,
    )

    # when it is built (as a retried or re-queued build would)
    built = services.snapshot_build(snapshot_id=snapshot.pk)

    # then it builds under its recorded policy and threshold, and its record is unchanged
    assert built.status == SnapshotStatus.READY
    assert built.report["aggregation"]["policy"] == "min_agreement"
    assert sum(built.row_counts["preference"].values()) > 0
    assert DatasetSnapshot.objects.get(pk=snapshot.pk).config == old_config
