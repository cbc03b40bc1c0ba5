"""Generation jobs: a policy version answers a list of prompts, in a worker.

``generation_job_create`` queues a job (enqueued after commit); ``generation_job_run`` runs it
(the ``generation`` queue's job, or a loop round in-process). Responses are ordinary
``annotation.Response`` rows with ``origin=model``, stored get-or-create by content hash, so a
retried job never duplicates them.
"""

from __future__ import annotations

from pathlib import Path

from django.db import transaction
from django.utils import timezone

from annotation.models import Prompt, Response, ResponseOrigin
from annotation.services import text_hash
from config.errors import Conflict, ValidationFailed
from models_registry.models import (
    GenerationJob,
    GenerationPurpose,
    JobStatus,
    ModelVersion,
    VersionKind,
    VersionState,
)


def generation_job_create(
    *,
    version: ModelVersion,
    prompt_ids: list[int],
    config: dict | None = None,
    created_by=None,
    enqueue: bool = True,
    purpose: str = GenerationPurpose.ANSWER,
    variants: int = 1,
    response_ids: list[int] | None = None,
) -> GenerationJob:
    """Queue a job that makes ``version`` answer the prompts; enqueued after commit
    (``enqueue=False``: the caller runs ``generation_job_run`` itself, as a loop round does).
    ``purpose``, ``variants``, ``response_ids``: a proposal job (``models_registry.proposals``)."""
    from rlhf.training.generation import GenerationConfig, config_record

    if version.kind != VersionKind.POLICY:
        raise ValidationFailed("only a policy generates responses", code="not_a_policy")
    if version.state in (VersionState.REJECTED, VersionState.ARCHIVED):
        raise Conflict(f"a {version.state} version does not generate", code="version_retired")
    prompt_ids = list(dict.fromkeys(int(i) for i in prompt_ids))
    if not prompt_ids:
        raise ValidationFailed("no prompts given", code="no_prompts")
    found = set(
        Prompt.objects.filter(project_id=version.project_id, pk__in=prompt_ids).values_list(
            "pk", flat=True
        )
    )
    missing = [i for i in prompt_ids if i not in found]
    if missing:
        raise ValidationFailed(
            f"prompts not in this project: {missing[:10]}", code="foreign_prompts"
        )
    try:
        generation_config = GenerationConfig(**(config or {}))
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"invalid generation config: {exc}", code="invalid_config") from exc
    with transaction.atomic():
        job = GenerationJob.objects.create(
            project_id=version.project_id,
            version=version,
            prompt_ids=prompt_ids,
            config=config_record(generation_config),
            total=len(prompt_ids) * variants
            if purpose == GenerationPurpose.PROMPT_VARIANT
            else len(response_ids or prompt_ids),
            created_by=created_by,
            purpose=purpose,
            variants=variants,
            response_ids=list(response_ids or []),
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue_generation(job.pk))
    return job


def _enqueue_generation(job_id: int) -> None:
    from models_registry.tasks import generation_job_run_job

    result = generation_job_run_job.enqueue(job_id)
    GenerationJob.objects.filter(pk=job_id, task_result_id="").update(task_result_id=str(result.id))


def generation_job_run(*, job_id: int) -> GenerationJob:
    """Run a generation job (in a worker). Idempotent: a finished job is returned as is, and
    responses are stored with get-or-create, so a retried job never duplicates rows."""
    from models_registry.proposals import proposal_inputs, proposals_record
    from rlhf.training.generation import GenerationConfig, generate_from_folder

    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().get(pk=job_id)
        if job.status == JobStatus.SUCCEEDED:
            return job
        job.status = JobStatus.RUNNING
        job.started_at = timezone.now()
        job.error = ""
        job.save(update_fields=["status", "started_at", "error"])
    version = ModelVersion.objects.select_related("base_model").get(pk=job.version_id)
    prompts = Prompt.objects.in_bulk(job.prompt_ids)
    ordered = [prompts[i] for i in job.prompt_ids if i in prompts]
    proposing = job.purpose != GenerationPurpose.ANSWER
    inputs = proposal_inputs(job) if proposing else []
    messages = [m for m, _ in inputs] if proposing else [p.messages for p in ordered]

    def on_progress(done: int, total: int) -> None:
        GenerationJob.objects.filter(pk=job.pk).update(done=min(done, job.total))

    try:
        config = GenerationConfig(**job.config)
        base_dir = (
            Path(version.base_model.artifact_dir)
            if version.is_adapter and version.base_model
            else None
        )
        result = generate_from_folder(
            Path(version.artifact_dir),
            messages,
            config,
            base_model_dir=base_dir,
            on_progress=on_progress,
        )
        created = 0
        with transaction.atomic():
            if proposing:
                created = proposals_record(
                    job=job, version=version, inputs=inputs, samples=result.responses
                )
            else:
                created = _responses_store(job, version, ordered, result.responses)
            GenerationJob.objects.filter(pk=job.pk).update(
                status=JobStatus.SUCCEEDED,
                done=job.total,
                responses_created=created,
                backend=result.backend,
                finished_at=timezone.now(),
            )
    except Exception as exc:
        GenerationJob.objects.filter(pk=job.pk).update(
            status=JobStatus.FAILED,
            error=f"{type(exc).__name__}: {exc}",
            finished_at=timezone.now(),
        )
        raise
    job.refresh_from_db()
    return job


def _responses_store(job: GenerationJob, version: ModelVersion, prompts, samples) -> int:
    """An answer job's samples as Responses (get-or-create by content); returns the new ones."""
    created = 0
    for prompt, response in zip(prompts, samples, strict=True):
        # A sampled NUL byte is no text anyone can read, and PostgreSQL refuses it.
        text = response.text.replace("\x00", "\ufffd")
        _, was_created = Response.objects.get_or_create(
            prompt=prompt,
            origin=ResponseOrigin.MODEL,
            model_name=version.response_model_name,
            content_hash=text_hash(text),
            defaults={
                "text": text,
                "generation": {
                    **response.params,
                    "model_version_id": version.pk,
                    "generation_job_id": job.pk,
                    "prompt_tokens": response.prompt_tokens,
                    "new_tokens": response.new_tokens,
                    "finish_reason": response.finish_reason,
                },
            },
        )
        created += was_created
    return created
