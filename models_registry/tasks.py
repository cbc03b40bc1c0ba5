"""Background jobs of the registry (Django's tasks API, ``generation`` queue).

Jobs receive ids, never objects, are enqueued on commit by the services, and are idempotent.
"""

from django_tasks import task

from models_registry import generation


@task(queue_name="generation")
def generation_job_run_job(job_id: int) -> int:
    """Returns how many new responses were stored."""
    return generation.generation_job_run(job_id=job_id).responses_created


@task(queue_name="generation")
def loop_round_prepare_job(round_id: int) -> int:
    """Returns how many tasks the round queued."""
    from models_registry.review_cycle import loop_round_prepare

    return len(loop_round_prepare(round_id=round_id).task_ids)


@task(queue_name="generation")
def loop_round_evaluate_job(round_id: int) -> None:
    from models_registry.review_cycle import loop_round_evaluate

    loop_round_evaluate(round_id=round_id)


@task(queue_name="generation")
def model_version_bundle_job(version_id: int, adapter_only: bool = False) -> str:
    """Build a version's export bundle (merging an adapter needs a worker's memory); returns
    its folder."""
    from models_registry.bundles import model_version_bundle_build

    return str(model_version_bundle_build(version_id=version_id, adapter_only=adapter_only).folder)
