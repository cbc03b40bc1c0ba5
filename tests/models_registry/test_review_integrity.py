"""Review integrity: evidence comes from the database, defaults that mean something, and nobody
crowns their own run (issue 15, findings 2, 3 and 4)."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from config.errors import Conflict
from models_registry import review_selectors, services
from models_registry.models import AuditEvent, ModelVersion

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
