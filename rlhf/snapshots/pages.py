"""Snapshot pages: the list (with a create form), and one snapshot's card, report and charts.

Charts are inline SVG rendered on the server (bar widths as SVG attributes), so the pages
work under the site's strict CSP with no script at all.
"""

import itertools

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotation.access import access_project
from annotation.rendering import markdown_to_safe_html
from annotation.roles import Capability
from config.errors import DomainError
from rlhf.data.aggregate import POLICIES
from rlhf.runs import versions as run_versions
from rlhf.snapshots import selectors, services

CHART_WIDTH = 360


# Width of one character of a chart label (12 px system-ui; digits and most letters are
# narrower), so the label column fits its longest label instead of clipping it.
LABEL_CHAR_PX = 7


def _bars(pairs, *, label_width=190) -> dict:
    """Rows for a horizontal bar chart: label, value, bar width in px, y offset.

    ``label_width`` is the least width of the label column; a longer label widens it."""
    pairs = [(str(k), int(v)) for k, v in pairs]
    label_width = max([label_width] + [len(k) * LABEL_CHAR_PX + 4 for k, _ in pairs])
    top = max((v for _, v in pairs), default=0) or 1
    rows = [
        {"label": k, "value": v, "width": max(1, round(v / top * CHART_WIDTH)) if v else 0,
         "y": i * 22, "text_y": i * 22 + 14}
        for i, (k, v) in enumerate(pairs)
    ]  # fmt: skip
    return {
        "rows": rows,
        "height": max(22, len(rows) * 22),
        "label_width": label_width,
        "bar_x": label_width + 8,
        "total_width": label_width + CHART_WIDTH + 90,
    }


def _charts(report: dict) -> list[dict]:
    if not report:
        return []
    agg = report["aggregation"]
    bins = report["lengths"]["bins"]
    names = [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(bins)] + [f"{bins[-1]}+"]
    removed = [
        (f"{shape}: {reason}", n)
        for shape, reasons in report["removed"].items()
        for reason, n in reasons.items()
    ]
    removed += [(f"text: {reason}", n) for reason, n in report["cleaning"]["dropped"].items()]
    return [
        {"title": "Label distribution (votes)", "chart": _bars(agg["votes"].items())},
        {"title": "Decisions after aggregation", "chart": _bars(agg["decisions"].items())},
        {"title": "Removed, by reason", "chart": _bars(removed)},
        {"title": "Personal data replaced", "chart": _bars(report["cleaning"]["pii"].items())},
        {
            "title": "Prompt length (characters)",
            "chart": _bars(
                zip(names, report["lengths"]["prompt_chars"], strict=True), label_width=110
            ),
        },
        {
            "title": "Answer length (characters)",
            "chart": _bars(
                zip(names, report["lengths"]["answer_chars"], strict=True), label_width=110
            ),
        },
    ]


@login_required
@require_http_methods(["GET", "POST"])
def snapshot_list_page(request, project_id: int):
    project = access_project(request.user, project_id, capability=Capability.DATA)
    if request.method == "POST":
        try:
            config = {
                "aggregation": {"policy": request.POST.get("policy", "majority")},
                "dedup": {
                    "near": request.POST.get("near") == "on",
                    "threshold": float(request.POST.get("threshold") or 0.8),
                },
                "split": {"seed": int(request.POST.get("seed") or 0)},
            }
            snapshot = services.snapshot_create(
                project=project,
                created_by=request.user,
                name=request.POST.get("name", ""),
                config=config,
            )
        except (DomainError, ValueError) as exc:
            messages.error(request, getattr(exc, "message", str(exc)))
        else:
            messages.success(request, f"Snapshot {snapshot.pk} queued.")
        return redirect("rlhf-pages:snapshots", project_id=project.pk)
    snapshots = selectors.snapshot_list(user=request.user, project_id=project.pk)
    return render(
        request,
        "rlhf/snapshots.html",
        {"project": project, "snapshots": snapshots, "policies": POLICIES},
    )


@login_required
def snapshot_page(request, snapshot_id: int):
    snapshot = selectors.snapshot_get(user=request.user, snapshot_id=snapshot_id)
    report = snapshot.report or {}
    return render(
        request,
        "rlhf/snapshot.html",
        {
            "snapshot": snapshot,
            "project": snapshot.project,
            "card_html": markdown_to_safe_html(snapshot.data_card),
            "charts": _charts(report),
            "cleaning": report.get("cleaning"),
            "leakage": report.get("leakage"),
            "exports": selectors.snapshot_exports(snapshot=snapshot),
            "runs": run_versions.annotate_runs(snapshot.training_runs.order_by("id")),
        },
    )
