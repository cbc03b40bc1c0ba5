"""Background jobs of the annotation app (django-tasks). Idempotent."""

from django_tasks import task

from annotation.services.retention import retention_apply_all


@task(queue_name="default")
def retention_apply_job() -> dict:
    """Apply every project's retention settings once (``annotation.periodic`` enqueues it
    every ``TANDEM_RETENTION_EVERY_SECONDS``); {project id: counts}."""
    return {str(project_id): done for project_id, done in retention_apply_all().items()}
