"""Registry references to runs and snapshots become foreign keys; the registry keeps its own
record of the versions a run starts from and becomes (rlhf sits below the registry).

Schema only: 0005 copies the data, 0006 drops the old integer columns and rlhf 0003 the
run's version columns.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("models_registry", "0003_loop_rounds"),
        ("rlhf", "0002_training_runs"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="training_run",
            field=models.ForeignKey(
                blank=True,
                help_text="The training run whose result this version is.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="rlhf.trainingrun",
            ),
        ),
        migrations.AddField(
            model_name="modelversion",
            name="dataset_snapshot",
            field=models.ForeignKey(
                blank=True,
                help_text="The dataset snapshot it was trained on.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="rlhf.datasetsnapshot",
            ),
        ),
        migrations.CreateModel(
            name="TrainingRunVersions",
            fields=[
                (
                    "run",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="registry_versions",
                        serialize=False,
                        to="rlhf.trainingrun",
                    ),
                ),
                (
                    "base_model_version",
                    models.ForeignKey(
                        blank=True,
                        help_text="The parent version the run starts from.",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="models_registry.modelversion",
                    ),
                ),
                (
                    "reward_model_version",
                    models.ForeignKey(
                        blank=True,
                        help_text="The reward model online methods (ppo, rloo, grpo) score with.",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="models_registry.modelversion",
                    ),
                ),
                (
                    "candidate_version",
                    models.ForeignKey(
                        blank=True,
                        help_text="The candidate version registered from this run's result.",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="models_registry.modelversion",
                    ),
                ),
            ],
        ),
    ]
