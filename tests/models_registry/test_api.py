"""Registry API: roles decide who may read, register, decide and move aliases."""

import shutil

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.roles import Role
from models_registry import selectors, services
from models_registry.models import AuditEvent, ModelAlias, ModelVersion, VersionKind
from tests.models_registry.conftest import snapshot_and_run

pytestmark = pytest.mark.django_db


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_reviewers_list_versions_and_annotators_cannot(candidate, reviewer, annotator):
    url = reverse("api-models", args=[candidate.project_id])
    listed = client_for(reviewer).get(url)
    assert listed.status_code == 200
    assert [(v["label"], v["state"], v["aliases"]) for v in listed.json()] == [
        ("tiny-base v1", "approved", ["champion"]),
        ("tiny-dpo v1", "candidate", []),
    ]
    assert client_for(annotator).get(url).status_code == 403


def test_a_version_of_another_project_is_not_found(candidate, member, other_project):
    outsider = member(Role.ADMIN, "olga", target=other_project)
    response = client_for(outsider).get(reverse("api-model", args=[candidate.pk]))
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "Not found."}


def test_detail_shows_artifacts_lineage_and_card(candidate, base_version, reviewer):
    body = client_for(reviewer).get(reverse("api-model", args=[candidate.pk])).json()
    assert body["ancestors"] == [{"id": base_version.pk, "label": "tiny-base v1"}]
    assert {a["path"] for a in body["artifacts"]} >= {"model.safetensors", "tokenizer.json"}
    assert body["model_card"].startswith("# tiny-dpo v1")
    assert body["review"]["review_labels"] == 0


def test_registering_from_a_folder_outside_the_model_roots_is_refused(
    project, admin_user, tiny_base_dir, settings, tmp_path
):
    settings.TANDEM_MODEL_ROOTS = [tmp_path / "nowhere"]
    response = client_for(admin_user).post(
        reverse("api-model-register-base", args=[project.pk]),
        {"folder": str(tiny_base_dir), "name": "tiny"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "folder_not_allowed"
    assert not ModelVersion.objects.filter(project=project).exists()


def test_an_admin_registers_a_base_model_inside_the_roots(
    project, admin_user, tiny_base_dir, settings
):
    settings.TANDEM_MODEL_ROOTS = [tiny_base_dir.parent]
    response = client_for(admin_user).post(
        reverse("api-model-register-base", args=[project.pk]),
        {"folder": str(tiny_base_dir), "name": "tiny"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["aliases"] == ["champion"]
    # a base model from a model root (not a run's folder) is approved on registration
    assert response.json()["state"] == "approved"


def test_an_engineer_cannot_register_a_base_model_and_nothing_changes(
    project, engineer, tiny_base_dir, settings
):
    # given an engineer (trains, registers candidates) and a folder inside the roots
    settings.TANDEM_MODEL_ROOTS = [tiny_base_dir.parent]
    # when they register it as a base model
    response = client_for(engineer).post(
        reverse("api-model-register-base", args=[project.pk]),
        {"folder": str(tiny_base_dir), "name": "tiny"},
        format="json",
    )
    # then the gate refuses (base models may become champion unreviewed) and nothing is written
    assert response.status_code == 403
    assert not ModelVersion.objects.filter(project=project).exists()
    assert not ModelAlias.objects.filter(project=project).exists()
    assert not AuditEvent.objects.filter(project=project).exists()


def test_the_review_cycle_over_the_api(candidate, base_version, engineer, reviewer, add_reviews):
    add_reviews(candidate, base_version, "AAAB")
    transition = reverse("api-model-transition", args=[candidate.pk])
    # the engineer puts it up for review but cannot approve it
    assert (
        client_for(engineer)
        .post(transition, {"to_state": "in_review", "reason": "ready"}, format="json")
        .status_code
        == 200
    )
    refused = client_for(engineer).post(
        transition, {"to_state": "approved", "reason": "mine"}, format="json"
    )
    assert refused.status_code == 403
    # the reviewer approves with a rationale; the champion moves
    approved = client_for(reviewer).post(
        transition, {"to_state": "approved", "reason": "3 of 4"}, format="json"
    )
    assert approved.status_code == 200
    assert approved.json()["state"] == "approved"
    assert selectors.alias_target(project=candidate.project) == candidate
    # and a rollback puts the base model back
    rollback = client_for(reviewer).post(
        reverse("api-model-alias-rollback", args=[candidate.project_id, "champion"]),
        {"reason": "regression found"},
        format="json",
    )
    assert rollback.status_code == 200
    assert rollback.json()["version"] == base_version.pk
    actions = list(
        AuditEvent.objects.filter(project=candidate.project)
        .order_by("id")
        .values_list("action", "to_state", "alias")
    )
    assert actions[-4:] == [
        ("transition", "in_review", ""),
        ("transition", "approved", ""),
        ("alias_set", "", "champion"),
        ("rollback", "", "champion"),
    ]


def test_skipping_review_over_the_api_is_a_conflict_that_changes_nothing(candidate, reviewer):
    response = client_for(reviewer).post(
        reverse("api-model-transition", args=[candidate.pk]),
        {"to_state": "approved", "reason": "skip"},
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["error"] == "invalid_transition"
    candidate.refresh_from_db()
    assert candidate.state == "candidate"


def test_leaderboard_endpoint(candidate, base_version, reviewer, add_reviews):
    add_reviews(candidate, base_version, "AAAAB")
    rows = (
        client_for(reviewer)
        .get(reverse("api-model-leaderboard", args=[candidate.project_id]))
        .json()
    )
    assert [(r["rank"], r["label"], r["wins"], r["losses"]) for r in rows] == [
        (1, "tiny-dpo v1", 4, 1),
        (2, "tiny-base v1", 1, 4),
    ]
    assert rows[0]["ci_low"] < rows[0]["strength"] < rows[0]["ci_high"]


def test_a_versions_audit_trail_includes_alias_moves_away_from_it(
    candidate, base_version, reviewer
):
    from models_registry import services

    services.model_version_transition(version=candidate, actor=reviewer, to_state="in_review")
    services.model_version_approve(version=candidate, actor=reviewer, reason="better")
    events = client_for(reviewer).get(reverse("api-model-version-audit", args=[base_version.pk]))
    assert [(e["action"], e["alias"]) for e in events.json()] == [
        ("registered", ""),
        ("alias_set", "champion"),  # became champion
        ("alias_set", "champion"),  # champion moved to the candidate (previous_version = base)
    ]


def test_registering_another_projects_run_folder_is_refused(
    project, other_project, engineer, tiny_candidate_dir, settings, tmp_path
):
    # given two runs' model folders under the artifact root (a model root), one per project
    settings.TANDEM_ARTIFACT_ROOT = tmp_path
    settings.TANDEM_MODEL_ROOTS = [tmp_path]
    folders = {}
    for owner in (project, other_project):
        _, run = snapshot_and_run(owner, engineer)
        folders[owner.pk] = tmp_path / "runs" / str(run.pk) / "attempt-1" / "model"
        shutil.copytree(tiny_candidate_dir, folders[owner.pk])
    url = reverse("api-model-register", args=[project.pk])
    # when an engineer of the first project registers the other project's run
    response = client_for(engineer).post(
        url, {"folder": str(folders[other_project.pk]), "name": "borrowed"}, format="json"
    )
    # then it is refused and nothing is registered
    assert response.status_code == 400
    assert response.json()["error"] == "folder_not_allowed"
    assert response.json()["detail"].endswith(": belongs to a run of another project")
    assert not ModelVersion.objects.filter(name="borrowed").exists()
    # while a folder of the project's own run registers
    own = client_for(engineer).post(
        url, {"folder": str(folders[project.pk]), "name": "own"}, format="json"
    )
    assert own.status_code == 201


def test_registering_with_another_projects_run_or_snapshot_id_is_refused_naming_the_field(
    project, other_project, engineer, tiny_candidate_dir, settings
):
    # given a run and a snapshot of another project, and ones of this project
    settings.TANDEM_MODEL_ROOTS = [tiny_candidate_dir.parent]
    own_snapshot, own_run = snapshot_and_run(project, engineer)
    foreign_snapshot, foreign_run = snapshot_and_run(other_project, engineer)
    url = reverse("api-model-register", args=[project.pk])
    body = {"folder": str(tiny_candidate_dir), "name": "borrowed"}
    # when an engineer registers a folder naming the other project's run, or its snapshot
    for field, foreign_id in (
        ("training_run_ref", foreign_run.pk),
        ("dataset_snapshot_ref", foreign_snapshot.pk),
        ("training_run_ref", 10**9),  # or an id that names nothing
    ):
        response = client_for(engineer).post(url, {**body, field: foreign_id}, format="json")
        # then it is refused, naming the field, and nothing is registered
        assert response.status_code == 400, response.content
        assert response.json()["fields"] == {field: "not one of this project's"}
        assert field in response.json()["detail"]
    assert not ModelVersion.objects.filter(name="borrowed").exists()
    # while the project's own run and snapshot are recorded as the version's origin
    response = client_for(engineer).post(
        url,
        {**body, "training_run_ref": own_run.pk, "dataset_snapshot_ref": own_snapshot.pk},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert (response.json()["training_run_ref"], response.json()["dataset_snapshot_ref"]) == (
        own_run.pk,
        own_snapshot.pk,
    )
    version = ModelVersion.objects.get(name="borrowed")
    assert (version.training_run, version.dataset_snapshot) == (own_run, own_snapshot)


def test_approving_a_reward_model_without_held_out_accuracy_needs_without_evaluation(
    project, engineer, reviewer, tiny_reward_dir
):
    reward = services.model_version_register(
        project=project, folder=tiny_reward_dir, name="tiny-rm", kind=VersionKind.REWARD,
        registered_by=engineer, launched_by=engineer,
    )  # fmt: skip
    transition = reverse("api-model-transition", args=[reward.pk])
    client_for(engineer).post(transition, {"to_state": "in_review"}, format="json")
    refused = client_for(reviewer).post(
        transition, {"to_state": "approved", "reason": "ok"}, format="json"
    )
    assert refused.status_code == 409
    assert (refused.json()["error"], refused.json()["evaluation"]) == (
        "evaluation_not_finished",
        "missing",
    )
    reward.refresh_from_db()
    assert reward.state == "in_review"
    approved = client_for(reviewer).post(
        transition,
        {"to_state": "approved", "reason": "ok", "without_evaluation": True},
        format="json",
    )
    assert approved.status_code == 200
    assert approved.json()["state"] == "approved"
