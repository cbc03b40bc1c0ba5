"""Generation jobs: a policy version answers a list of prompts, in a worker.

``generation_job_create`` queues a job (enqueued after commit); ``generation_job_run`` runs it
(the ``generation`` queue's job, or a loop round in-process). Responses are ordinary
``annotation.Response`` rows with ``origin=model``, stored get-or-create by content hash, so a
retried job never duplicates them.
"""

from __future__ import annotations

import random
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
    responses are stored with get-or-create, so a retried job never duplicates rows. A
    proposal job (variants of prompts, drafts of corrections) stores proposals instead
    (``models_registry.proposals``)."""
    purpose = GenerationJob.objects.values_list("purpose", flat=True).get(pk=job_id)
    if purpose == GenerationPurpose.ANSWER:
        return generation_jobs_run_interleaved(job_ids=[job_id], order_seed="")[0]
    return _proposal_job_run(job_id)


def _proposal_job_run(job_id: int) -> GenerationJob:
    from models_registry.proposals import proposal_inputs, proposals_record

    job = _job_start(job_id)
    if job is None:
        return GenerationJob.objects.get(pk=job_id)
    inputs = proposal_inputs(job)
    version, _, result = _job_generate(job, messages=[m for m, _ in inputs])
    try:
        with transaction.atomic():
            created = proposals_record(
                job=job, version=version, inputs=inputs, samples=result.responses
            )
            GenerationJob.objects.filter(pk=job.pk).update(
                status=JobStatus.SUCCEEDED,
                done=job.total,
                responses_created=created,
                backend=result.backend,
                finished_at=timezone.now(),
            )
    except Exception as exc:
        _job_fail(job, exc)
        raise
    return GenerationJob.objects.get(pk=job_id)


def generation_jobs_run_interleaved(*, job_ids: list[int], order_seed: str) -> list[GenerationJob]:
    """Run several jobs over the same prompts, then store all their responses in one
    transaction, prompt by prompt, each prompt's answers in an order drawn from
    ``order_seed`` and the prompt. A review round generates its candidate's and its champion's
    answers this way, so the order response rows were written in (their ids) says nothing
    about which version wrote which. Nothing is stored until every job has generated; a
    failed job is marked failed and the error raised. Idempotent as ``generation_job_run``."""
    pending = []
    for job_id in job_ids:
        job = _job_start(job_id)
        if job is not None:
            pending.append((job, *_job_generate(job)))
    if pending:
        # Per prompt, one write per job that answered it, in the seeded order.
        writes: dict[int, list[tuple]] = {}
        for job, version, ordered, result in pending:
            for prompt, response in zip(ordered, result.responses, strict=True):
                writes.setdefault(prompt.pk, []).append((job, version, prompt, response))
        created = {job.pk: 0 for job, *_ in pending}
        try:
            with transaction.atomic():
                for prompt_id, group in writes.items():
                    random.Random(f"{order_seed}:{prompt_id}").shuffle(group)
                    for job, version, prompt, response in group:
                        created[job.pk] += _response_store(job, version, prompt, response)
                for job, _, _, result in pending:
                    GenerationJob.objects.filter(pk=job.pk).update(
                        status=JobStatus.SUCCEEDED,
                        done=job.total,
                        responses_created=created[job.pk],
                        backend=result.backend,
                        finished_at=timezone.now(),
                    )
        except Exception as exc:
            for job, *_ in pending:
                _job_fail(job, exc)
            raise
    return [GenerationJob.objects.get(pk=job_id) for job_id in job_ids]


def _job_start(job_id: int) -> GenerationJob | None:
    """Mark the job running; None when it has already succeeded."""
    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().get(pk=job_id)
        if job.status == JobStatus.SUCCEEDED:
            return None
        job.status = JobStatus.RUNNING
        job.started_at = timezone.now()
        job.error = ""
        job.save(update_fields=["status", "started_at", "error"])
    return job


def _job_fail(job: GenerationJob, exc: Exception) -> None:
    GenerationJob.objects.filter(pk=job.pk).update(
        status=JobStatus.FAILED,
        error=f"{type(exc).__name__}: {exc}",
        finished_at=timezone.now(),
    )


def _job_generate(job: GenerationJob, *, messages: list | None = None):
    """(version, prompts in the job's order, the generation result); nothing stored.
    ``messages``: what to answer instead of the prompts' own (a proposal job's instructions)."""
    from rlhf.training.generation import GenerationConfig, generate_from_folder

    version = ModelVersion.objects.select_related("base_model").get(pk=job.version_id)
    prompts = Prompt.objects.in_bulk(job.prompt_ids)
    ordered = [prompts[i] for i in job.prompt_ids if i in prompts]
    if messages is None:
        messages = [p.messages for p in ordered]

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
    except Exception as exc:
        _job_fail(job, exc)
        raise
    return version, ordered, result


def _response_store(job: GenerationJob, version: ModelVersion, prompt: Prompt, response) -> bool:
    """Store one generated answer (get-or-create by content hash); True when it is new."""
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
    return was_created
