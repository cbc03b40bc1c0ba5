"""Server errors the fuzzer found, kept as plain regression tests (each was a 500)."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.security.world import changed_tables, db_checksum


@pytest.fixture
def admin_client(world, db):
    client = Client()
    client.force_login(world.users["admin"])
    return client


def test_a_project_field_sent_as_json_null_in_a_form_is_a_400(world, admin_client):
    before = db_checksum()
    response = admin_client.patch(
        f"/api/projects/{world.own.pk}/",
        '--b\r\nContent-Disposition: form-data; name="rubric"\r\n\r\nnull\r\n--b--\r\n',
        content_type="multipart/form-data; boundary=b",
    )
    assert response.status_code == 400
    assert changed_tables(before, db_checksum()) == []


def test_the_review_queue_refuses_a_non_number_offset(world, admin_client):
    response = admin_client.get(f"/api/projects/{world.own.pk}/review/queue/?offset=null")
    assert response.status_code == 400


def test_a_snapshot_config_that_is_not_an_object_is_a_400(world, admin_client):
    before = db_checksum()
    for config in ("true", "[1]", '{"cleaning": true}', '{"cleaning": {"pii_types": 5}}'):
        response = admin_client.post(
            f"/api/projects/{world.own.pk}/snapshots/",
            f'{{"name": "x", "config": {config}}}',
            content_type="application/json",
        )
        assert response.status_code == 400, (config, response.content)
    assert changed_tables(before, db_checksum()) == []
