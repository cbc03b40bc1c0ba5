"""Snapshot downloads over HTTP: files and datasets folders, resumable, checked, audited."""

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation import services as annotation_services
from annotation.audit import DataAuditEvent
from annotation.roles import Role
from config.downloads import MANIFEST, manifest_mismatches
from rlhf.models import DatasetSnapshot, SnapshotStatus
from rlhf.snapshots.services import snapshot_create


@pytest.fixture
def api(engineer):
    client = APIClient()
    client.force_authenticate(engineer)
    return client


@pytest.fixture
def ready(small_project, engineer, snapshot_settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        snapshot = snapshot_create(
            project=small_project,
            created_by=engineer,
            config={"split": {"seed": 2, "validation": 0.2, "test": 0.2}},
        )
    snapshot.refresh_from_db()
    assert snapshot.status == SnapshotStatus.READY
    return snapshot


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def download(api, snapshot, file, **headers):
    return api.get(reverse("api-snapshot-download", args=[snapshot.pk]), {"file": file}, **headers)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_every_listed_file_downloads_with_the_sha256_of_the_manifest(ready, api):
    export_dir = ready.export_path

    # given the build wrote a manifest that sha256sum accepts
    check = subprocess.run(
        ["sha256sum", "--strict", "-c", MANIFEST], cwd=export_dir, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr

    # when the listing is read
    listing = api.get(reverse("api-snapshot-files", args=[ready.pk])).json()

    # then it names the JSONL and Parquet files of every split, and the datasets archives
    paths = {f["path"] for f in listing["files"]}
    for split in ("train", "validation", "test"):
        assert f"preference/{split}.jsonl" in paths
        assert f"preference/{split}.parquet" in paths
    assert {"manifest.json", "DATA_CARD.md", "preference/hf/dataset_dict.json"} <= paths
    assert {a["file"] for a in listing["archives"]} >= {"export.tar", "preference/hf.tar"}
    assert listing["content_sha256"] == ready.content_sha256

    # and each file downloads as the bytes the manifest names, one audit event each
    for entry in listing["files"]:
        response = download(api, ready, entry["path"])
        assert response.status_code == 200
        data = body(response)
        assert (len(data), sha256(data)) == (entry["size"], entry["sha256"])
        assert response["ETag"] == f'"{entry["sha256"]}"'
    events = DataAuditEvent.objects.filter(action="snapshot_downloaded")
    assert events.count() == len(listing["files"])
    jsonl = events.get(subject=f"snapshot:{ready.pk}:preference/train.jsonl")
    assert jsonl.actor == ready.created_by
    assert jsonl.project_id == ready.project_id
    assert jsonl.details["range"] == ""
    manifest = download(api, ready, MANIFEST)
    assert sha256(body(manifest)) == listing["manifest_sha256"]


def test_a_parquet_download_resumes_with_range_and_if_range(ready, api):
    expected = (Path(ready.export_path) / "preference/train.parquet").read_bytes()

    # given the first 100 bytes arrived
    first = download(api, ready, "preference/train.parquet", HTTP_RANGE="bytes=0-99")
    assert first.status_code == 206
    assert first["Content-Range"] == f"bytes 0-99/{len(expected)}"
    etag = first["ETag"]

    # when the rest is asked for with If-Range
    rest = download(
        api, ready, "preference/train.parquet", HTTP_RANGE="bytes=100-", HTTP_IF_RANGE=etag
    )

    # then it is the rest, and the two parts are the file
    assert rest.status_code == 206
    assert body(first) + body(rest) == expected
    # and a stale validator gets the whole file again, never a splice
    stale = download(
        api, ready, "preference/train.parquet", HTTP_RANGE="bytes=100-", HTTP_IF_RANGE='"old"'
    )
    assert stale.status_code == 200
    assert body(stale) == expected
    # and a range past the end is 416 and records nothing
    before = DataAuditEvent.objects.count()
    past = download(api, ready, "preference/train.parquet", HTTP_RANGE=f"bytes={len(expected)}-")
    assert past.status_code == 416
    assert DataAuditEvent.objects.count() == before
    ranges = list(
        DataAuditEvent.objects.filter(action="snapshot_downloaded").values_list(
            "details__range", flat=True
        )
    )
    size = len(expected)
    assert ranges == [f"bytes 0-99/{size}", f"bytes 100-{size - 1}/{size}", ""]


def test_the_datasets_folder_downloads_as_a_tar_that_datasets_loads(ready, api, tmp_path):
    import datasets

    # when the preference shape's datasets folder is downloaded in two parts
    first = download(api, ready, "preference/hf.tar", HTTP_RANGE="bytes=0-1023")
    assert first.status_code == 206
    rest = download(
        api, ready, "preference/hf.tar", HTTP_RANGE="bytes=1024-", HTTP_IF_RANGE=first["ETag"]
    )
    data = body(first) + body(rest)
    assert first["Content-Range"].endswith(f"/{len(data)}")

    # then it is a tar of the folder whose members hash as the manifest says
    listing = api.get(reverse("api-snapshot-files", args=[ready.pk])).json()
    manifest = {f["path"]: f["sha256"] for f in listing["files"]}
    top = f"snapshot-{ready.pk}-preference"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        tar.extractall(tmp_path, filter="data")
    expected = {p for p in manifest if p.startswith("preference/hf/")}
    assert {name.replace(top, "preference/hf", 1) for name in members} == expected
    for name, content in members.items():
        assert sha256(content) == manifest[name.replace(top, "preference/hf", 1)]

    # and datasets reads it, with the snapshot's row counts
    loaded = datasets.load_from_disk(str(tmp_path / top))
    assert {split: len(loaded[split]) for split in loaded} == ready.row_counts["preference"]
    # and the same snapshot is the same tar bytes, whenever asked
    assert body(download(api, ready, "preference/hf.tar")) == data


def test_the_whole_export_downloads_as_a_tar_that_checks_against_its_manifest(ready, api, tmp_path):
    response = download(api, ready, "export.tar")
    assert response.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(body(response))) as tar:
        tar.extractall(tmp_path, filter="data")
    folder = tmp_path / f"snapshot-{ready.pk}"
    assert manifest_mismatches(folder) == []
    # and a changed byte is found by the same check
    with open(folder / "preference/train.jsonl", "ab") as fh:
        fh.write(b"\n")
    assert manifest_mismatches(folder) == ["preference/train.jsonl"]


@pytest.mark.parametrize(
    "query", [{"file": "../../etc/passwd"}, {"file": "preference/hf"}, {"file": "nope.tar"}, {}]
)
def test_an_unknown_or_missing_file_is_a_400_naming_the_field(ready, api, query):
    response = api.get(reverse("api-snapshot-download", args=[ready.pk]), query)
    assert response.status_code == 400
    named = response.json()["fields"] if query else response.json()
    assert "file" in named
    assert not DataAuditEvent.objects.filter(action="snapshot_downloaded").exists()


def test_a_snapshot_not_ready_is_a_409(small_project, engineer, api, snapshot_settings):
    snapshot = snapshot_create(project=small_project, created_by=engineer, enqueue=False)
    response = download(api, snapshot, "preference/train.jsonl")
    assert response.status_code == 409
    assert response.json()["error"] == "snapshot_not_ready"
    files = api.get(reverse("api-snapshot-files", args=[snapshot.pk]))
    assert files.status_code == 409


def test_another_projects_snapshot_is_a_404_and_records_nothing(ready, make_user):
    # given a user who annotates only in another project
    stranger = make_user("stranger")
    other = annotation_services.project_create(name="Other", created_by=stranger, overlap=1)
    annotation_services.membership_set(project=other, user=stranger, role=Role.ADMIN)
    client = APIClient()
    client.force_authenticate(stranger)

    # when they ask for this project's snapshot files
    responses = [
        download(client, ready, "preference/train.jsonl"),
        client.get(reverse("api-snapshot-files", args=[ready.pk])),
    ]

    # then both are 404 and the audit log holds nothing
    assert [r.status_code for r in responses] == [404, 404]
    assert not DataAuditEvent.objects.filter(action="snapshot_downloaded").exists()


def test_an_annotator_of_the_project_may_not_download(ready, make_user):
    annotator = make_user("ann")
    annotation_services.membership_set(project=ready.project, user=annotator, role=Role.ANNOTATOR)
    client = APIClient()
    client.force_authenticate(annotator)
    assert download(client, ready, "preference/train.jsonl").status_code == 403
    assert not DataAuditEvent.objects.filter(action="snapshot_downloaded").exists()


def test_a_snapshot_built_before_manifests_gets_one_on_first_download(ready, api):
    # given a snapshot whose export has no manifest (built by an earlier version)
    export_dir = DatasetSnapshot.objects.get(pk=ready.pk).export_path
    (Path(export_dir) / MANIFEST).unlink()

    # when its files are listed, then the manifest is written and checks
    listing = api.get(reverse("api-snapshot-files", args=[ready.pk])).json()
    assert manifest_mismatches(export_dir) == []
    assert len(listing["files"]) > 10
