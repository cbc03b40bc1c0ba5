"""The "My labels" pages over HTTP: server paging, filters, the edit window, blindness."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import services
from annotation.models import Label, TaskKind
from annotation.roles import Role
from frontend.label_views import PAGE_SIZE

pytestmark = pytest.mark.django_db


@pytest.fixture
def labelled(django_user_model):
    owner = django_user_model.objects.create_user("owner", password="pw", is_staff=True)
    ann = django_user_model.objects.create_user("ann", password="pw")
    other = django_user_model.objects.create_user("other", password="pw")
    project = services.project_create(name="Helpfulness", created_by=owner, overlap=2)
    for user in (ann, other):
        services.membership_set(project=project, user=user, role=Role.ANNOTATOR)
    for n in range(PAGE_SIZE + 2):
        services.task_create(
            project=project, messages=[{"role": "user", "content": f"q{n}?"}],
            kind=TaskKind.PAIRWISE,
            responses=[{"text": f"a{n}", "origin": "model", "model_name": "secret-model"},
                       {"text": f"b{n}", "origin": "model", "model_name": "secret-model"}],
        )  # fmt: skip
    for user in (ann, other):
        for _ in range(PAGE_SIZE + 2):
            lease = services.task_claim_next(project=project, annotator=user)
            services.label_submit(task=lease.task, annotator=user, payload={"choice": "A"})
    return project, ann, other


def _row_ids(response):
    html = response.content.decode()
    return [int(part.split('"')[0]) for part in html.split('data-label-id="')[1:]]


def test_the_list_is_paged_on_the_server_and_shows_only_ones_own_labels(client, labelled):
    _project, ann, _other = labelled
    client.force_login(ann)
    mine = list(Label.objects.filter(annotator=ann).order_by("-id").values_list("pk", flat=True))
    first = client.get("/labels/")
    second = client.get("/labels/", {"page": 2})
    assert _row_ids(first) == mine[:PAGE_SIZE]
    assert _row_ids(second) == mine[PAGE_SIZE:]
    # and a filter that matches nothing lists nothing
    assert _row_ids(client.get("/labels/", {"kind": "ranking"})) == []
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    assert _row_ids(client.get("/labels/", {"from": tomorrow})) == []
    # and neither page names a model (nor shows a payload, which would hold response ids)
    for page in (first, second):
        html = page.content.decode()
        assert "secret-model" not in html
        assert "winner" not in html


def test_another_annotators_label_is_404_and_a_closed_window_says_so(client, labelled):
    project, ann, other = labelled
    client.force_login(ann)
    theirs = Label.objects.filter(annotator=other).first()
    assert client.get(f"/labels/{theirs.pk}/").status_code == 404
    services.project_settings_update(project=project, changes={"labels": {"edit_window_hours": 1}})
    mine = Label.objects.filter(annotator=ann).first()
    Label.objects.filter(pk=mine.pk).update(created_at=timezone.now() - timedelta(hours=2))
    page = client.get(f"/labels/{mine.pk}/").content.decode()
    assert "the edit window has closed" in page
    assert 'data-testid="save-edit"' not in page
    assert "secret-model" not in page


@pytest.mark.parametrize("value", ["²", "١٢", "9" * 30])
def test_a_hostile_project_filter_is_not_a_server_error(labelled, client, value):
    # given an annotator on their labels page
    _project, ann, _other = labelled
    client.force_login(ann)
    # when the project filter is a non-ASCII digit or a number no row can have
    response = client.get("/labels/", {"project": value})
    # then the filter is ignored, never a 500
    assert response.status_code == 200
    assert len(_row_ids(response)) == PAGE_SIZE
