"""Encrypt the rationales stored before encryption at rest, and make the data audit log
append-only in PostgreSQL itself (as ``models_registry`` 0002 does for the model audit log).

The rationale pass reads every label and revision that has one through the encrypting field
and writes it back, so it is stored as an ``enc1:`` token under the first key of
``TANDEM_FIELD_KEYS``. Reversing leaves the tokens (the field still reads them).
"""

from django.db import migrations

TABLE = "annotation_dataauditevent"

CREATE = f"""
CREATE OR REPLACE FUNCTION annotation_data_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'data audit events are append-only: % on {TABLE} refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER annotation_dataauditevent_append_only
    BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION annotation_data_audit_append_only();
"""

DROP = f"""
DROP TRIGGER IF EXISTS annotation_dataauditevent_append_only ON {TABLE};
DROP FUNCTION IF EXISTS annotation_data_audit_append_only();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


def encrypt_rationales(apps, schema_editor):
    for name in ("Label", "LabelRevision"):
        model = apps.get_model("annotation", name)
        batch = []
        for row in model.objects.only("pk", "payload").iterator(chunk_size=500):
            if isinstance(row.payload, dict) and row.payload.get("rationale"):
                batch.append(row)  # read in clear; the field encrypts it on the way back
            if len(batch) >= 500:
                model.objects.bulk_update(batch, ["payload"])
                batch = []
        if batch:
            model.objects.bulk_update(batch, ["payload"])


class Migration(migrations.Migration):
    dependencies = [("annotation", "0006_data_audit_and_encrypted_rationales")]

    operations = [
        migrations.RunPython(create_trigger, drop_trigger, elidable=False),
        migrations.RunPython(encrypt_rationales, migrations.RunPython.noop, elidable=False),
    ]
