"""Jobs still queued under a module or name that moved find their function again.

rlhf.tasks split into rlhf.runs.tasks and rlhf.snapshots.tasks, and every job name ends in
``_job``. A worker resolves a queued row's ``task_path`` by import, so an old path would fail
it; finished rows keep the path they ran under.
"""

from django.db import migrations

RENAMED = {
    "rlhf.tasks.training_run_job": "rlhf.runs.tasks.training_run_job",
    "rlhf.tasks.training_run_watchdog_job": "rlhf.runs.tasks.training_run_watchdog_job",
    "rlhf.tasks.snapshot_build_job": "rlhf.snapshots.tasks.snapshot_build_job",
    "rlhf.tasks.snapshot_export_job": "rlhf.snapshots.tasks.snapshot_export_job",
    "models_registry.tasks.generate_responses_for_job": "models_registry.tasks.generation_job_run_job",
    "models_registry.tasks.review_round_evaluate_job": "models_registry.tasks.loop_round_evaluate_job",
    "annotation.quality.tasks.quality_refresh_task": "annotation.quality.tasks.quality_refresh_job",
}


def rename(apps, schema_editor, mapping):
    DBTaskResult = apps.get_model("django_tasks_database", "DBTaskResult")
    waiting = DBTaskResult.objects.filter(status__in=["READY", "RUNNING"])
    for old, new in mapping.items():
        waiting.filter(task_path=old).update(task_path=new)


class Migration(migrations.Migration):
    dependencies = [
        ("models_registry", "0006_drop_integer_refs"),
        ("django_tasks_database", "0021_conditional_partial_index_ordering"),
    ]

    operations = [
        migrations.RunPython(
            lambda apps, editor: rename(apps, editor, RENAMED),
            lambda apps, editor: rename(apps, editor, {new: old for old, new in RENAMED.items()}),
        )
    ]
