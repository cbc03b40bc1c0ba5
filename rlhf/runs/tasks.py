"""Background jobs of training runs (queue "training").

Jobs receive a run's id and its attempt number (its fencing token) and are idempotent: a job
whose run moved on, or that is delivered twice, does nothing.
"""

from django_tasks import task


@task(queue_name="training")
def training_run_job(run_id: int, attempt: int) -> str:
    """One attempt of a training run (GPU work: only ever in a worker process)."""
    from rlhf.runs.execution import training_run_execute

    return training_run_execute(run_id=run_id, attempt=attempt)


# Ahead of training jobs in the same queue: a dead worker's run should not wait behind them.
@task(queue_name="training", priority=10)
def training_run_watchdog_job(run_id: int, attempt: int) -> str:
    """Watch one running attempt without a cron: release its run once its heartbeat is stale,
    else look again one stale period after the last heartbeat."""
    from rlhf.runs.services import training_run_watch

    return training_run_watch(run_id=run_id, attempt=attempt)
