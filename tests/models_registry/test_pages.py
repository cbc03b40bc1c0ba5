"""The registry pages: versions, lineage, and the reviewer's decision page."""

import pytest
from django.test import Client

from annotation import services as annotation_services
from annotation.models import Task
from models_registry import selectors, services
from models_registry.models import (
    AuditEvent,
    LoopRound,
    ModelAlias,
    RoundKind,
    RoundStatus,
    TrainingRunVersions,
    VersionKind,
)
from rlhf.models import DatasetSnapshot, SnapshotStatus, TrainingRun

pytestmark = pytest.mark.django_db

HOSTILE = "<script>alert('pair')</script><img src=x onerror=alert(1)>"


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def in_review(candidate, engineer):
    return services.model_version_transition(
        version=candidate, actor=engineer, to_state="in_review", reason="ready"
    )


@pytest.fixture
def review_round(project, in_review, base_version, add_reviews):
    """Three blind reviews (candidate wins two) recorded as the candidate's review round."""
    add_reviews(in_review, base_version, "AAB")
    task_ids = list(
        Task.objects.filter(project=project).order_by("id").values_list("pk", flat=True)
    )
    return LoopRound.objects.create(
        project=project, kind=RoundKind.REVIEW, version=in_review, opponent=base_version,
        status=RoundStatus.READY, task_ids=task_ids,
        evaluation={
            "reward_model": None,
            "candidate": {"reward_mean": 0.25, "kl_to_parent": 0.125,
                          "lengths": {"mean": 10.0, "p90": 12.0, "truncated_share": 0.0},
                          "shown_lengths": {"chars_mean": 40.0}},
            "champion": {"reward_mean": -0.5,
                         "lengths": {"mean": 8.0, "p90": 9.0, "truncated_share": 0.0},
                         "shown_lengths": {"chars_mean": 30.0}},
        },
    )  # fmt: skip


def _state(version):
    version.refresh_from_db()
    alias = ModelAlias.objects.get(project=version.project, name="champion")
    return version.state, alias.version_id, AuditEvent.objects.count()


def test_an_annotator_gets_403_and_an_outsider_404_on_the_decision_page(
    in_review, annotator, make_user
):
    assert page_client(annotator).get(f"/models/{in_review.pk}/review/").status_code == 403
    assert page_client(annotator).get(f"/models/{in_review.pk}/").status_code == 403
    outsider = make_user("olga-outsider")
    assert page_client(outsider).get(f"/models/{in_review.pk}/review/").status_code == 404
    # and an annotator's POST changes nothing
    before = _state(in_review)
    response = page_client(annotator).post(
        f"/models/{in_review.pk}/review/", {"decision": "approve", "rationale": "x"}
    )
    assert response.status_code == 403
    assert _state(in_review) == before


def test_the_decision_page_shows_the_evidence_with_model_text_escaped(
    project, review_round, reviewer, base_version
):
    project.options = {"review_min_labels": 3, "review_min_win_rate": 0.55}
    project.save()
    candidate = review_round.version
    task = Task.objects.get(pk=review_round.task_ids[0])
    item = task.items.select_related("response").first()
    item.response.text = HOSTILE
    item.response.save()

    html = page_client(reviewer).get(f"/models/{candidate.pk}/review/").content.decode()

    assert 'data-testid="win-rate-value">0.667<' in html  # 2 wins, 1 loss
    assert f'data-testid="leaderboard-row-{candidate.pk}"' in html
    assert f'data-testid="leaderboard-row-{base_version.pk}"' in html
    assert f'data-testid="pair-{task.pk}"' in html
    assert "Minimum review labels: 3" in html
    assert "Minimum win rate: 0.55" in html
    assert "<td>0.25</td>" in html
    assert '<td data-testid="kl-candidate">0.1250</td>' in html
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(&#x27;pair&#x27;)&lt;/script&gt;" in html
    assert 'data-chart="{&quot;wins&quot;: 2, &quot;ties&quot;: 0, &quot;losses&quot;: 1' in html


def test_the_decision_page_shows_no_pair_still_open_to_labellers(
    project, review_round, reviewer, base_version
):
    # given a review round with one more task, still open: a reviewer may annotate it
    candidate = review_round.version
    open_task, _ = annotation_services.task_create(
        project=project,
        messages=[{"role": "user", "content": "still open?"}],
        kind="pairwise",
        responses=[
            {"text": f"open answer by {v.response_model_name}", "origin": "model",
             "model_name": v.response_model_name}
            for v in (candidate, base_version)
        ],
    )  # fmt: skip
    LoopRound.objects.filter(pk=review_round.pk).update(
        task_ids=[open_task.pk, *review_round.task_ids]
    )
    # when the reviewer opens the decision page
    html = page_client(reviewer).get(f"/models/{candidate.pk}/review/").content.decode()
    # then the finished pairs are shown with their sides, the open one is not
    for task_id in review_round.task_ids:
        assert f'data-testid="pair-{task_id}"' in html
    assert f'data-testid="pair-{open_task.pk}"' not in html
    assert "open answer by" not in html


def test_the_launcher_cannot_approve_and_nothing_changes(project, review_round, member):
    # given a reviewer who launched the candidate's training run
    candidate = review_round.version
    launcher = member("reviewer", "lena-launcher")
    type(candidate).objects.filter(pk=candidate.pk).update(launched_by=launcher)
    before = _state(candidate)
    # when they approve on the decision page
    client = page_client(launcher)
    assert (
        "You launched the training run"
        in client.get(f"/models/{candidate.pk}/review/").content.decode()
    )
    response = client.post(
        f"/models/{candidate.pk}/review/",
        {"decision": "approve", "rationale": "looks good"},
        follow=True,
    )
    # then the refusal is shown and the state, champion and audit log are unchanged
    assert "own_run" in response.content.decode()
    assert _state(candidate) == before


@pytest.mark.parametrize(
    ("options", "rationale", "code"),
    [
        ({"review_min_labels": 5}, "enough", "not_enough_reviews"),
        ({"review_min_labels": 0, "review_min_win_rate": 0.8}, "enough", "win_rate_too_low"),
        ({"review_min_labels": 0}, "   ", "rationale_required"),
    ],
)
def test_refused_approvals_show_the_reason_and_change_nothing(
    project, review_round, reviewer, options, rationale, code
):
    project.options = options
    project.save()
    candidate = review_round.version
    before = _state(candidate)
    response = page_client(reviewer).post(
        f"/models/{candidate.pk}/review/",
        {"decision": "approve", "rationale": rationale},
        follow=True,
    )
    assert code in response.content.decode()
    assert _state(candidate) == before
    assert not LoopRound.objects.filter(kind=RoundKind.ANNOTATION).exists()


def test_a_reviewer_rejects_with_a_rationale_and_the_champion_stays(
    project, review_round, reviewer, base_version
):
    candidate = review_round.version
    events = AuditEvent.objects.count()
    response = page_client(reviewer).post(
        f"/models/{candidate.pk}/review/", {"decision": "reject", "rationale": "too verbose"}
    )
    assert response.status_code == 302
    candidate.refresh_from_db()
    assert candidate.state == "rejected"
    assert selectors.alias_target(project=project) == base_version
    assert AuditEvent.objects.count() == events + 1
    assert AuditEvent.objects.order_by("-id").first().reason == "too verbose"


def test_the_lineage_page_links_snapshot_run_version_rounds_and_decisions(
    project, engineer, reviewer, base_version, tiny_candidate_dir
):
    # given a snapshot, a run on it, and the version the run registered
    snapshot = DatasetSnapshot.objects.create(
        project=project, name="labels", status=SnapshotStatus.READY, max_label_id=0, config={},
        data_card="# Data card\n\n40 pairs",
    )  # fmt: skip
    run = TrainingRun.objects.create(
        project=project, name="dpo", method="dpo", method_title="DPO", config={},
        dataset_snapshot=snapshot, data_path="/nowhere", created_by=engineer,
    )  # fmt: skip
    version = services.model_version_register(
        project=project, folder=tiny_candidate_dir, name="tiny-dpo", kind=VersionKind.POLICY,
        parent=base_version, training_run=run, dataset_snapshot=snapshot,
        launched_by=engineer,
    )  # fmt: skip
    loop_round = LoopRound.objects.create(
        project=project, kind=RoundKind.REVIEW, version=version, opponent=base_version
    )
    # when a reviewer opens its lineage page
    html = page_client(reviewer).get(f"/models/{version.pk}/").content.decode()
    # then every step links to its page, and the parent's page links back to the child
    assert f'href="/data/snapshots/{snapshot.pk}/"' in html
    assert f'href="/runs/{run.pk}/"' in html
    assert f'href="/models/{base_version.pk}/"' in html
    assert f'data-testid="round-{loop_round.pk}"' in html
    assert "<h1>Data card</h1>" in html
    parent_html = page_client(reviewer).get(f"/models/{base_version.pk}/").content.decode()
    assert f'href="/models/{version.pk}/"' in parent_html
    # and the run and snapshot pages link forward to the version
    TrainingRunVersions.objects.create(run=run, candidate_version=version)
    run_html = page_client(reviewer).get(f"/runs/{run.pk}/").content.decode()
    assert f'href="/models/{version.pk}/"' in run_html
    assert f'href="/data/snapshots/{snapshot.pk}/"' in run_html
    snapshot_html = page_client(reviewer).get(f"/data/snapshots/{snapshot.pk}/").content.decode()
    assert f'href="/runs/{run.pk}/"' in snapshot_html
    assert f'href="/models/{version.pk}/"' in snapshot_html
    # and the project's version list links to both
    listing = page_client(reviewer).get(f"/models/projects/{project.pk}/").content.decode()
    assert f'href="/models/{version.pk}/"' in listing
    assert f'href="/models/{base_version.pk}/"' in listing


def test_home_links_to_the_model_versions(project, reviewer, annotator):
    assert (
        f'href="/models/projects/{project.pk}/"' in page_client(reviewer).get("/").content.decode()
    )
    assert "/models/projects/" not in page_client(annotator).get("/").content.decode()


def test_an_admin_sets_the_review_thresholds_on_the_manage_page_and_the_api_reads_them(
    project, admin_user, reviewer
):
    response = page_client(admin_user).post(
        f"/projects/{project.pk}/manage/",
        {"action": "review", "review_min_labels": "30", "review_min_win_rate": "0.55",
         "review_fresh_prompts": "8", "annotation_round_prompts": ""},
    )  # fmt: skip
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.options == {
        "review_min_labels": 30, "review_min_win_rate": 0.55, "review_fresh_prompts": 8
    }  # fmt: skip
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(reviewer)
    body = api.get(f"/api/projects/{project.pk}/models/review-settings/").json()
    assert (body["review_min_labels"], body["review_min_win_rate"]) == (30, 0.55)
    # a reviewer cannot change them, and a bad value changes nothing
    refused = api.patch(
        f"/api/projects/{project.pk}/models/review-settings/",
        {"review_min_labels": 1},
        format="json",
    )
    assert refused.status_code == 403
    admin_api = APIClient()
    admin_api.force_authenticate(admin_user)
    bad = admin_api.patch(
        f"/api/projects/{project.pk}/models/review-settings/",
        {"review_min_win_rate": 1.5},
        format="json",
    )
    assert bad.status_code == 400
    project.refresh_from_db()
    assert project.options["review_min_win_rate"] == 0.55


def test_the_decision_page_shows_a_reward_models_length_and_position_probes(in_review, reviewer):
    # given a version whose training recorded the audit's probes on its test split
    from rlhf.data.audit import reward_probes

    chosen = ["a" * 30, "a" * 10, "a" * 25]
    rejected = ["a" * 20, "a" * 15, "a" * 5]
    probes = reward_probes([3.0, 1.0, 2.0], [2.0, 0.5, 0.0], chosen, rejected,
                           ["left", "right", "left"])  # fmt: skip
    in_review.metrics = {**in_review.metrics, "test": {"accuracy": 1.0, "bias_probes": probes}}
    in_review.save(update_fields=["metrics"])

    html = page_client(reviewer).get(f"/models/{in_review.pk}/review/").content.decode()

    # then one row for the split: 2 of 2 right where chosen is longer, 1 of 1 where shorter
    assert 'data-testid="bias-probes-test"' in html
    row = html.split('data-testid="bias-probes-test"')[1].split("</tr>")[0]
    assert "<td>3</td>" in row
    assert "1.000 <span" in row
    assert "n 2)" in row
    assert "n 1)" in row
    assert "(n 2 / 1)" in row
    # a version without probes shows no table
    in_review.metrics = {"reward_mean": 0.42}
    in_review.save(update_fields=["metrics"])
    html = page_client(reviewer).get(f"/models/{in_review.pk}/review/").content.decode()
    assert "bias-probes" not in html


def test_a_negative_kl_estimate_is_shown_as_zero_with_the_estimate_and_a_note(
    project, review_round, reviewer
):
    # given an evaluation whose KL estimate fell below zero
    evaluation = review_round.evaluation
    evaluation["candidate"]["kl_to_parent"] = -0.0213
    LoopRound.objects.filter(pk=review_round.pk).update(evaluation=evaluation)
    html = page_client(reviewer).get(f"/models/{review_round.version.pk}/review/").content.decode()
    # then the cell shows 0 with the raw estimate, and the note explains why
    cell = html.split('data-testid="kl-candidate">')[1].split("</td>")[0]
    assert cell == '0.0000* <span class="muted">(estimate -0.0213)</span>'
    assert 'data-testid="kl-note"' in html
    # training metrics are a table of dotted names, never a printed dict
    table = html.split('data-testid="training-metrics"')[1].split("</table>")[0]
    assert "<th>reward_mean</th><td>0.42</td>" in table
    assert "{" not in table
