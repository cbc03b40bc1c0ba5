"""Review integrity: evidence comes from the database, defaults that mean something, and nobody
crowns their own run (issue 15, findings 2, 3 and 4)."""

import shutil

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation import services as annotation_services
from annotation.roles import Role
from config.errors import Conflict, ValidationFailed
from models_registry import review_selectors, selectors, services
from models_registry.models import AuditAction, AuditEvent, ModelVersion
from tests.models_registry.conftest import snapshot_and_run

pytestmark = pytest.mark.django_db

FORGED = {
    "wins": 97, "losses": 1, "ties": 0, "review_labels": 98, "win_rate": 0.97,
    "win_rate_ci_95": [0.9, 0.99], "opponent_version": None,
}  # fmt: skip


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


# --------------------------------------------------------------------------- finding 3


def test_a_rejection_cannot_forge_review_figures_in_the_card_or_the_log(
    candidate, base_version, reviewer, add_reviews
):
    # given 1 win and 2 losses for the candidate against the champion
    add_reviews(candidate, base_version, "ABB")
    services.model_version_transition(
        version=candidate, actor=reviewer, to_state="in_review", reason="start"
    )

    # when the reviewer rejects it, sending made-up review figures as evidence
    response = client_for(reviewer).post(
        reverse("api-model-transition", args=[candidate.pk]),
        {"to_state": "rejected", "reason": "worse", "evidence": {"review": FORGED, **FORGED}},
        format="json",
    )

    # then the card and the audit log show the measured figures only
    assert response.status_code == 200, response.content
    card = ModelVersion.objects.get(pk=candidate.pk).model_card
    assert "97 wins" not in card
    assert "1 wins, 2 losses, 0 ties over 3 blind comparisons" in card
    rejection = AuditEvent.objects.filter(version=candidate, to_state="rejected").get()
    review = rejection.evidence["review"]
    assert (review["wins"], review["losses"], review["review_labels"]) == (1, 2, 3)
    assert review["opponent_version"] == base_version.pk
    assert not set(FORGED) & set(rejection.evidence)


def test_an_approval_cannot_forge_review_figures(candidate, base_version, reviewer, add_reviews):
    candidate.project.options = {"review_min_labels": 2}
    candidate.project.save()
    add_reviews(candidate, base_version, "AB")
    services.model_version_transition(
        version=candidate, actor=reviewer, to_state="in_review", reason="start"
    )

    services.model_version_approve(
        version=candidate, actor=reviewer, reason="ok", evidence={"wins": 97, "note": "kept"}
    )

    approval = AuditEvent.objects.filter(version=candidate, to_state="approved").get()
    assert "wins" not in approval.evidence
    assert approval.evidence["note"] == "kept"
    assert approval.evidence["review"]["wins"] == 1
    card = ModelVersion.objects.get(pk=candidate.pk).model_card
    assert "1 wins, 1 losses, 0 ties over 2 blind comparisons" in card


# --------------------------------------------------------------------------- finding 4


def test_by_default_a_candidate_needs_twenty_blind_labels(
    candidate, base_version, reviewer, add_reviews
):
    # given a project with no review settings and 19 clear wins
    candidate.project.options = {}
    candidate.project.save()
    add_reviews(candidate, base_version, "A" * 19)
    services.model_version_transition(
        version=candidate, actor=reviewer, to_state="in_review", reason="start"
    )
    assert review_selectors.review_settings(candidate.project)["review_min_labels"] == 20

    # when the reviewer approves, it is refused and nothing changes
    with pytest.raises(Conflict) as refused:
        services.model_version_approve(version=candidate, actor=reviewer, reason="great")
    assert refused.value.code == "not_enough_reviews"
    candidate.refresh_from_db()
    assert candidate.state == "in_review"

    # and with a twentieth label it is approved, the record carrying the win rate interval
    add_reviews(candidate, base_version, "A")
    services.model_version_approve(version=candidate, actor=reviewer, reason="great")
    approval = AuditEvent.objects.filter(version=candidate, to_state="approved").get()
    review = approval.evidence["review"]
    assert review["review_labels"] == 20
    assert review["win_rate"] == 1.0
    low, high = review["win_rate_ci_95"]
    assert 0.8 < low < high == 1.0
    assert review["interval"] == "Wilson score"
    assert approval.evidence["review"]["thresholds"]["review_min_labels"] == 20


def test_the_decision_page_reports_the_default_threshold_and_the_interval(
    candidate, base_version, reviewer, add_reviews
):
    candidate.project.options = {}
    candidate.project.save()
    add_reviews(candidate, base_version, "AAB")
    evidence = review_selectors.decision_evidence(candidate)
    assert evidence["thresholds"]["review_min_labels"] == 20
    assert evidence["chart"]["ci"] is not None


# --------------------------------------------------------------------------- finding 2


def _run_output(project, launcher, tiny_dir, root):
    """A succeeded run of ``project`` and a copy of a model in its attempt folder."""
    _, run = snapshot_and_run(project, launcher, status="succeeded")
    folder = root / "runs" / str(run.pk) / "attempt-1" / "model"
    shutil.copytree(tiny_dir, folder)
    return run, folder


def test_a_runs_own_output_cannot_be_registered_as_a_base_model(
    project, admin_user, base_version, tiny_candidate_dir, settings, tmp_path
):
    # given a project admin who launched a run, whose model lies in the run's attempt folder
    settings.TANDEM_ARTIFACT_ROOT = tmp_path
    settings.TANDEM_MODEL_ROOTS = [tmp_path]
    _, folder = _run_output(project, admin_user, tiny_candidate_dir, tmp_path)
    before = (ModelVersion.objects.count(), AuditEvent.objects.count())

    # when they register the run's folder (or the run's folder itself) as a base model
    url = reverse("api-model-register-base", args=[project.pk])
    for path in (folder, folder.parent.parent):
        response = client_for(admin_user).post(
            url, {"folder": str(path), "name": "crowned"}, format="json"
        )
        # then it is refused naming the field, and nothing is written
        assert response.status_code == 400, response.content
        body = response.json()
        assert body["error"] == "run_folder"
        assert "folder" in body["fields"]
    assert (ModelVersion.objects.count(), AuditEvent.objects.count()) == before
    # the terminal and the services refuse it as well
    with pytest.raises(ValidationFailed) as refused:
        services.model_version_register_base(
            project=project, registered_by=None, folder=folder, name="crowned"
        )
    assert refused.value.code == "run_folder"
    assert (ModelVersion.objects.count(), AuditEvent.objects.count()) == before


def _unreviewed_approved(version):
    """An approved version that never passed review (as registering a run's folder as a base
    model made one before the fix)."""
    ModelVersion.objects.filter(pk=version.pk).update(state="approved")
    version.refresh_from_db()
    return version


def test_champion_moves_only_to_a_version_that_passed_review(
    candidate, base_version, admin_user, reviewer
):
    # given an approved version that never passed review
    _unreviewed_approved(candidate)
    before = (AuditEvent.objects.count(), selectors.alias_target(project=candidate.project))

    # when an admin moves the champion to it without an override
    response = client_for(admin_user).put(
        reverse("api-model-alias", args=[candidate.project_id, "champion"]),
        {"version_id": candidate.pk, "reason": "trust me"},
        format="json",
    )

    # then it is refused and nothing changes
    assert response.status_code == 409, response.content
    assert response.json()["error"] == "not_reviewed"
    after = (AuditEvent.objects.count(), selectors.alias_target(project=candidate.project))
    assert after == before
    with pytest.raises(Conflict):
        services.alias_set(
            project=candidate.project, name="champion", version=candidate, actor=reviewer,
            reason="x",
        )  # fmt: skip


def test_the_launcher_cannot_override_but_a_second_admin_can_and_it_is_audited(
    candidate, base_version, engineer, admin_user, member
):
    _unreviewed_approved(candidate)
    url = reverse("api-model-alias", args=[candidate.project_id, "champion"])
    project = candidate.project
    body = {"version_id": candidate.pk, "reason": "urgent fix", "override": True}
    # given the launcher is an admin too: their override is refused
    annotation_services.membership_set(project=project, user=engineer, role=Role.ADMIN)
    refused = client_for(engineer).put(url, body, format="json")
    assert refused.status_code == 403, refused.content
    assert refused.json()["error"] == "own_run"
    assert selectors.alias_target(project=project) == base_version
    # a reviewer (not an admin) cannot override
    reviewer = member(Role.REVIEWER, "rory-reviewer")
    assert client_for(reviewer).put(url, body, format="json").status_code == 403
    assert selectors.alias_target(project=project) == base_version

    # when a second admin overrides with a reason
    moved = client_for(admin_user).put(url, body, format="json")

    # then the champion moves and the audit log says it was an unreviewed override
    assert moved.status_code == 200, moved.content
    assert selectors.alias_target(project=project) == candidate
    event = AuditEvent.objects.filter(project=project).order_by("-id").first()
    assert (event.action, event.alias, event.actor, event.reason) == (
        AuditAction.ALIAS_SET,
        "champion",
        admin_user,
        "urgent fix",
    )
    assert event.evidence["override"] == {"reviewed": False, "by": admin_user.get_username()}


def test_an_approved_review_still_moves_the_champion_without_override(
    candidate, base_version, reviewer
):
    services.model_version_transition(version=candidate, actor=reviewer, to_state="in_review")
    services.model_version_approve(version=candidate, actor=reviewer, reason="ok")
    assert selectors.alias_target(project=candidate.project) == candidate
    services.alias_rollback(
        project=candidate.project, name="champion", actor=reviewer, reason="regression"
    )
    services.alias_set(
        project=candidate.project, name="champion", version=candidate, actor=reviewer,
        reason="fixed",
    )  # fmt: skip
    assert selectors.alias_target(project=candidate.project) == candidate
