"""A project admin's first day, from the home page by clicking only: create a project, import
tasks, change its settings, open the data explorer, send the disputed tasks to adjudication
and adjudicate one of every kind that has a form (pairwise, ranking, rubric, correction). axe
runs on every page; no console error, no failed request."""

import json

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from annotation import services
from annotation.labels import canonical_correction
from annotation.models import Label, Project, Task, TaskStatus
from annotation.quality.models import Adjudication
from annotation.quality.services import quality_recompute
from annotation.roles import Role

from .walk import Walk

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROWS = [
    {"prompt": "What do otters eat?", "responses": ["Fish and crabs.", "Rocks."],
     "kinds": ["pairwise"]},
    {"prompt": "Rank these otter facts.", "responses": ["They hold hands.", "They use tools.",
                                                        "They are fish."], "kinds": ["ranking"]},
    {"prompt": "Rate the answers: where do otters sleep?",
     "responses": ["In dens, or afloat.", "Go look it up."], "kinds": ["rubric"]},
    {"prompt": "How long do otters live?", "responses": ["Otters live for about 10 years."],
     "kinds": ["correction"]},
]  # fmt: skip


# Scrolled to its end, the annotator table's last header and cell lie inside the scroll box.
LAST_COLUMN_REACHABLE = """() => {
  const box = document.querySelector('[data-testid=annotator-table]').closest('.table-scroll');
  box.scrollLeft = box.scrollWidth;
  const edge = box.getBoundingClientRect();
  return ['thead th:last-child', 'tbody td:last-child'].map((sel) => {
    const r = box.querySelector(sel).getBoundingClientRect();
    return r.left >= edge.left - 1 && r.right <= edge.right + 1;
  });
}"""


def _two_annotators_disagree(project):
    """What two annotators' first hour leaves: every task labelled twice, apart."""
    User = get_user_model()
    annotators = [User.objects.create_user(f"ann{n}", password="pw") for n in range(2)]
    for user in annotators:
        services.membership_set(project=project, user=user, role=Role.ANNOTATOR)
    for task in Task.objects.filter(project=project):
        ids = list(task.items.order_by("position").values_list("response_id", flat=True))
        if task.kind == "pairwise":
            payloads = ({"outcome": "A"}, {"outcome": "B"})
        elif task.kind == "ranking":
            payloads = ({"ranking": [[i] for i in ids]}, {"ranking": [[i] for i in ids[::-1]]})
        elif task.kind == "correction":
            original = task.items.get().response.text
            payloads = tuple(
                canonical_correction({"corrected_text": text}, item_ids=ids,
                                     texts={ids[0]: original})
                for text in ("Otters live 10 to 15 years.", "Otters live 8 years in the wild.")
            )  # fmt: skip
        else:
            payloads = tuple(
                {"scores": {str(i): {"helpfulness": s, "harmlessness": s, "honesty": s}
                            for i, s in zip(ids, scores, strict=True)}}
                for scores in ((5, 1), (1, 5))
            )  # fmt: skip
        for user, payload in zip(annotators, payloads, strict=True):
            Label.objects.create(task=task, annotator=user, kind=task.kind, payload=payload)
        Task.objects.filter(pk=task.pk).update(label_count=2, status=TaskStatus.DONE)


def _decide(page, kind: str) -> None:
    form = page.locator("[data-testid=adjudicate-form]")
    if kind == "pairwise":
        form.locator("select[name=choice]").select_option("A")
    elif kind == "rubric":
        for row in form.locator("tr.rubric-row").all():
            row.locator("input[type=radio]").last.check()
    elif kind == "correction":
        # each rewrite comes with its diff; the reviewer finds the original needs no correction
        expect(form.get_by_test_id("rewrite-diff").locator("ins").first).to_be_visible()
        form.get_by_test_id("pick-original").check()
        expect(form.get_by_test_id("correction-final")).to_have_value(
            "Otters live for about 10 years."
        )
    else:
        expect(form.locator("[data-testid=rank-item]")).to_have_count(3)
    form.locator("textarea[name=reason]").fill(f"The {kind} decision, read against the guide.")


def test_an_admin_creates_imports_sets_explores_and_adjudicates_every_kind(page, login, tmp_path):
    get_user_model().objects.create_user("lead", password="lead-pass-1", is_staff=True)
    walk = Walk(page)
    login("lead", "lead-pass-1")
    walk.arrive("**/", "h1")

    # Home → New project → created: its manage page
    walk.click("[data-testid=new-project]", "**/projects/new/", "input[name=name]")
    page.fill("input[name=name]", "Otter walk")
    page.fill("input[name=overlap]", "2")
    walk.click("text=Create project", "**/projects/*/manage/", ".message.success")
    project = Project.objects.get(name="Otter walk")
    assert project.memberships.get().role == "admin"

    # import one task of each kind, with progress
    upload = tmp_path / "otters.jsonl"
    upload.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    page.select_option("#import-form select[name=kind]", "responses")
    page.set_input_files("#import-form input[type=file]", str(upload))
    page.click("#import-form button[type=submit]")
    expect(page.get_by_test_id("upload-status")).to_contain_text("Imported otters.jsonl")
    walk.check("the manage page after an import")
    assert sorted(Task.objects.filter(project=project).values_list("kind", flat=True)) == [
        "correction",
        "pairwise",
        "ranking",
        "rubric",
    ]

    # settings: guidelines, saved
    settings_form = page.locator("form:has(input[name=action][value=settings])")
    settings_form.locator("textarea[name=guidelines]").fill("Prefer **true** answers.")
    walk.click(
        "form:has(input[name=action][value=settings]) button[type=submit]",
        f"**/projects/{project.pk}/manage/",
        ".message.success",
    )
    project.refresh_from_db()
    assert project.guidelines == "Prefer **true** answers."

    # (two annotators label every task, and disagree)
    _two_annotators_disagree(project)

    # → the data explorer: send every task to adjudication
    walk.click(
        "nav.nav a:has-text('Data explorer')",
        f"**/projects/{project.pk}/explorer/",
        "[data-testid=explorer-table] tbody tr",
    )
    table = page.get_by_test_id("explorer-table")
    expect(table.locator("tbody tr")).to_have_count(4)
    for box in table.locator("tbody tr input[type=checkbox]").all():
        box.check()
    expect(page.get_by_test_id("selected-count")).to_have_text("4 selected")
    page.click("[data-action=send_to_adjudication]")
    expect(page.get_by_test_id("explorer-status")).to_contain_text("4 changed")
    walk.check("the explorer after a bulk action")
    # a task opens with its labels and history
    table.locator("tbody tr td:nth-child(2)").first.click()
    expect(page.get_by_test_id("task-detail")).to_contain_text("ann1")
    walk.check("a task opened in the explorer")

    # Home → Adjudicate → each task in turn, until the queue is empty
    walk.home()
    walk.click(
        f"[data-testid=project-{project.slug}] a:has-text('Adjudicate')",
        f"**/projects/{project.pk}/review/",
        "[data-testid=review-queue]",
    )
    decided = []
    for _ in ROWS:
        walk.click(
            "[data-testid=review-queue] a:has-text('Review')",
            "**/tasks/*/review/",
            "[data-testid=adjudicate-form]",
        )
        kind = page.locator("[data-testid=adjudicate-form]").get_attribute("data-kind")
        _decide(page, kind)
        walk.check(f"the {kind} adjudication form, filled")
        walk.click(
            "[data-testid=adjudicate-form] button[type=submit]",
            f"**/projects/{project.pk}/review/",
            "[data-testid=review-queue]",
        )
        decided.append(kind)
    assert sorted(decided) == ["correction", "pairwise", "ranking", "rubric"]
    expect(page.get_by_test_id("review-queue")).to_contain_text("Nothing to review.")
    adjudications = {a.task.kind: a.payload for a in Adjudication.objects.select_related("task")}
    assert adjudications["pairwise"]["outcome"] == "A"
    assert len(adjudications["ranking"]["ranking"]) == 3
    assert len(adjudications["rubric"]["scores"]) == 2
    assert adjudications["correction"]["unchanged"] is True

    # (the quality worker computes the report) Home → Quality: charts and the annotators
    quality_recompute(project_id=project.pk)
    walk.home()
    walk.click(
        f"[data-testid=project-{project.slug}] a:has-text('Quality')",
        f"**/projects/{project.pk}/quality/",
        "[data-testid=quality-dashboard][data-rendered='1']",
    )
    expect(page.locator("#annotator-rows tr")).to_have_count(2)
    # the annotator table's last column can be brought fully into view
    assert page.evaluate(LAST_COLUMN_REACHABLE) == [True, True]

    walk.home()
    assert walk.visited[:4] == [
        "/",
        "/projects/new/",
        f"/projects/{project.pk}/manage/",
        f"/projects/{project.pk}/manage/",
    ]
    assert walk.visited[4:7] == [
        f"/projects/{project.pk}/explorer/",
        "/",
        f"/projects/{project.pk}/review/",
    ]
    assert walk.visited[-3:] == ["/", f"/projects/{project.pk}/quality/", "/"]
    assert len(walk.visited) == 7 + 2 * len(ROWS) + 3
    walk.assert_clean()
