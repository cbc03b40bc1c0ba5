"""Registered model versions, as a run sees them: an extension point the registry fills.

``rlhf`` sits below the model registry (the registry imports runs, never the reverse), yet
an engineer starts a run from a registered version, an online run scores with a registered
reward model, and a run's pages name the version it started from and the one it was
registered as. ``ModelsRegistryConfig.ready()`` installs the registry here (``install``);
without it, runs start from folders and other runs only.

A version reaches rlhf as an object with ``pk``, ``project_id``, ``kind``, ``label``,
``state``, ``is_retired`` and ``artifact_dir`` (the registry's ``ModelVersion``).
"""

from __future__ import annotations

from typing import Protocol

from config.errors import ValidationFailed

# The run fields the registry records for a run, by name (ids of versions, or None).
RUN_VERSION_FIELDS = ("base_model_version", "reward_model_version", "candidate_version")


class VersionRegistry(Protocol):
    def version_get(self, *, version_id: int, user=None):
        """The version (through its access gate when ``user`` is given; 404 if none)."""

    def launch_choices(self, *, project) -> list:
        """The project's versions a run may start from (not rejected or archived)."""

    def run_launched(self, *, run, base_model_version, reward_model_version) -> None:
        """Record, in the launch's transaction, which versions ``run`` starts from."""

    def run_versions(self, *, run_ids) -> dict[int, dict[str, int | None]]:
        """``{run_id: {field: version id or None for field in RUN_VERSION_FIELDS}}``."""


_registry: VersionRegistry | None = None


def install(registry: VersionRegistry) -> None:
    global _registry
    _registry = registry


def _installed() -> VersionRegistry:
    if _registry is None:
        raise ValidationFailed("no model registry is installed", code="no_registry")
    return _registry


def version_get(*, version_id: int, user=None):
    return _installed().version_get(version_id=version_id, user=user)


def launch_choices(*, project) -> list:
    return [] if _registry is None else _registry.launch_choices(project=project)


def run_launched(*, run, base_model_version, reward_model_version) -> None:
    if base_model_version is None and reward_model_version is None:
        return
    _installed().run_launched(
        run=run, base_model_version=base_model_version, reward_model_version=reward_model_version
    )


def run_versions(*, run_ids) -> dict[int, dict[str, int | None]]:
    """Every asked run has an entry (all None without a registry)."""
    found = {} if _registry is None else _registry.run_versions(run_ids=run_ids)
    empty = dict.fromkeys(RUN_VERSION_FIELDS)
    return {int(pk): {**empty, **found.get(int(pk), {})} for pk in run_ids}


def annotate_runs(runs) -> list:
    """Set ``base_model_version_id``, ``reward_model_version_id`` and ``candidate_version_id``
    on each run (for pages and serializers that name them)."""
    runs = list(runs)
    versions = run_versions(run_ids=[r.pk for r in runs])
    for run in runs:
        for field, version_id in versions[run.pk].items():
            setattr(run, f"{field}_id", version_id)
    return runs
