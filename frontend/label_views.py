"""An annotator's own labels: the list (filtered and paged on the server) and one label,
whose edit the page makes through the label API (each edit a revision).

Blind like the annotation page: the list names no models and no responses, and the label's
page reads the task and the label through the annotator API, which names responses by refs
of their task items (``annotation.selectors.annotator_ids``)."""

from datetime import date

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.views.decorators.http import require_GET

from annotation import selectors, services
from annotation.access import access_label, access_project
from annotation.models import Label, TaskKind
from annotation.opaque import task_ref
from config.untrusted import int64_problem

PAGE_SIZE = 25


def _date(text: str) -> date | None:
    try:
        return parse_date(text.strip()) if text else None
    except ValueError:
        return None


def _editable_until(label: Label):
    """(may the author edit it now, until when); ``None`` for no time limit."""
    window = services.project_label_edit_window(label.task.project)
    until = None if window is None else label.created_at + window
    open_now = label.reviewed_at is None and (until is None or timezone.now() <= until)
    # A decision on a model's proposal already put it in the pool (or kept it out): final.
    open_now = open_now and label.kind != TaskKind.CONFIRM
    return open_now, until


@login_required
@require_GET
def my_labels(request):
    query = request.GET
    project_id = query.get("project", "").strip()
    # An id no row can have (a non-ASCII digit, past 64 bits) filters nothing, as a blank one.
    project_id = None if int64_problem(project_id) else int(project_id)
    if project_id is not None:
        access_project(request.user, project_id)
    kind = query.get("kind") if query.get("kind") in TaskKind.values else None
    since, until = _date(query.get("from", "")), _date(query.get("to", ""))
    labels = selectors.label_list_for_annotator(
        request.user, project_id=project_id, kind=kind, since=since, until=until
    ).select_related("task__project")
    page = Paginator(labels, PAGE_SIZE).get_page(query.get("page"))
    rows = []
    for label in page.object_list:
        editable, editable_until = _editable_until(label)
        rows.append({"label": label, "editable": editable, "until": editable_until})
    filters = query.copy()
    filters.pop("page", None)
    return render(
        request,
        "frontend/my_labels.html",
        {
            "rows": rows,
            "page": page,
            "projects": selectors.project_list_for_user(request.user),
            "kinds": TaskKind.choices,
            "chosen": {"project": project_id, "kind": kind, "from": since, "to": until},
            "filters": filters.urlencode(),
        },
    )


@login_required
@require_GET
def my_label(request, label_id: int):
    # Only the author's own label (others' are 404 here, as for an edit).
    label = access_label(request.user, label_id, for_edit=True)
    editable, until = _editable_until(label)
    return render(
        request,
        "frontend/my_label.html",
        {
            "label": label,
            "project": label.task.project,
            "task_ref": task_ref(label.task_id),
            "editable": editable,
            "until": until,
        },
    )
