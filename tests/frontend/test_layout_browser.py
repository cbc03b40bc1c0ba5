"""Layout defects a new user saw, measured in Chromium: the side tag over a response's text,
and the annotate page on a 390 px phone screen (the task below the guidelines, "left/right"
on stacked cards)."""

import pytest
from playwright.sync_api import expect

from annotation import services
from annotation.opaque import task_ref

from .annotate_helpers import open_page, project_with_annotator
from .axe import assert_no_serious_axe_violations
from .test_review_browser import disputed_task

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LONG = "A long answer that fills the first line of its card to the right edge. " * 6

# How many text line boxes of each response card cross its side tag's box.
TEXT_UNDER_TAG = """() => Array.from(document.querySelectorAll('.response')).map((card) => {
  const tag = card.querySelector('.side-tag').getBoundingClientRect();
  const walker = document.createTreeWalker(card.querySelector('.content'), NodeFilter.SHOW_TEXT);
  let crossing = 0;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const range = document.createRange();
    range.selectNodeContents(node);
    for (const r of range.getClientRects()) {
      if (r.width && r.left < tag.right && r.right > tag.left && r.top < tag.bottom
          && r.bottom > tag.top) crossing += 1;
    }
  }
  return crossing;
})"""


def test_the_side_tag_on_the_review_page_covers_no_text(page, login):
    _project, task, _ids = disputed_task(
        "pairwise",
        [LONG + "a", LONG + "b"],
        [lambda ids: {"outcome": "A"}, lambda ids: {"outcome": "B"}],
    )
    login("rev", "rev-pass-123")
    page.goto(f"/tasks/{task.pk}/review/")
    expect(page.locator(".response .side-tag")).to_have_count(2)
    assert page.evaluate(TEXT_UNDER_TAG) == [0, 0]


def test_the_side_tag_on_the_annotate_page_covers_no_text(page, login):
    project, _annotator = project_with_annotator("Long answers")
    task, _ = services.task_create(
        project=project, kind="pairwise", messages=[{"role": "user", "content": "Explain."}],
        responses=[{"text": LONG + s, "origin": "model", "model_name": "m"} for s in "ab"],
    )  # fmt: skip
    open_page(page, login, project)
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(task.pk)}']")
    assert page.evaluate(TEXT_UNDER_TAG) == [0, 0]


def test_on_a_390px_screen_the_task_comes_first_and_the_cards_say_top_and_bottom(
    page, login, pairwise_project
):
    project, _annotator, tasks = pairwise_project
    page.set_viewport_size({"width": 390, "height": 844})
    open_page(page, login, project)
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(tasks[0].pk)}']")

    # the first response starts on the first screen, above the guidelines
    first_card = page.locator("[data-testid=response]").first.bounding_box()
    guidelines = page.locator("[data-testid=guidelines]").bounding_box()
    assert first_card["y"] < 844
    assert first_card["y"] < guidelines["y"]
    # the stacked cards and the choice buttons name them top and bottom
    tags = page.locator(".response .side-tag")
    expect(tags).to_have_text(["1 · top", "2 · bottom"], use_inner_text=True)
    expect(page.locator("button[data-choice=left]")).to_have_text(
        "1 · Top is better", use_inner_text=True
    )
    expect(page.get_by_role("button", name="2 · Bottom is better")).to_have_count(1)
    assert_no_serious_axe_violations(page, "the annotate page at 390 px")

    # side by side again on a wide screen: left and right
    page.set_viewport_size({"width": 1280, "height": 900})
    expect(tags).to_have_text(["1 · left", "2 · right"], use_inner_text=True)
    expect(page.get_by_role("button", name="1 · Left is better")).to_have_count(1)
    assert page.watch.page_errors == []


# Every text of every snapshot chart, against its SVG's own box: how far it sticks out.
CHART_TEXT_OUTSIDE = """() => Array.from(document.querySelectorAll('[data-testid=charts] svg'))
  .flatMap((svg) => {
    const box = svg.viewBox.baseVal;
    return Array.from(svg.querySelectorAll('text')).map((t) => {
      const b = t.getBBox();
      return [t.textContent, Math.max(0, box.x - b.x, b.x + b.width - (box.x + box.width))];
    });
  }).filter(([, out]) => out > 0)"""


def test_the_snapshot_charts_show_their_longest_labels_whole(page, login, settings, tmp_path):
    from django.contrib.auth import get_user_model

    from annotation.roles import Role
    from rlhf.models import DatasetSnapshot
    from rlhf.snapshots import services as snapshot_services

    settings.TANDEM_ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.TANDEM_SNAPSHOT_WORKERS = 0
    project, annotator = project_with_annotator("Charts")
    engineer = get_user_model().objects.create_user("eng", password="eng-pass-123")
    services.membership_set(project=project, user=engineer, role=Role.ENGINEER)
    for n in range(4):
        services.task_create(
            project=project, kind="pairwise", messages=[{"role": "user", "content": f"Q{n}?"}],
            responses=[{"text": f"A{n}{s}", "origin": "model", "model_name": "m"} for s in "ab"],
        )  # fmt: skip
        lease = services.task_claim_next(project=project, annotator=annotator)
        services.label_submit(task=lease.task, annotator=annotator, payload={"choice": "left"})
    snapshot = snapshot_services.snapshot_create(project=project, created_by=engineer, config={})
    snapshot_services.snapshot_build(snapshot_id=snapshot.pk)
    snapshot.refresh_from_db()
    # the longest reasons a build records (rlhf.data.shards and plan)
    report = snapshot.report
    report["removed"] = {"rubric_preference": {"near_duplicate": 4, "exact_duplicate": 12345}}
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(report=report)

    login("eng", "eng-pass-123")
    page.goto(f"/data/snapshots/{snapshot.pk}/")
    expect(page.locator("[data-testid=charts] svg")).not_to_have_count(0)
    expect(
        page.locator("text.chart-label", has_text="rubric_preference: near_duplicate")
    ).to_have_count(1)
    assert page.evaluate(CHART_TEXT_OUTSIDE) == []
