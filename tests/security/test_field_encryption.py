"""Rationales are encrypted at rest under TANDEM_FIELD_KEYS, and the keys rotate.

``test_a_rationale_is_not_stored_in_clear`` reads the database with raw SQL, so it failed on
the code before encryption (the rationale was plain JSON in ``annotation_label.payload``)."""

import json
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from annotation import services
from annotation.audit import DataAuditEvent
from annotation.models import Label, LabelRevision, TaskKind
from config.fieldcrypt import PREFIX

SECRET = "my neighbour Jane Roe told me"


@pytest.fixture
def label(db):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("enc-ann", password="pw")
    project = services.project_create(name="Enc", created_by=user)
    services.membership_set(project=project, user=user, role="annotator")
    services.task_create(
        project=project, messages=[{"role": "user", "content": "q?"}], kind=TaskKind.PAIRWISE,
        responses=[{"text": "a", "origin": "human"}, {"text": "b", "origin": "human"}],
    )  # fmt: skip
    lease = services.task_claim_next(project=project, annotator=user)
    return services.label_submit(
        task=lease.task, annotator=user, payload={"choice": "A", "rationale": SECRET}
    ).label


_RAW_PAYLOAD = {
    "annotation_label": "SELECT payload FROM annotation_label WHERE id = %s",
    "annotation_labelrevision": "SELECT payload FROM annotation_labelrevision WHERE id = %s",
}


def _raw(table, pk) -> str:
    with connection.cursor() as cursor:
        cursor.execute(_RAW_PAYLOAD[table], [pk])
        value = cursor.fetchone()[0]
    return value if isinstance(value, str) else json.dumps(value)


def test_a_rationale_is_not_stored_in_clear(label):
    raw = _raw("annotation_label", label.pk)
    assert SECRET not in raw
    assert json.loads(raw)["rationale"].startswith(PREFIX)
    assert json.loads(raw)["outcome"] == "A"  # the judgement stays plain JSON, queryable
    assert Label.objects.get(pk=label.pk).payload["rationale"] == SECRET
    assert Label.objects.filter(payload__outcome="A").count() == 1
    # an edit keeps the old rationale in a revision, encrypted too
    services.label_edit(label=label, editor=label.annotator, payload={"choice": "B"})
    revision = LabelRevision.objects.get(label=label)
    assert SECRET not in _raw("annotation_labelrevision", revision.pk)
    assert revision.payload["rationale"] == SECRET


def test_a_rationale_that_looks_encrypted_is_encrypted_like_any_other(label):
    label.payload = {**label.payload, "rationale": PREFIX + "gAAAA-not-a-token"}
    label.save()
    assert Label.objects.get(pk=label.pk).payload["rationale"] == PREFIX + "gAAAA-not-a-token"


def test_keys_rotate_and_a_dropped_key_is_no_longer_needed(label, settings):
    old = settings.TANDEM_FIELD_KEYS[0]
    new = Fernet.generate_key().decode()
    # given the new key first and the old one still listed
    settings.TANDEM_FIELD_KEYS = [new, old]
    assert Label.objects.get(pk=label.pk).payload["rationale"] == SECRET
    # when the values are rotated
    out = StringIO()
    call_command("rotate_field_keys", stdout=out)
    assert json.loads(out.getvalue()) == {
        "annotation.Label": 1,
        "annotation.LabelRevision": 0,
        # sealed texts (annotation.services.sealing): none here
        "annotation.Prompt": 0,
        "annotation.Response": 0,
        "annotation.Task": 0,
    }
    token = json.loads(_raw("annotation_label", label.pk))["rationale"][len(PREFIX) :]
    # then the new key alone reads them, and the old one no longer does
    assert Fernet(new).decrypt(token.encode()).decode() == SECRET
    settings.TANDEM_FIELD_KEYS = [new]
    assert Label.objects.get(pk=label.pk).payload["rationale"] == SECRET
    assert DataAuditEvent.objects.filter(action="field_keys_rotated").count() == 1
    # and with a key list that cannot read them, rotation stops with the reason
    settings.TANDEM_FIELD_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("rotate_field_keys", stdout=StringIO())


def test_a_rationale_stored_before_encryption_is_read_and_then_encrypted(label):
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE annotation_label SET payload = %s WHERE id = %s",
            [json.dumps({**label.payload, "rationale": "written in 2024"}), label.pk],
        )
    assert Label.objects.get(pk=label.pk).payload["rationale"] == "written in 2024"
    call_command("rotate_field_keys", stdout=StringIO())
    assert "written in 2024" not in _raw("annotation_label", label.pk)
    assert Label.objects.get(pk=label.pk).payload["rationale"] == "written in 2024"
