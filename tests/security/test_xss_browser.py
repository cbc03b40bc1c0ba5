"""Hostile text in a real browser: stored XSS through task data must stay inert everywhere.

An XSS corpus (script tags, event handlers, ``javascript:`` URLs, SVG, Markdown links and
images, broken and mutation-prone HTML, attribute and textarea break-outs, right-to-left
overrides) is planted in every field a user or a model controls: project names, guidelines,
usernames, prompts (multi-turn), responses of every task kind, rationales, imported file
names and external annotator names. Then headless Chromium visits every page route the
URLconf has (discovered, so pages that land later are crawled too), the Django admin's
pages, and works through the annotation page task by task. On every page: no dialog, no
script error, no Content-Security-Policy violation (a violation means hostile markup became
live HTML and only the second wall stopped it), and no live handler, ``javascript:`` URL,
inline script, frame or ``<base>`` in the DOM.
"""

from __future__ import annotations

import json

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse

from annotation import importers, services
from annotation.roles import Role
from tests.security.routes import http_routes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CORPUS = [
    "<script>alert('x1')</script>",
    "<img src=x onerror=alert('x2')>",
    "<svg onload=alert('x3')>",
    "<svg><script>alert('x4')</script></svg>",
    "[click me](javascript:alert('x5'))",
    "<a href=\"javascript:alert('x6')\">link</a>",
    "\"><script>alert('x7')</script>",
    "'><img src=x onerror=alert('x8')>",
    "<img src=x onerror=alert('x9')//",
    "<<script>alert('x10');//<</script>",
    "<iframe src=\"javascript:alert('x11')\"></iframe>",
    "</textarea><script>alert('x12')</script>",
    "</script><script>alert('x13')</script>",
    "\u202e<img src=x onerror=alert('x14')>\u202c gnp.exe",
    "<details open ontoggle=alert('x15')>",
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxNik8L3NjcmlwdD4=)",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert('x17')>",
    "<a href=\"&#106;avascript:alert('x18')\">x</a>",
    "![img](x\" onerror=\"alert('x19'))",
    '<base href="//evil.invalid/"><meta http-equiv=refresh content="0;url=javascript:alert(20)">',
    "<style>*{background:url(javascript:alert('x21'))}</style>",
    "{{ 7|add:7 }} {% debug %} ${alert('x22')}",
    "<noscript><p title=\"</noscript><img src=x onerror=alert('x23')>\">",
    "<object data=\"javascript:alert('x24')\"></object><embed src=\"javascript:alert('x25')\">",
]
PAYLOAD = "\n\n".join(CORPUS)

CSP_WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample || ''}`);
});
"""

LIVE_MARKUP = """() => {
  const bad = [];
  for (const el of document.querySelectorAll('*')) {
    for (const a of Array.from(el.attributes)) {
      const name = a.name.toLowerCase();
      const value = a.value.replace(/[\\s\\u0000-\\u001f]/g, '').toLowerCase();
      if (name.startsWith('on')) bad.push(`${el.tagName} ${name}`);
      const urlish = ['href', 'src', 'action', 'formaction', 'xlink:href', 'data', 'srcdoc'];
      if (urlish.includes(name) && /^(javascript|vbscript|data:text)/.test(value)) {
        bad.push(`${el.tagName} ${name}=${value}`);
      }
    }
    if (['IFRAME', 'FRAME', 'OBJECT', 'EMBED', 'BASE'].includes(el.tagName)) bad.push(el.tagName);
    if (el.tagName === 'META' && el.httpEquiv) bad.push(`META ${el.httpEquiv}`);
    if (el.tagName === 'SCRIPT' && (!el.src || new URL(el.src).origin !== location.origin)) {
      bad.push(`SCRIPT ${el.src || el.textContent.slice(0, 40)}`);
    }
  }
  return bad;
}"""


@pytest.fixture
def hostile(tmp_path):
    """Every user-controlled field, filled with the corpus."""
    User = get_user_model()
    admin_user = User.objects.create_user(
        "admin<svg onload=alert('u1')>", password="admin-pass-1", is_staff=True,
        is_superuser=True,
    )  # fmt: skip
    annotator = User.objects.create_user(
        "ann\u202e'\"><img src=x onerror=alert('u2')>", password="ann-pass-123"
    )
    project = services.project_create(
        name="<img src=x onerror=alert('p1')>\u202e</title><script>alert('p2')</script>",
        guidelines=PAYLOAD,
        created_by=admin_user,
        overlap=2,
    )
    services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    conversation = [
        {"role": "system", "content": PAYLOAD},
        {"role": "user", "content": PAYLOAD},
        {"role": "assistant", "content": CORPUS[1]},
        {"role": "user", "content": CORPUS[5]},
    ]
    shapes = {
        "pairwise": [CORPUS[0] + CORPUS[4], PAYLOAD],
        "ranking": [CORPUS[2], CORPUS[3], CORPUS[16]],
        "correction": [PAYLOAD],
        "rubric": [CORPUS[13] + CORPUS[18]],
    }
    tasks = {}
    for priority, (kind, texts) in enumerate(shapes.items()):
        tasks[kind], _ = services.task_create(
            project=project, messages=conversation, kind=kind, priority=10 - priority,
            responses=[{"text": t, "origin": "model", "model_name": CORPUS[6]} for t in texts],
        )  # fmt: skip
    # a label with a hostile rationale, by the admin (the annotator's queue stays whole)
    lease = services.task_claim_next(project=project, annotator=admin_user)
    services.label_submit(
        task=lease.task, annotator=admin_user,
        payload={"choice": "A", "strength": "clear", "rationale": PAYLOAD}
        if lease.task.kind == "pairwise" else _payload_for(lease.task),
    )  # fmt: skip
    row = {"prompt": CORPUS[7], "chosen": CORPUS[8], "rejected": CORPUS[9]}
    rows = (json.dumps(row) + "\n").encode()
    importers.import_file(
        project=project, data=rows, kind="preferences", created_by=admin_user,
        filename="<img src=x onerror=alert('f1')>\u202egpj.jsonl",
        annotator_name="<script>alert('f2')</script>",
    )  # fmt: skip
    project.version_id = _hostile_review(project, admin_user, conversation, tmp_path)
    return project, admin_user, annotator, tasks


def _hostile_review(project, admin_user, conversation, tmp_path) -> int:
    """A candidate in review whose blind pair, rationale and data card carry the corpus."""
    from models_registry import services as registry
    from models_registry.models import LoopRound, RoundKind, RoundStatus
    from rlhf.models import DatasetSnapshot, SnapshotStatus
    from rlhf.training.base_models import build_tiny_causal_lm

    folder = build_tiny_causal_lm(tmp_path / "xss-model")
    base = registry.model_version_register_base(
        project=project, registered_by=admin_user, folder=folder, name="xss-base"
    )
    snapshot = DatasetSnapshot.objects.create(
        project=project, name=CORPUS[0], status=SnapshotStatus.READY, max_label_id=0, config={},
        data_card=PAYLOAD,
    )  # fmt: skip
    candidate = registry.model_version_register(
        project=project, folder=folder, name="xss-candidate", parent=base,
        dataset_snapshot=snapshot, metrics={"note": CORPUS[1]},
    )  # fmt: skip
    registry.model_version_transition(
        version=candidate, actor=admin_user, to_state="in_review", reason=PAYLOAD
    )
    task, _ = services.task_create(
        project=project, messages=conversation, kind="pairwise",
        responses=[
            {"text": CORPUS[0] + PAYLOAD, "origin": "model",
             "model_name": candidate.response_model_name},
            {"text": CORPUS[12] + CORPUS[1], "origin": "model",
             "model_name": base.response_model_name},
        ],
    )  # fmt: skip
    # Finished, so that the decision page shows the pair (open pairs are not shown).
    type(task).objects.filter(pk=task.pk).update(status="done", completed_at=task.created_at)
    LoopRound.objects.create(
        project=project, kind=RoundKind.REVIEW, version=candidate, opponent=base,
        status=RoundStatus.READY, task_ids=[task.pk], candidate_positions={str(task.pk): 0},
        evaluation_error=PAYLOAD,
    )  # fmt: skip
    return candidate.pk


def _payload_for(task):
    return {"choice": "A", "strength": "clear", "rationale": PAYLOAD}


def _assert_inert(page, where: str):
    page.wait_for_load_state("networkidle")
    watch = page.watch
    assert watch.dialogs == [], f"{where}: a dialog fired: {watch.dialogs}"
    assert watch.page_errors == [], f"{where}: script errors: {watch.page_errors}"
    assert page.evaluate("window.__csp || []") == [], f"{where}: CSP had to block hostile markup"
    assert page.evaluate(LIVE_MARKUP) == [], f"{where}: live hostile markup"


def _page_urls(project, task_id) -> list[str]:
    values = {"project_id": project.pk, "task_id": task_id, "version_id": project.version_id}
    urls = []
    for route in http_routes():
        if route.is_api or "get" not in route.methods or route.name == "frontend:logout":
            continue
        if set(route.params) - set(values):
            continue  # pages with other objects: add their ids to `values` as they land
        urls.append(route.url(values))
    urls.append("/login/?next=%22%3E%3Cscript%3Ealert(%27n1%27)%3C/script%3E")
    return urls


def _admin_urls() -> list[str]:
    urls = [reverse("admin:index")]
    for model, _ in admin.site._registry.items():
        meta = model._meta
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        first = model.objects.order_by("pk").first()
        if first is not None:
            urls.append(
                reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[first.pk])
            )
    return urls


def test_stored_xss_through_task_data_stays_inert_on_every_page(page, login, hostile):
    project, admin_user, annotator, tasks = hostile
    page.add_init_script(CSP_WATCH)
    login(admin_user.username, "admin-pass-1")
    # a flash message that repeats a hostile username and the import's file name
    page.goto(f"/projects/{project.pk}/manage/")
    page.fill("form:has(input[value=member]) input[name=username]", annotator.username)
    page.click("form:has(input[value=member]) button[type=submit]")
    _assert_inert(page, "manage after a member change")
    assert "gpj.jsonl" in page.content()  # shown, as text, without its bidi override
    recent = page.locator("h3:has-text('Recent imports') + ul").inner_text()
    assert "gpj.jsonl" in recent
    assert "\u202e" not in recent

    for url in _page_urls(project, tasks["pairwise"].pk) + _admin_urls():
        response = page.goto(url)
        assert response.status < 500, url
        _assert_inert(page, url)


def test_hostile_tasks_render_inert_on_the_annotation_page(page, login, hostile):
    project, _, annotator, tasks = hostile
    page.add_init_script(CSP_WATCH)
    login(annotator.username, "ann-pass-123")
    page.goto(f"/projects/{project.pk}/annotate/")
    seen = []
    for _ in range(len(tasks)):
        page.wait_for_selector("[data-testid=task][data-task-id]")
        task_id = page.locator("[data-testid=task]").get_attribute("data-task-id")
        seen.append(int(task_id))
        _assert_inert(page, f"annotate task {task_id}")
        # the corpus is shown as the literal text the model produced
        assert "onerror=alert(" in page.locator("[data-testid=task]").inner_text()
        page.keyboard.press("s")
        page.wait_for_function(
            "(id) => { const t = document.querySelector('[data-testid=task]');"
            " return !t.dataset.taskId || t.dataset.taskId !== id; }",
            arg=task_id,
        )
    assert sorted(seen) == sorted(t.pk for t in tasks.values())
    _assert_inert(page, "annotate after the last task")


def test_the_detectors_catch_live_markup(page):
    """Guard for the guard: on a page without our escaping or CSP, the same checks fire."""
    page.add_init_script(CSP_WATCH)
    page.set_content(
        "<p>plain</p><img src=x onerror=\"alert('live')\"><a href='javascript:1'>x</a>"
    )
    page.wait_for_timeout(200)
    assert page.watch.dialogs == ["live"]
    found = page.evaluate(LIVE_MARKUP)
    assert "IMG onerror" in found
    assert any(item.startswith("A href=javascript") for item in found)
