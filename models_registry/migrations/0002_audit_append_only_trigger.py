"""On PostgreSQL, refuse UPDATE and DELETE of audit events in the database itself.

The model and its QuerySet already refuse; the trigger also stops raw SQL, other clients and
bulk paths that bypass the ORM. TRUNCATE is left to the table owner on purpose: Django's test
runner empties tables with TRUNCATE between transactional tests, and an owner who truncates
could drop the trigger anyway. Other databases rely on the ORM guard.
"""

from django.db import migrations

TABLE = "models_registry_auditevent"

CREATE = f"""
CREATE OR REPLACE FUNCTION models_registry_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % on {TABLE} refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER models_registry_auditevent_append_only
    BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION models_registry_audit_append_only();
"""

DROP = f"""
DROP TRIGGER IF EXISTS models_registry_auditevent_append_only ON {TABLE};
DROP FUNCTION IF EXISTS models_registry_audit_append_only();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("models_registry", "0001_initial")]

    operations = [migrations.RunPython(create_trigger, drop_trigger, elidable=False)]
