"""A run's base, reward and candidate versions are the registry's record now
(``models_registry.TrainingRunVersions``, filled from these columns by its migration 0005)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("rlhf", "0002_training_runs"),
        ("models_registry", "0005_copy_run_and_snapshot_links"),
    ]

    operations = [
        migrations.RemoveField(model_name="trainingrun", name="base_model_version"),
        migrations.RemoveField(model_name="trainingrun", name="reward_model_version"),
        migrations.RemoveField(model_name="trainingrun", name="candidate_version"),
    ]
