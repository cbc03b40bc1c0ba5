"""The registry's side of training runs: which registered versions a run started from, scored
with and became (``TrainingRunVersions``).

``rlhf`` sits below the registry and knows no versions; ``ModelsRegistryConfig.ready()``
installs ``RunVersionRegistry`` into ``rlhf.runs.versions``, through which the launch form, the
run API and ``manage.py train`` resolve version ids, and run pages name the versions.
"""

from __future__ import annotations

from django.db.models import F

from config.errors import Conflict
from models_registry.access import access_model_version
from models_registry.models import ModelVersion, TrainingRunVersions, VersionState
from rlhf.models import RunStatus, TrainingRun
from rlhf.runs.services import training_run_notify
from rlhf.runs.versions import RUN_VERSION_FIELDS


def run_versions_of(*, run: TrainingRun) -> TrainingRunVersions:
    """The run's record (unsaved and empty if the run has none)."""
    found = (
        TrainingRunVersions.objects.filter(run=run)
        .select_related("base_model_version", "reward_model_version", "candidate_version")
        .first()
    )
    return found or TrainingRunVersions(run=run)


def training_run_candidate(*, run: TrainingRun) -> ModelVersion | None:
    """The version registered from the run's result, if any."""
    return run_versions_of(run=run).candidate_version


def training_run_set_candidate(*, run: TrainingRun, version: ModelVersion) -> None:
    """Record the model version registered from a succeeded run (and tell its watchers)."""
    updated = TrainingRun.objects.filter(pk=run.pk, status=RunStatus.SUCCEEDED).update(
        revision=F("revision") + 1
    )
    if not updated:
        raise Conflict("only a succeeded run has a candidate version", code="run_not_succeeded")
    TrainingRunVersions.objects.update_or_create(run=run, defaults={"candidate_version": version})
    training_run_notify(run.pk)


class RunVersionRegistry:
    """What ``rlhf.runs.versions`` asks of the registry."""

    def version_get(self, *, version_id: int, user=None) -> ModelVersion | None:
        if user is not None:
            return access_model_version(user, version_id)
        return ModelVersion.objects.filter(pk=version_id).first()

    def launch_choices(self, *, project) -> list[ModelVersion]:
        return list(
            ModelVersion.objects.filter(project=project)
            .exclude(state__in=[VersionState.REJECTED, VersionState.ARCHIVED])
            .only("id", "project_id", "name", "version", "kind", "state", "artifact_dir")
        )

    def run_launched(self, *, run, base_model_version, reward_model_version) -> None:
        TrainingRunVersions.objects.create(
            run=run,
            base_model_version=base_model_version,
            reward_model_version=reward_model_version,
        )

    def run_versions(self, *, run_ids) -> dict[int, dict[str, int | None]]:
        rows = TrainingRunVersions.objects.filter(run_id__in=list(run_ids)).values(
            "run_id", *(f"{field}_id" for field in RUN_VERSION_FIELDS)
        )
        return {
            row["run_id"]: {field: row[f"{field}_id"] for field in RUN_VERSION_FIELDS}
            for row in rows
        }
