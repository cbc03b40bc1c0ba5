"""The audit log page and the leaderboard page: their selectors on hand-computed values, the
access gate, and refusals of bad filters by name."""

import datetime
import math

import pytest
from django.test import Client
from django.utils import timezone

from models_registry import selectors, services
from models_registry.models import AuditAction, AuditEvent

pytestmark = pytest.mark.django_db

HOSTILE = "<script>alert('audit')</script>"


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def log(project, version, *, actor_name="rita", action=AuditAction.TRANSITION, reason="", **kw):
    return AuditEvent.objects.create(
        project=project, version=version, actor_name=actor_name, action=action, reason=reason, **kw
    )


@pytest.fixture
def reviewed(project, engineer, base_version, candidate, add_reviews):
    """The candidate beat the base in 2 of 3 blind reviews; the base is the champion."""
    services.model_version_transition(
        version=candidate, actor=engineer, to_state="in_review", reason="ready"
    )
    add_reviews(candidate, base_version, "AAB")
    return candidate, base_version


# --------------------------------------------------------------------------- audit selector


def test_audit_page_filters_by_version_actor_action_and_day(project, base_version, candidate):
    # given the events the registry wrote (registrations, champion alias) and three of ours
    before = AuditEvent.objects.filter(project=project).count()
    moved = log(project, candidate, actor_name="rita", action=AuditAction.TRANSITION)
    aliased = log(
        project, candidate, actor_name="sam", action=AuditAction.ALIAS_SET, alias="champion",
        previous_version=base_version,
    )  # fmt: skip
    other = log(project, base_version, actor_name="sam", action=AuditAction.TRANSITION)
    total = before + 3

    everything = selectors.audit_event_page(project=project)
    assert everything.total == total
    assert [e.pk for e in everything.events][:3] == [other.pk, aliased.pk, moved.pk]  # newest first

    # the base's events include the alias moved away from it (previous_version)
    about_base = selectors.audit_event_page(project=project, version=base_version)
    assert aliased.pk in [e.pk for e in about_base.events]
    assert moved.pk not in [e.pk for e in about_base.events]

    by_sam = selectors.audit_event_page(project=project, actor_name="sam")
    assert [e.pk for e in by_sam.events] == [other.pk, aliased.pk]

    sam_transitions = selectors.audit_event_page(
        project=project, actor_name="sam", action=AuditAction.TRANSITION
    )
    assert [e.pk for e in sam_transitions.events] == [other.pk]

    today = timezone.localdate()
    day = datetime.timedelta(days=1)
    assert selectors.audit_event_page(project=project, date_from=today, date_to=today).total == (
        total
    )
    assert selectors.audit_event_page(project=project, date_to=today - day).total == 0
    assert selectors.audit_event_page(project=project, date_from=today + day).total == 0
    assert "sam" in selectors.audit_actor_names(project=project)


def test_audit_page_pages_on_the_server(project, base_version, other_project):
    before = AuditEvent.objects.filter(project=project).count()
    for n in range(23):
        log(project, base_version, reason=f"event {n}")
    total = before + 23
    pages = math.ceil(total / 10)

    first = selectors.audit_event_page(project=project, per_page=10)
    last = selectors.audit_event_page(project=project, page=pages, per_page=10)
    beyond = selectors.audit_event_page(project=project, page=99, per_page=10)

    assert (first.number, first.pages, first.total, len(first.events)) == (1, pages, total, 10)
    assert first.events[0].reason == "event 22"
    assert len(last.events) == total - 10 * (pages - 1)
    assert beyond.number == pages  # past the last page is the last page
    # another project's trail is not in it
    assert selectors.audit_event_page(project=other_project).total == 0


# --------------------------------------------------------------------------- audit page


def test_audit_page_access_follows_the_audit_api(project, base_version, annotator, make_user,
                                                 reviewer, engineer):  # fmt: skip
    url = f"/models/projects/{project.pk}/audit/"
    assert page_client(annotator).get(url).status_code == 403
    assert page_client(make_user("olga-outsider")).get(url).status_code == 404
    api = f"/api/projects/{project.pk}/models/audit/"
    for user in (reviewer, engineer):
        assert page_client(user).get(url).status_code == 200
        assert page_client(user).get(api).status_code == 200


def test_audit_page_shows_a_filtered_table_with_escaped_text(project, base_version, candidate,
                                                             reviewer):  # fmt: skip
    event = log(project, candidate, actor_name="rita", reason=HOSTILE,
                from_state="candidate", to_state="in_review",
                evidence={"win_rate": 0.667, "win_rate_ci_95": [0.2, 0.9]})  # fmt: skip
    response = page_client(reviewer).get(
        f"/models/projects/{project.pk}/audit/", {"version": candidate.pk, "actor": "rita"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert f'data-testid="audit-event-{event.pk}"' in html
    assert "1 event · page 1 of 1" in html
    assert "candidate → in_review" in html
    assert "[0.2, 0.9]" in html  # nested evidence as JSON, not a Python repr
    assert HOSTILE not in html
    assert "&lt;script&gt;" in html


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"version": "abc"}, "version"),
        ({"action": "deleted"}, "action"),
        ({"date_from": "2024-13-01"}, "date_from"),
        ({"date_from": "2024-05-02", "date_to": "2024-05-01"}, "date_to"),
        ({"page": "0"}, "page"),
    ],
)
def test_a_bad_filter_is_a_400_naming_the_field(project, base_version, reviewer, query, field):
    response = page_client(reviewer).get(f"/models/projects/{project.pk}/audit/", query)
    assert response.status_code == 400
    assert f'<li class="message error">{field}: ' in response.content.decode()


def test_a_version_of_another_project_is_refused(project, base_version, reviewer, other_project,
                                                 engineer, tiny_base_dir):  # fmt: skip
    foreign = services.model_version_register_base(
        project=other_project, registered_by=engineer, folder=tiny_base_dir, name="foreign"
    )
    response = page_client(reviewer).get(
        f"/models/projects/{project.pk}/audit/", {"version": foreign.pk}
    )
    assert response.status_code == 400
    assert "version: No such version in this project." in response.content.decode()
    assert "foreign v" not in response.content.decode()


# --------------------------------------------------------------------------- leaderboard


def test_leaderboard_selector_by_hand(project, reviewed):
    candidate, base = reviewed
    standings = selectors.leaderboard(project=project, bootstrap_samples=50)

    assert [item["version"] for item in standings] == [candidate, base]
    top, bottom = standings
    # Two versions, one virtual tie: pi_c / pi_b = (2 + 1/2) / (1 + 1/2) = 5/3, centred.
    theta = math.log(5 / 3) / 2
    assert top["row"].strength == pytest.approx(theta)
    assert bottom["row"].strength == pytest.approx(-theta)
    assert top["row"].rating == pytest.approx(1000 + 400 * math.log10(5 / 3) / 2)  # 1044.37
    assert (top["row"].wins, top["row"].losses, top["row"].ties) == (2, 1, 0)
    assert top["win_rate"].win_rate == pytest.approx(2 / 3)
    # Wilson 95% for 2 of 3 (z = 1.96): centre 0.5731, half width 0.3654
    assert (top["win_rate"].ci_low, top["win_rate"].ci_high) == (
        pytest.approx(0.2077, abs=1e-4),
        pytest.approx(0.9385, abs=1e-4),
    )
    assert bottom["win_rate"].win_rate == pytest.approx(1 / 3)
    assert top["aliases"] == []
    assert bottom["aliases"] == ["champion"]
    assert [item["rank_upper_bound"] for item in standings] == [1, 1]  # 3 labels prove nothing


def test_leaderboard_page(project, reviewed, reviewer, annotator, make_user):
    candidate, base = reviewed
    url = f"/models/projects/{project.pk}/leaderboard/"
    assert page_client(annotator).get(url).status_code == 403
    assert page_client(make_user("olga-outsider")).get(url).status_code == 404

    html = page_client(reviewer).get(url).content.decode()
    top = html.index(f'data-testid="leaderboard-row-{candidate.pk}"')
    below = html.index(f'data-testid="leaderboard-row-{base.pk}"')
    assert top < below
    row = html[top:below]
    assert '<td data-testid="rating">1044</td>' in row
    assert '<td data-testid="comparisons">3</td>' in row
    assert '<td data-testid="win-rate">0.667</td>' in row
    assert '<span class="badge">champion</span>' in html[below:]
    assert "all 3 blind pairwise comparisons" in html


def test_leaderboard_page_without_reviews(project, base_version, reviewer):
    html = page_client(reviewer).get(f"/models/projects/{project.pk}/leaderboard/").content
    assert b"No blind comparison between two policy versions yet." in html


def test_registry_and_home_link_both_pages(project, base_version, reviewer):
    client = page_client(reviewer)
    for html in (client.get("/").content.decode(),
                 client.get(f"/models/projects/{project.pk}/").content.decode()):  # fmt: skip
        assert f'href="/models/projects/{project.pk}/audit/"' in html
        assert f'href="/models/projects/{project.pk}/leaderboard/"' in html
