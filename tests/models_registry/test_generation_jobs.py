"""A version answers prompts in a background job; responses are stored with their settings."""

import pytest
from django.urls import reverse
from django_tasks_db.models import DBTaskResult
from rest_framework.test import APIClient

from annotation.models import Prompt, Response
from config.errors import ValidationFailed
from models_registry import generation
from models_registry.models import GenerationJob, JobStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def prompts(project):
    return [
        Prompt.objects.create(
            project=project,
            messages=[{"role": "user", "content": text}],
            content_hash=f"h{i}",
        )
        for i, text in enumerate(["hi", "Write a short poem about the sea.", "Paris?"])
    ]


CONFIG = {
    "max_new_tokens": 4,
    "temperature": 0.7,
    "top_p": 0.9,
    "seed": 5,
    "backend": "transformers",
}


def test_creating_a_job_enqueues_it_on_the_generation_queue_after_commit(
    candidate, prompts, engineer, django_capture_on_commit_callbacks
):
    # when an engineer asks the candidate to answer three prompts
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = generation.generation_job_create(
            version=candidate,
            prompt_ids=[p.pk for p in prompts],
            config=CONFIG,
            created_by=engineer,
        )
        # then nothing is enqueued while the transaction is open
        assert not DBTaskResult.objects.exists()
    assert len(callbacks) == 1
    queued = DBTaskResult.objects.get()
    assert queued.queue_name == "generation"
    assert queued.args_kwargs["args"] == [job.pk]
    job.refresh_from_db()
    assert (job.status, job.total, job.task_result_id) == ("queued", 3, str(queued.id))


def test_running_the_job_stores_one_model_response_per_prompt(candidate, prompts, engineer):
    job = generation.generation_job_create(
        version=candidate, prompt_ids=[p.pk for p in prompts], config=CONFIG, created_by=engineer
    )

    # when the worker runs it
    job = generation.generation_job_run(job_id=job.pk)

    # then each prompt has a response by this version, with the generation settings recorded
    assert (job.status, job.done, job.responses_created, job.backend) == (
        JobStatus.SUCCEEDED,
        3,
        3,
        "transformers",
    )
    responses = Response.objects.filter(model_name="tiny-dpo@v1").order_by("prompt_id")
    assert [r.prompt_id for r in responses] == [p.pk for p in prompts]
    first = responses[0].generation
    assert first["temperature"] == 0.7
    assert first["top_p"] == 0.9
    assert first["max_new_tokens"] == 4
    assert first["seed"] == 5
    assert [r.generation["seed"] for r in responses] == [5, 6, 7]
    assert first["model_version_id"] == candidate.pk
    assert first["generation_job_id"] == job.pk
    assert first["finish_reason"] in ("eos", "length")
    assert 1 <= first["new_tokens"] <= 4
    assert all(r.origin == "model" for r in responses)


def test_running_a_job_twice_stores_nothing_twice(candidate, prompts):
    job = generation.generation_job_create(
        version=candidate, prompt_ids=[p.pk for p in prompts], config=CONFIG
    )
    generation.generation_job_run(job_id=job.pk)
    GenerationJob.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)  # a retry
    again = generation.generation_job_run(job_id=job.pk)
    assert again.responses_created == 0
    assert Response.objects.filter(model_name="tiny-dpo@v1").count() == 3


def test_prompts_of_another_project_are_refused(candidate, other_project):
    foreign = Prompt.objects.create(
        project=other_project, messages=[{"role": "user", "content": "x"}], content_hash="x"
    )
    with pytest.raises(ValidationFailed) as refused:
        generation.generation_job_create(version=candidate, prompt_ids=[foreign.pk])
    assert refused.value.code == "foreign_prompts"
    assert not GenerationJob.objects.exists()


def test_an_invalid_config_is_refused(candidate, prompts):
    with pytest.raises(ValidationFailed) as refused:
        generation.generation_job_create(
            version=candidate, prompt_ids=[prompts[0].pk], config={"top_p": 0}
        )
    assert refused.value.code == "invalid_config"


def test_the_api_starts_a_job_and_reports_progress(candidate, prompts, engineer, annotator):
    client = APIClient()
    client.force_authenticate(engineer)
    started = client.post(
        reverse("api-model-generate", args=[candidate.pk]),
        {"prompt_ids": [p.pk for p in prompts], "config": CONFIG},
        format="json",
    )
    assert started.status_code == 202
    job_url = reverse("api-generation-job", args=[started.json()["id"]])
    assert client.get(job_url).json()["status"] == "queued"
    annotator_client = APIClient()
    annotator_client.force_authenticate(annotator)
    assert annotator_client.get(job_url).status_code == 403
