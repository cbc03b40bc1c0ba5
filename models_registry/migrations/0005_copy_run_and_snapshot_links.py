"""Carry the existing links over: a version's run and snapshot ids become foreign keys (an id
that points at nothing, or at another project's run or snapshot, is dropped), and each run's
base, reward and candidate versions move to the registry's ``TrainingRunVersions``."""

from django.db import migrations


def forward(apps, schema_editor):
    ModelVersion = apps.get_model("models_registry", "ModelVersion")
    TrainingRunVersions = apps.get_model("models_registry", "TrainingRunVersions")
    TrainingRun = apps.get_model("rlhf", "TrainingRun")
    DatasetSnapshot = apps.get_model("rlhf", "DatasetSnapshot")

    versions = ModelVersion.objects.exclude(training_run_ref=None, dataset_snapshot_ref=None)
    for version in versions.only("id", "project_id", "training_run_ref", "dataset_snapshot_ref"):
        run_id = version.training_run_ref
        snapshot_id = version.dataset_snapshot_ref
        version.training_run_id = (
            run_id
            if run_id and TrainingRun.objects.filter(pk=run_id, project_id=version.project_id).exists()
            else None
        )
        version.dataset_snapshot_id = (
            snapshot_id
            if snapshot_id
            and DatasetSnapshot.objects.filter(pk=snapshot_id, project_id=version.project_id).exists()
            else None
        )
        version.save(update_fields=["training_run", "dataset_snapshot"])

    linked = TrainingRun.objects.exclude(
        base_model_version=None, reward_model_version=None, candidate_version=None
    )
    TrainingRunVersions.objects.bulk_create(
        TrainingRunVersions(
            run_id=run["id"],
            base_model_version_id=run["base_model_version_id"],
            reward_model_version_id=run["reward_model_version_id"],
            candidate_version_id=run["candidate_version_id"],
        )
        for run in linked.values(
            "id", "base_model_version_id", "reward_model_version_id", "candidate_version_id"
        )
    )


def backward(apps, schema_editor):
    ModelVersion = apps.get_model("models_registry", "ModelVersion")
    TrainingRunVersions = apps.get_model("models_registry", "TrainingRunVersions")
    TrainingRun = apps.get_model("rlhf", "TrainingRun")
    for version in ModelVersion.objects.exclude(training_run=None, dataset_snapshot=None):
        version.training_run_ref = version.training_run_id
        version.dataset_snapshot_ref = version.dataset_snapshot_id
        version.save(update_fields=["training_run_ref", "dataset_snapshot_ref"])
    for link in TrainingRunVersions.objects.all():
        TrainingRun.objects.filter(pk=link.run_id).update(
            base_model_version_id=link.base_model_version_id,
            reward_model_version_id=link.reward_model_version_id,
            candidate_version_id=link.candidate_version_id,
        )


class Migration(migrations.Migration):
    dependencies = [("models_registry", "0004_run_and_snapshot_foreign_keys")]

    operations = [migrations.RunPython(forward, backward)]
