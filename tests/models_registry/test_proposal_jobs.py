"""The champion proposes data in a generation job: prompt variants (n per prompt, each with
its own recorded seed and temperature) and corrections of rejected answers, each waiting in a
``confirm`` task. Engineers and admins start it from the API or the versions page."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation import services as annotation_services
from annotation.models import Prompt, Proposal, ProposalKind, Task, TaskKind
from config.errors import Conflict
from models_registry import proposals
from models_registry.generation import generation_job_run
from models_registry.models import GenerationJob, ModelAlias
from models_registry.review_settings import eval_prompts_pin

pytestmark = pytest.mark.django_db

CONFIG = {
    "max_new_tokens": 6,
    "temperature": 0.9,
    "top_p": 0.9,
    "seed": 5,
    "backend": "transformers",
}


@pytest.fixture
def prompts(project):
    return [
        Prompt.objects.create(
            project=project,
            messages=[{"role": "user", "content": text}],
            content_hash=f"h{i}",
        )
        for i, text in enumerate(["How do I boil an egg?", "Name a river in France."])
    ]


@pytest.fixture
def champion(project, candidate):
    ModelAlias.objects.update_or_create(
        project=project, name="champion", defaults={"version": candidate}
    )
    return candidate


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_variant_job_proposes_n_variants_per_prompt_with_their_seeds(
    project, champion, prompts, engineer
):
    # when the champion is asked for two variants of each of two prompts, and the job runs
    job = proposals.proposal_job_create(
        project=project,
        kind=ProposalKind.PROMPT_VARIANT,
        prompt_ids=[p.pk for p in prompts],
        variants=2,
        config=CONFIG,
        created_by=engineer,
        enqueue=False,
    )
    assert (job.purpose, job.variants, job.total) == ("prompt_variant", 2, 4)
    job = generation_job_run(job_id=job.pk)

    # then each prompt has its variants, each with its own seed, the temperature and the
    # proposing version recorded, and a confirm task waiting for a person
    assert job.status == "succeeded"
    stored = list(Proposal.objects.order_by("id"))
    assert len(stored) == job.responses_created
    assert 1 <= len(stored) <= 4  # identical samples of one prompt are one proposal
    for proposal in stored:
        assert proposal.kind == ProposalKind.PROMPT_VARIANT
        assert proposal.source_prompt_id in {p.pk for p in prompts}
        assert proposal.generation["temperature"] == 0.9
        assert proposal.generation["model_version_id"] == champion.pk
        assert proposal.generation["generation_job_id"] == job.pk
        assert proposal.model_name == champion.response_model_name
        assert proposal.task.kind == TaskKind.CONFIRM
    seeds = sorted(p.generation["seed"] for p in stored)
    assert len(set(seeds)) == len(seeds)
    assert set(seeds) <= {5, 6, 7, 8}
    # no prompt entered the pool yet
    assert Prompt.objects.filter(project=project).count() == 2


def test_a_correction_job_drafts_a_rewrite_of_each_rejected_answer(
    project, champion, annotator, engineer
):
    # given a pair an annotator judged: the right answer lost
    task, _ = annotation_services.task_create(
        project=project,
        messages=[{"role": "user", "content": "How do I boil an egg?"}],
        kind=TaskKind.PAIRWISE,
        responses=[{"text": "Boil it nine minutes."}, {"text": "No idea."}],
    )
    lease = annotation_services.task_claim_next(project=project, annotator=annotator)
    annotation_services.label_submit(task=lease.task, annotator=annotator, payload={"choice": "A"})
    rejected = task.items.get(position=1).response

    # when the champion proposes corrections (sources found by themselves) and the job runs
    job = proposals.proposal_job_create(
        project=project,
        kind=ProposalKind.CORRECTION,
        config=CONFIG,
        created_by=engineer,
        enqueue=False,
    )
    assert job.response_ids == [rejected.pk]
    generation_job_run(job_id=job.pk)

    # then the rejected answer has a draft correction in a confirm task that shows it
    proposal = Proposal.objects.get()
    assert (proposal.kind, proposal.source_response_id) == (ProposalKind.CORRECTION, rejected.pk)
    assert proposal.source_prompt_id == task.prompt_id
    assert [i.response_id for i in proposal.task.items.all()] == [rejected.pk]
    # and a second request finds nothing left to correct
    with pytest.raises(Conflict) as refused:
        proposals.proposal_job_create(
            project=project, kind=ProposalKind.CORRECTION, created_by=engineer, enqueue=False
        )
    assert refused.value.code == "no_sources"


def test_pinned_evaluation_prompts_are_never_varied(project, champion, prompts, engineer):
    eval_prompts_pin(project=project, prompt_ids=[prompts[0].pk])
    project.refresh_from_db()

    response = api(engineer).post(
        f"/api/projects/{project.pk}/proposals/",
        {"kind": "prompt_variant", "prompt_ids": [prompts[0].pk]},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["field"] == "prompt_ids"
    assert not GenerationJob.objects.exists()
    # and left to choose, the job leaves them out
    job = proposals.proposal_job_create(
        project=project, kind=ProposalKind.PROMPT_VARIANT, created_by=engineer, enqueue=False
    )
    assert job.prompt_ids == [prompts[1].pk]


def test_the_api_queues_a_job_for_engineers_and_refuses_annotators(
    project, champion, prompts, engineer, annotator
):
    url = f"/api/projects/{project.pk}/proposals/"
    refused = api(annotator).post(url, {"kind": "prompt_variant"}, format="json")
    assert refused.status_code == 403
    assert not GenerationJob.objects.exists()

    response = api(engineer).post(url, {"kind": "prompt_variant", "variants": 3}, format="json")

    assert response.status_code == 202
    job = GenerationJob.objects.get()
    assert (response.json()["id"], job.purpose, job.variants, job.version_id) == (
        job.pk,
        "prompt_variant",
        3,
        champion.pk,
    )
    assert sorted(job.prompt_ids) == sorted(p.pk for p in prompts)
    assert api(engineer).get(url).json() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "poem"}, "kind"),
        ({"kind": "prompt_variant", "variants": 0}, "variants"),
        ({"kind": "correction", "response_ids": [999_999]}, "response_ids"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(project, champion, prompts, engineer, body, field):
    response = api(engineer).post(f"/api/projects/{project.pk}/proposals/", body, format="json")
    assert response.status_code == 400
    assert field in response.json().get("field", response.json())
    assert not GenerationJob.objects.exists()


def test_without_a_champion_nothing_is_proposed(project, candidate, prompts, engineer):
    ModelAlias.objects.filter(project=project).delete()
    response = api(engineer).post(
        f"/api/projects/{project.pk}/proposals/", {"kind": "prompt_variant"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["error"] == "no_champion"
    assert not GenerationJob.objects.exists()


def test_the_versions_page_button_starts_proposals(project, champion, prompts, engineer, client):
    client.force_login(engineer)
    page = client.get(reverse("models:list", args=[project.pk]))
    assert b'data-testid="propose"' in page.content

    response = client.post(
        reverse("models:propose", args=[project.pk]),
        {"kind": "prompt_variant", "variants": "2", "limit": "5"},
        follow=True,
    )

    job = GenerationJob.objects.get()
    assert (job.purpose, job.variants, len(job.prompt_ids)) == ("prompt_variant", 2, 2)
    assert f"Generation job {job.pk} queued" in response.content.decode()


def test_the_button_is_not_offered_to_reviewers(project, champion, reviewer, client):
    client.force_login(reviewer)
    page = client.get(reverse("models:list", args=[project.pk]))
    assert page.status_code == 200
    assert b'data-testid="propose"' not in page.content
    assert client.post(reverse("models:propose", args=[project.pk]), {}).status_code == 403
    assert not Task.objects.filter(kind=TaskKind.CONFIRM).exists()


def test_a_sample_that_repeats_its_source_is_not_proposed(project, champion, prompts, engineer):
    from rlhf.training.generation import GeneratedResponse

    job = proposals.proposal_job_create(
        project=project,
        kind=ProposalKind.PROMPT_VARIANT,
        prompt_ids=[prompts[0].pk],
        variants=2,
        created_by=engineer,
        enqueue=False,
    )
    inputs = proposals.proposal_inputs(job)
    # the instruction: two worked examples, then the request to reword
    assert inputs[0][0][-1] == {"role": "user", "content": "Reword: How do I boil an egg?"}
    assert inputs[0][0][0]["role"] == "system"
    samples = [
        GeneratedResponse(0, "  how do I boil an EGG? ", 5, 5, "eos", [], {"seed": 5}),
        GeneratedResponse(1, "What is the way to boil an egg?", 5, 5, "eos", [], {"seed": 6}),
    ]

    created = proposals.proposals_record(job=job, version=champion, inputs=inputs, samples=samples)

    assert created == 1
    (proposal,) = Proposal.objects.all()
    assert (proposal.text, proposal.generation["seed"]) == ("What is the way to boil an egg?", 6)


# ----------------------------------------------------------------------------- the list page


def proposals_of(project, prompts):
    return annotation_services.proposals_store(
        project=project,
        kind=ProposalKind.PROMPT_VARIANT,
        model_name="policy@v2",
        proposals=[
            {
                "prompt_id": prompts[0].pk,
                "text": text,
                "generation": {"seed": i, "temperature": 0.7},
            }
            for i, text in enumerate(["What is the way to boil an egg?", "Egg boiling: how?"])
        ],
    )


def test_the_proposals_page_lists_each_proposal_beside_its_source_with_its_decision(
    project, prompts, engineer, client
):
    from annotation.models import ProposalStatus

    keep, drop = proposals_of(project, prompts)
    Proposal.objects.filter(pk=drop.pk).update(status=ProposalStatus.REJECTED, decided_by=engineer)
    client.force_login(engineer)
    versions = client.get(reverse("models:list", args=[project.pk]))
    assert reverse("models:proposals", args=[project.pk]) in versions.content.decode()

    page = client.get(reverse("models:proposals", args=[project.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "How do I boil an egg?" in html  # the source
    assert "What is the way to boil an egg?" in html
    assert "Egg boiling: how?" in html
    assert "T 0.7 · seed 0" in html
    assert "2 proposals" in html

    rejected = client.get(reverse("models:proposals", args=[project.pk]), {"status": "rejected"})
    html = rejected.content.decode()
    assert f'data-testid="proposal-{drop.pk}"' in html
    assert f'data-testid="proposal-{keep.pk}"' not in html
    assert engineer.get_username() in html


def test_the_proposals_page_refuses_a_bad_filter_by_name_and_other_projects(
    project, prompts, engineer, client, django_user_model
):
    client.force_login(engineer)
    bad = client.get(reverse("models:proposals", args=[project.pk]), {"status": "maybe"})
    assert bad.status_code == 400
    assert "status:" in bad.content.decode()
    huge = client.get(reverse("models:proposals", args=[project.pk]), {"page": "9" * 40})
    assert huge.status_code == 400
    client.force_login(django_user_model.objects.create_user("stranger", password="x-pass-123"))
    assert client.get(reverse("models:proposals", args=[project.pk])).status_code == 404
