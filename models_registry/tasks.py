"""Background jobs of the registry (Django's tasks API, ``generation`` queue).

Jobs receive ids, never objects, are enqueued on commit by the services, and are idempotent.
"""

from django_tasks import task

from models_registry import services


@task(queue_name="generation")
def generate_responses_for_job(job_id: int) -> int:
    """Returns how many new responses were stored."""
    return services.generation_job_run(job_id=job_id).responses_created
