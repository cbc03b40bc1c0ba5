"""The data audit log records who downloaded a run's artifact; a refused download records
nothing. (Snapshot exports: tests/rlhf/test_snapshots_api.py.)"""

from django.test import Client

from annotation.audit import DataAuditEvent


def test_a_run_artifact_download_is_recorded_with_its_actor(world, db):
    ids = world.ids("own", "admin")
    client = Client()
    client.force_login(world.users["admin"])
    before = DataAuditEvent.objects.count()
    # a path the run did not record, and a role that may not download: nothing recorded
    assert client.get(f"/api/runs/{ids['run_id']}/artifacts/nope.bin").status_code == 404
    annotator = Client()
    annotator.force_login(world.users["annotator"])
    refused = annotator.get(f"/api/runs/{ids['run_id']}/artifacts/{ids['path']}")
    assert refused.status_code in (403, 404)
    assert DataAuditEvent.objects.count() == before
    # a download: one event naming who, which run and which file
    ok = client.get(f"/api/runs/{ids['run_id']}/artifacts/{ids['path']}")
    assert ok.status_code == 200
    event = DataAuditEvent.objects.latest("id")
    assert (event.action, event.actor, event.subject, event.project_id) == (
        "run_artifact_downloaded",
        world.users["admin"],
        f"run:{ids['run_id']}:{ids['path']}",
        ids["project_id"],
    )
