"""An annotator lists their own labels, filters them, opens one and edits it in a browser."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from annotation import services
from annotation.models import Label, LabelRevision, TaskKind
from annotation.roles import Role

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SECRET_MODEL = "secret-model-7b"


def _label_all(project, user, payloads):
    labels = []
    for payload in payloads:
        lease = services.task_claim_next(project=project, annotator=user)
        labels.append(services.label_submit(task=lease.task, annotator=user, payload=payload).label)
    return labels


@pytest.fixture
def labelled():
    User = get_user_model()
    owner = User.objects.create_user("owner", password="owner-pass", is_staff=True)
    annotator = User.objects.create_user("ann", password="ann-pass-123")
    projects = []
    for name in ("Helpfulness", "Safety"):
        project = services.project_create(name=name, created_by=owner, overlap=1)
        services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
        projects.append(project)
    helpful, safety = projects

    def task(project, kind, texts, prompt):
        services.task_create(
            project=project, messages=[{"role": "user", "content": prompt}], kind=kind,
            responses=[{"text": x, "origin": "model", "model_name": SECRET_MODEL} for x in texts],
        )  # fmt: skip

    task(helpful, TaskKind.PAIRWISE, ["Paris.", "Lyon."], "Capital of France?")
    task(helpful, TaskKind.PAIRWISE, ["Berlin.", "Bonn."], "Capital of Germany?")
    task(helpful, TaskKind.RANKING, ["one", "two", "three"], "Rank these")
    task(safety, TaskKind.PAIRWISE, ["No.", "Sure, here is how."], "How to pick a lock?")
    pair = {"choice": "A", "strength": "clear"}
    _label_all(helpful, annotator, [pair, pair])
    ranking_lease = services.task_claim_next(project=helpful, annotator=annotator)
    item_ids = [i.response_id for i in ranking_lease.task.items.order_by("position")]
    services.label_submit(
        task=ranking_lease.task, annotator=annotator, payload={"ranking": [[i] for i in item_ids]}
    )
    _label_all(safety, annotator, [pair])
    return annotator, helpful, safety


def test_an_annotator_lists_filters_opens_and_edits_a_label(page, login, labelled):
    _annotator, helpful, safety = labelled
    # given the annotator on the home page
    login("ann", "ann-pass-123")
    page.goto("/")
    # when they open "My labels", then all four labels are listed
    page.click("[data-testid=my-labels-link]")
    rows = page.locator("[data-testid=label-row]")
    expect(rows).to_have_count(4)
    # when they filter by project, then only that project's label is left
    page.select_option("select[name=project]", str(safety.pk))
    page.click("[data-testid=label-filters] button[type=submit]")
    expect(rows).to_have_count(1)
    # when they filter the other project by task kind, then only its ranking is left
    page.select_option("select[name=project]", str(helpful.pk))
    page.select_option("select[name=kind]", "ranking")
    page.click("[data-testid=label-filters] button[type=submit]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-kind", "ranking")
    # when they open a pairwise label of the first project
    page.select_option("select[name=kind]", "pairwise")
    page.click("[data-testid=label-filters] button[type=submit]")
    expect(rows).to_have_count(2)
    label_id = int(rows.first.get_attribute("data-label-id"))
    first_side = Label.objects.get(pk=label_id).payload["chosen_side"]
    other_side = {"left": "right", "right": "left"}[first_side]
    rows.first.locator("a").click()
    # then the task is shown as they saw it, with the answer they gave
    page.wait_for_selector("[data-testid=pairwise-controls]")
    answer = page.locator("[data-testid=current-answer]")
    expect(answer).to_contain_text(f'"chosen_side": "{first_side}"')
    assert SECRET_MODEL not in page.content()
    # when they choose the other side and save
    page.click(f"[data-testid=pairwise-controls] [data-choice={other_side}]")
    page.click("[data-testid=save-edit]")
    # then the edit is saved as version 2, and the first answer is kept as a revision
    expect(page.locator("[data-testid=status]")).to_have_text("Saved as version 2.")
    expect(page.locator("[data-testid=label-version]")).to_have_text("2")
    expect(page.locator("[data-testid=revision]")).to_have_count(1)
    label = Label.objects.get(pk=label_id)
    assert (label.version, label.payload["chosen_side"]) == (2, other_side)
    expect(answer).to_contain_text(f'"chosen_side": "{other_side}"')
    revision = LabelRevision.objects.get(label=label)
    assert (revision.version, revision.payload["chosen_side"]) == (1, first_side)
    assert SECRET_MODEL not in page.content()
    assert page.watch.console_errors == []
    assert page.watch.page_errors == []
