"""PostgreSQL storage settings for the task table, the hottest row of the annotation loop.

Every label bumps its task's ``label_count`` under the row lock. With full pages (fillfactor
100, what a bulk import leaves) each bump writes a new row version on another page plus a new
entry in every index of the table; with room on the page (fillfactor 80) PostgreSQL updates
in place ("HOT"), touching no index, as long as no indexed column changes (the final bump that
sets ``status='done'`` still moves the row out of the open-queue index, as it must).
Autovacuum by default waits for 20% of the rows to be dead, 200,000 on a million tasks;
2% keeps the front of the open queue free of dead index entries on large projects.
SQLite has neither setting: nothing to do there.
"""

from django.db import migrations

FORWARD = (
    "ALTER TABLE annotation_task SET (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02, "
    "autovacuum_analyze_scale_factor = 0.02)"
)
BACKWARD = (
    "ALTER TABLE annotation_task RESET (fillfactor, autovacuum_vacuum_scale_factor, "
    "autovacuum_analyze_scale_factor)"
)


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("annotation", "0002_quality")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
