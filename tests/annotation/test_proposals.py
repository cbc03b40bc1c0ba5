"""Model-proposed data and the ``confirm`` task kind: a proposal enters the pool only when a
person confirms (or edits) it, with its lineage; a rejection leaves the pool as it was."""

import pytest

from annotation import services
from annotation.models import (
    Label,
    Prompt,
    Proposal,
    ProposalKind,
    ProposalStatus,
    Response,
    ResponseOrigin,
    Task,
    TaskKind,
    TaskStatus,
)

pytestmark = pytest.mark.django_db

GENERATION = {"temperature": 0.9, "top_p": 0.95, "seed": 7, "model_version_id": 42}


@pytest.fixture
def source(project):
    return Prompt.objects.create(
        project=project,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "How do I boil an egg?"},
        ],
        content_hash="source-1",
    )


def propose_variant(project, source, text="What is the way to boil an egg?"):
    (proposal,) = services.proposals_store(
        project=project,
        kind=ProposalKind.PROMPT_VARIANT,
        model_name="policy@v3",
        proposals=[{"prompt_id": source.pk, "text": text, "generation": GENERATION}],
    )
    return proposal


def propose_correction(project, make_task):
    task = make_task(TaskKind.PAIRWISE, responses=["Boil it for ten minutes.", "Eggs? No."])
    rejected = task.items.get(position=1).response
    (proposal,) = services.proposals_store(
        project=project,
        kind=ProposalKind.CORRECTION,
        model_name="policy@v3",
        proposals=[
            {
                "prompt_id": task.prompt_id,
                "response_id": rejected.pk,
                "text": "Put the egg in boiling water for nine minutes.",
                "generation": GENERATION,
            }
        ],
    )
    return proposal, rejected


def claim(client, project):
    response = client.post(f"/api/projects/{project.pk}/tasks/next/", {}, format="json")
    assert response.status_code == 200
    return response.json()


def test_storing_proposals_makes_one_confirm_task_each_and_never_twice(project, source):
    first = propose_variant(project, source)
    again = propose_variant(project, source)  # a retried job finds the same proposal

    assert again.pk == first.pk
    assert Proposal.objects.count() == 1
    task = Task.objects.get(kind=TaskKind.CONFIRM)
    assert (task.prompt_id, task.required_labels, task.status) == (source.pk, 1, TaskStatus.OPEN)
    assert first.task_id == task.pk
    assert first.status == ProposalStatus.PROPOSED
    # nothing has entered the pool yet
    assert Prompt.objects.filter(project=project).count() == 1


def test_the_annotator_sees_the_proposal_but_not_who_proposed_it(
    project, source, annotator, client_for
):
    propose_variant(project, source)
    shown = claim(client_for(annotator), project)

    assert shown["kind"] == "confirm"
    assert shown["proposal"]["kind"] == "prompt_variant"
    assert shown["proposal"]["text"] == "What is the way to boil an egg?"
    assert "policy@v3" not in str(shown)
    assert "42" not in str(shown["proposal"])


def test_confirming_a_variant_adds_a_prompt_with_its_lineage(
    project, source, annotator, client_for
):
    proposal = propose_variant(project, source)
    client = client_for(annotator)
    shown = claim(client, project)

    url = f"/api/tasks/{shown['task_id']}/labels/"
    response = client.post(url, {"payload": {"decision": "confirm"}}, format="json")

    assert response.status_code == 201
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.CONFIRMED
    assert proposal.decided_by == annotator
    variant = proposal.result_prompt
    assert variant.source_prompt == source
    # the last user turn is the variant; the system turn stays
    assert variant.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the way to boil an egg?"},
    ]
    assert variant.metadata["lineage"] == {
        "proposal_id": proposal.pk,
        "model_version_id": 42,
        "confirmed_by": annotator.pk,
        "decision": "confirm",
    }
    label = Label.objects.get(task_id=proposal.task_id)
    assert label.payload["decision"] == "confirm"
    assert label.payload["final_text"] == "What is the way to boil an egg?"


def test_a_variant_of_a_variant_points_at_the_original(project, source, annotator, client_for):
    first = propose_variant(project, source)
    client = client_for(annotator)
    client.post(
        f"/api/tasks/{claim(client, project)['task_id']}/labels/",
        {"payload": {"decision": "confirm"}},
        format="json",
    )
    first.refresh_from_db()
    second = propose_variant(project, first.result_prompt, text="Egg boiling: how?")
    client.post(
        f"/api/tasks/{claim(client, project)['task_id']}/labels/",
        {"payload": {"decision": "confirm"}},
        format="json",
    )
    second.refresh_from_db()
    assert second.result_prompt.source_prompt == source


def test_editing_a_correction_stores_the_person_s_text_as_a_human_response(
    project, make_task, annotator, client_for
):
    proposal, rejected = propose_correction(project, make_task)
    client = client_for(annotator)
    # the pairwise task comes first (older); skip it to reach the confirm task
    pair = claim(client, project)
    client.post(f"/api/tasks/{pair['task_id']}/skip/", {"reason": ""}, format="json")
    shown = claim(client, project)
    assert shown["kind"] == "confirm"
    assert [r["text"] for r in shown["responses"]] == ["Eggs? No."]

    response = client.post(
        f"/api/tasks/{shown['task_id']}/labels/",
        {"payload": {"decision": "edit", "text": "Simmer the egg for nine minutes."}},
        format="json",
    )

    assert response.status_code == 201
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.EDITED
    assert proposal.final_text == "Simmer the egg for nine minutes."
    correction = proposal.result_response
    assert (correction.text, correction.origin) == (
        "Simmer the egg for nine minutes.",
        ResponseOrigin.HUMAN,
    )
    assert correction.prompt_id == rejected.prompt_id
    assert correction.generation["corrects_response_id"] == rejected.pk
    assert correction.generation["model_version_id"] == 42
    payload = Label.objects.get(task_id=proposal.task_id).payload
    # the label reads as a correction of the rejected answer in snapshots
    assert payload["response_id"] == rejected.pk
    assert payload["original_text"] == "Eggs? No."
    assert payload["corrected_text"] == "Simmer the egg for nine minutes."
    assert payload["edit_distance"] > 0


def test_rejecting_a_proposal_adds_nothing_to_the_pool(project, source, annotator, client_for):
    proposal = propose_variant(project, source)
    prompts_before = set(Prompt.objects.values_list("pk", flat=True))
    responses_before = Response.objects.count()
    client = client_for(annotator)

    response = client.post(
        f"/api/tasks/{claim(client, project)['task_id']}/labels/",
        {"payload": {"decision": "reject"}},
        format="json",
    )

    assert response.status_code == 201
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.REJECTED
    assert (proposal.result_prompt, proposal.result_response, proposal.final_text) == (
        None,
        None,
        "",
    )
    assert set(Prompt.objects.values_list("pk", flat=True)) == prompts_before
    assert Response.objects.count() == responses_before


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"decision": "maybe"}, "decision"), ({"decision": "edit", "text": "  "}, "text")],
)
def test_a_bad_decision_is_a_400_naming_its_field_and_changes_nothing(
    project, source, annotator, client_for, payload, field
):
    proposal = propose_variant(project, source)
    client = client_for(annotator)
    shown = claim(client, project)

    response = client.post(
        f"/api/tasks/{shown['task_id']}/labels/", {"payload": payload}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["field"] == field
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.PROPOSED
    assert not Label.objects.exists()
    assert Prompt.objects.count() == 1


def test_an_edit_that_changes_nothing_is_a_confirmation(project, source, annotator, client_for):
    proposal = propose_variant(project, source)
    client = client_for(annotator)
    client.post(
        f"/api/tasks/{claim(client, project)['task_id']}/labels/",
        {"payload": {"decision": "edit", "text": proposal.text}},
        format="json",
    )
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.CONFIRMED


def test_a_decision_cannot_be_edited_afterwards(project, source, annotator, client_for):
    proposal = propose_variant(project, source)
    client = client_for(annotator)
    label_id = client.post(
        f"/api/tasks/{claim(client, project)['task_id']}/labels/",
        {"payload": {"decision": "reject"}},
        format="json",
    ).json()["id"]

    response = client.patch(
        f"/api/labels/{label_id}/", {"payload": {"decision": "confirm"}}, format="json"
    )

    assert response.status_code == 409
    assert response.json()["error"] == "proposal_decided"
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.REJECTED
    assert Label.objects.get(pk=label_id).payload["decision"] == "reject"


def test_a_decision_cannot_be_undone(project, source, annotator, client_for):
    # given a confirmed variant, already in the pool as a prompt
    proposal = propose_variant(project, source)
    client = client_for(annotator)
    ref = claim(client, project)["task_id"]
    stored = client.post(
        f"/api/tasks/{ref}/labels/", {"payload": {"decision": "confirm"}}, format="json"
    )
    assert stored.status_code == 201
    prompts = Prompt.objects.filter(project=project).count()

    # when its author tries to undo it within the undo window
    response = client.post(f"/api/tasks/{ref}/undo/", format="json")

    # then it is refused and the decision, its label and the new prompt all stay
    assert response.status_code == 409
    assert response.json()["error"] == "proposal_decided"
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.CONFIRMED
    assert Label.objects.filter(task__proposal=proposal).count() == 1
    assert Prompt.objects.filter(project=project).count() == prompts


def test_confirm_tasks_cannot_be_imported_or_created_by_hand(project):
    from config.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        services.task_create(
            project=project,
            messages=[{"role": "user", "content": "q"}],
            kind=TaskKind.CONFIRM,
            responses=[{"text": "a"}],
        )
    assert "confirm" not in project.task_kinds


def test_quality_metrics_refresh_with_decisions_among_the_labels(
    project, source, annotator, client_for
):
    from annotation.quality.services.refresh import quality_recompute

    propose_variant(project, source)
    client = client_for(annotator)
    client.post(
        f"/api/tasks/{claim(client, project)['task_id']}/labels/",
        {"payload": {"decision": "confirm"}},
        format="json",
    )
    result = quality_recompute(project_id=project.pk)
    assert result.tasks == 1  # the confirm task's label is counted, and nothing raised


def test_retention_may_delete_a_source_prompt_and_its_variant_keeps_its_text(
    project, source, annotator, client_for
):
    proposal = propose_variant(project, source)
    client = client_for(annotator)
    client.post(
        f"/api/tasks/{claim(client, project)['task_id']}/labels/",
        {"payload": {"decision": "confirm"}},
        format="json",
    )
    proposal.refresh_from_db()
    variant = proposal.result_prompt
    Task.objects.filter(prompt=source).delete()
    source.delete()
    variant.refresh_from_db()
    assert variant.source_prompt is None
    assert variant.messages[-1]["content"] == "What is the way to boil an egg?"


def test_the_my_label_page_offers_no_edit_of_a_decision(
    project, source, annotator, client_for, client
):
    propose_variant(project, source)
    api = client_for(annotator)
    label_id = api.post(
        f"/api/tasks/{claim(api, project)['task_id']}/labels/",
        {"payload": {"decision": "confirm"}},
        format="json",
    ).json()["id"]
    client.force_login(annotator)
    page = client.get(f"/labels/{label_id}/").content.decode()
    assert "a decision on a model's proposal is final" in page
    assert 'data-editable="0"' in page
    assert 'data-testid="save-edit"' not in page
