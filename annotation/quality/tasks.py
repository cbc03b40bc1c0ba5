"""Background jobs of quality control (django-tasks). They take ids and are idempotent."""

from dataclasses import asdict

from django_tasks import task

from annotation.quality import services


@task(queue_name="default")
def quality_refresh_job(project_id: int) -> dict:
    """Apply the project's dirty tasks to its caches and store a fresh report."""
    return asdict(services.quality_refresh(project_id=project_id))


@task(queue_name="default")
def quality_recompute_job(project_id: int) -> dict:
    """Rebuild every quality cache of the project from its labels, then store a report."""
    return asdict(services.quality_recompute(project_id=project_id))
