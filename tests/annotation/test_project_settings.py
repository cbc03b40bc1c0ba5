"""The annotation lead's settings: one service behind the API and the manage page."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import services
from annotation.models import Label, Project
from annotation.quality.aggregation import DEFAULT_MIN_AGREEMENT
from config.errors import Conflict, ValidationFailed

pytestmark = pytest.mark.django_db


def test_defaults_are_what_the_engines_use_without_settings(project):
    assert services.project_settings(project) == {
        "quality": {"gold_rate": 0.05, "gold_threshold": 0.7, "gold_min_answers": 5},
        "aggregation": {
            "policy": "majority",
            "min_agreement": DEFAULT_MIN_AGREEMENT,
            "min_labels": 1,
        },
        "flags": {
            "allowed": ["unsafe", "personal_data", "spam"],
            "min_flags": 1,
            "unsafe": "drop",
            "personal_data": "drop",
            "spam": "drop",
            "other": "keep",
        },
        "labels": {"edit_window_hours": None, "reward_feedback": False},
        "privacy": {
            "rationale_retention_days": None,
            "raw_text_retention_days": None,
            "keep_rationales_on_erasure": False,
        },
        "rubric": project.rubric,
    }


def test_an_admin_changes_every_section_through_the_api(project, admin_user, client_for):
    # given the project's admin
    rubric = [{"name": "honesty", "min": 1, "max": 5}]
    changes = {
        "quality": {"gold_rate": 0.2, "gold_threshold": 0.8, "gold_min_answers": 3},
        "aggregation": {"policy": "min_agreement", "min_agreement": 0.75, "min_labels": 2},
        "flags": {
            "allowed": ["spam", "unsafe"],
            "min_flags": 2,
            "unsafe": "reject",
            "personal_data": "scrub",
            "spam": "keep",
            "other": "drop",
        },
        "labels": {"edit_window_hours": 24, "reward_feedback": True},
        "privacy": {
            "rationale_retention_days": 30,
            "raw_text_retention_days": 365,
            "keep_rationales_on_erasure": True,
        },
        "rubric": rubric,
    }
    # when they patch the settings
    response = client_for(admin_user).patch(
        f"/api/projects/{project.pk}/settings/", changes, format="json"
    )
    # then every value is stored (flags in their canonical order) and read back
    assert response.status_code == 200, response.json()
    project.refresh_from_db()
    expected = {**changes, "flags": {**changes["flags"], "allowed": ["unsafe", "spam"]}}
    assert response.json() == expected
    assert services.project_settings(project) == expected
    assert services.project_aggregation_config(project).min_labels == 2
    assert project.rubric == rubric


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"quality": {"gold_rate": 1.5}}, "quality.gold_rate"),
        ({"quality": {"gold_min_answers": 2.5}}, "quality.gold_min_answers"),
        ({"quality": {"gold_rate": "lots"}}, "quality.gold_rate"),
        ({"quality": {"fast_seconds": 3}}, "quality.fast_seconds"),
        ({"aggregation": {"policy": "loudest"}}, "aggregation.policy"),
        ({"aggregation": {"min_agreement": 0}}, "aggregation.min_agreement"),
        ({"aggregation": {"min_labels": 0}}, "aggregation.min_labels"),
        ({"flags": {"allowed": ["rude"]}}, "flags.allowed"),
        ({"flags": {"unsafe_as_chosen": False}}, "flags.unsafe_as_chosen"),
        ({"flags": {"unsafe": "scrub"}}, "flags.unsafe"),
        ({"flags": {"spam": "reject"}}, "flags.spam"),
        ({"flags": {"min_flags": 0}}, "flags.min_flags"),
        ({"labels": {"edit_window_hours": 0}}, "labels.edit_window_hours"),
        ({"labels": {"reward_feedback": 1}}, "labels.reward_feedback"),
        ({"rubric": []}, "rubric"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_a_bad_value_is_a_400_naming_its_field_and_nothing_changes(
    project, admin_user, client_for, changes, field
):
    before = (dict(project.options or {}), project.rubric)
    # a valid change beside the bad one is not applied either
    body = {"labels": {"edit_window_hours": 5}, **changes}
    response = client_for(admin_user).patch(
        f"/api/projects/{project.pk}/settings/", body, format="json"
    )
    assert response.status_code == 400
    assert response.json()["field"] == field
    project.refresh_from_db()
    assert (project.options or {}, project.rubric) == before


def test_none_clears_a_setting_back_to_its_default(project):
    services.project_settings_update(project=project, changes={"quality": {"gold_rate": 0.3}})
    settings = services.project_settings_update(
        project=project, changes={"quality": {"gold_rate": None}}
    )
    assert settings["quality"]["gold_rate"] == 0.05
    assert "quality" not in Project.objects.get(pk=project.pk).options


def test_other_options_are_left_as_they_were(project):
    project.options = {"review_min_labels": 4, "quality": {"sparkline_days": 7}}
    project.save(update_fields=["options"])
    services.project_settings_update(project=project, changes={"quality": {"gold_rate": 0.3}})
    assert Project.objects.get(pk=project.pk).options == {
        "review_min_labels": 4,
        "quality": {"sparkline_days": 7, "gold_rate": 0.3},
    }


def test_an_annotator_reads_nothing_and_changes_nothing(project, annotator, client_for):
    client = client_for(annotator)
    assert client.get(f"/api/projects/{project.pk}/settings/").status_code == 403
    response = client.patch(
        f"/api/projects/{project.pk}/settings/", {"quality": {"gold_rate": 1}}, format="json"
    )
    assert response.status_code == 403
    assert Project.objects.get(pk=project.pk).options == project.options


def test_a_flag_the_project_does_not_use_is_refused(project, annotator, make_task):
    services.project_settings_update(project=project, changes={"flags": {"allowed": ["spam"]}})
    project.refresh_from_db()
    make_task()
    lease = services.task_claim_next(project=project, annotator=annotator)
    with pytest.raises(ValidationFailed) as refused:
        services.label_submit(
            task=lease.task, annotator=annotator, payload={"choice": "A"}, flags=["unsafe"]
        )
    assert refused.value.extra["field"] == "flags"
    assert not Label.objects.exists()


def test_a_label_is_edited_within_the_window_only(project, annotator, make_task):
    # given a one-hour edit window and a label
    services.project_settings_update(project=project, changes={"labels": {"edit_window_hours": 1}})
    make_task()
    lease = services.task_claim_next(project=project, annotator=annotator)
    label = services.label_submit(
        task=lease.task, annotator=annotator, payload={"choice": "A", "strength": "clear"}
    ).label
    # when it is edited at once, then it becomes a revision
    edited = services.label_edit(label=label, editor=annotator, payload={"choice": "B"})
    assert edited.version == 2
    # when it is edited after the window closed, then it is refused and nothing changes
    Label.objects.filter(pk=label.pk).update(created_at=timezone.now() - timedelta(hours=2))
    with pytest.raises(Conflict) as refused:
        services.label_edit(label=label, editor=annotator, payload={"choice": "tie"})
    assert refused.value.code == "edit_window_closed"
    label.refresh_from_db()
    assert (label.version, label.payload["outcome"]) == (2, "B")


def _manage_form(**overrides):
    form = {
        "action": "annotation_settings",
        "gold_rate": "0.1",
        "gold_threshold": "0.9",
        "gold_min_answers": "4",
        "policy": "unanimous",
        "min_agreement": "",
        "min_labels": "3",
        "allowed_flags": ["unsafe", "personal_data"],
        "min_flags": "2",
        "flag_unsafe": "reject",
        "flag_personal_data": "scrub",
        "flag_spam": "drop",
        "flag_other": "keep",
        "edit_window_hours": "48",
        "rubric": "",
    }
    return {**form, **overrides}


def test_the_manage_page_saves_through_the_same_service_and_the_api_reads_it(
    project, admin_user, client_for, client
):
    # given the manage page shows the settings form
    client.force_login(admin_user)
    page = client.get(f"/projects/{project.pk}/manage/").content.decode()
    assert 'data-testid="annotation-settings"' in page
    assert 'name="gold_rate"' in page
    # when the admin saves it (unsafe flags rejected, personal data scrubbed, two flags needed)
    response = client.post(f"/projects/{project.pk}/manage/", _manage_form())
    # then the API reads what the page saved
    assert response.status_code == 302
    body = client_for(admin_user).get(f"/api/projects/{project.pk}/settings/").json()
    assert body["quality"] == {"gold_rate": 0.1, "gold_threshold": 0.9, "gold_min_answers": 4}
    assert body["aggregation"] == {
        "policy": "unanimous",
        "min_agreement": DEFAULT_MIN_AGREEMENT,
        "min_labels": 3,
    }
    assert body["flags"] == {
        "allowed": ["unsafe", "personal_data"],
        "min_flags": 2,
        "unsafe": "reject",
        "personal_data": "scrub",
        "spam": "drop",
        "other": "keep",
    }
    assert body["labels"] == {"edit_window_hours": 48, "reward_feedback": False}


def test_the_manage_page_turns_the_reward_feedback_on_and_off(project, admin_user, client):
    client.force_login(admin_user)
    page = client.get(f"/projects/{project.pk}/manage/").content.decode()
    assert 'data-testid="reward-feedback-setting"' in page

    client.post(f"/projects/{project.pk}/manage/", _manage_form(reward_feedback="on"))
    project.refresh_from_db()
    assert services.project_reward_feedback(project) is True
    page = client.get(f"/projects/{project.pk}/manage/").content.decode()
    assert 'data-testid="reward-feedback-setting" checked' in page

    client.post(f"/projects/{project.pk}/manage/", _manage_form())  # the box left unchecked
    project.refresh_from_db()
    assert services.project_reward_feedback(project) is False


def test_a_bad_value_on_the_manage_page_names_the_field_and_changes_nothing(
    project, admin_user, client
):
    client.force_login(admin_user)
    before = dict(project.options or {})
    response = client.post(
        f"/projects/{project.pk}/manage/", _manage_form(gold_rate="2"), follow=True
    )
    assert "quality.gold_rate must be from 0 to 1" in response.content.decode()
    project.refresh_from_db()
    assert (project.options or {}) == before
