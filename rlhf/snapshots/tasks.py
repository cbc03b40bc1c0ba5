"""Background jobs of snapshots (queue "snapshots").

Jobs receive ids and are idempotent: a job delivered twice does nothing new.
"""

from django_tasks import task

from rlhf.models import DatasetSnapshot
from rlhf.snapshots import services


@task(queue_name="snapshots")
def snapshot_build_job(snapshot_id: int) -> None:
    services.snapshot_build(snapshot_id=snapshot_id)


@task(queue_name="snapshots")
def snapshot_export_job(
    snapshot_id: int,
    name: str,
    max_prompt_chars: int | None = None,
    tools: list[str] | None = None,
) -> None:
    snapshot = DatasetSnapshot.objects.get(pk=snapshot_id)
    services.snapshot_export(
        snapshot=snapshot, name=name, max_prompt_chars=max_prompt_chars, tools=tools
    )
