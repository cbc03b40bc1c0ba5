"""Training-run pages: a project's runs, the launch form, and one run's live page.

The launch form is generated from the method's config dataclass (``config_schema``): one input
per field, with its documented default, range and meaning; the engine's own validation decides,
and its messages are shown next to the fields. The live page is server-rendered and then kept
current by ``rlhf/static/rlhf/run_live.js`` over the run's websocket.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from annotation.access import access_project
from annotation.roles import Capability, role_can
from config.errors import DomainError, ValidationFailed
from rlhf.models import DatasetSnapshot, TrainingRun
from rlhf.runs import selectors, services
from rlhf.runs import versions as run_versions
from rlhf.training.base_models import SMOLLM2_NAME
from rlhf.training.config import (
    METHOD_TITLES,
    METHODS,
    ConfigError,
    config_from_dict,
    config_schema,
)


def default_base_model() -> str:
    """The prepared SmolLM2-135M-Instruct folder (``manage.py base_model --ensure``)."""
    return str(Path(settings.TANDEM_MODEL_CACHE) / SMOLLM2_NAME)


def _input_type(field: dict) -> str:
    if "choices" in field:
        return "select"
    return {"bool": "checkbox", "int": "number", "float": "number", "list": "list"}.get(
        field["type"], "text"
    )


def form_fields(method: str, values: dict, errors: dict) -> list[dict]:
    """The launch form's inputs for ``method``: schema entries plus the value to show."""
    fields = []
    for field in config_schema(method):
        value = values.get(field["name"], field["default"])
        if field["type"] == "list" and isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        fields.append(
            {
                **field,
                "input": _input_type(field),
                "value": value,
                "step": "1" if field["type"] == "int" else "any",
                "error": errors.get(field["name"], ""),
                "choices": [str(c) for c in field.get("choices", [])],
                "value_text": str(value),
            }
        )
    return fields


def parse_config(method: str, post) -> tuple[dict, dict]:
    """Config values from a submitted form, typed by the schema, and per-field type errors."""
    values, errors = {}, {}
    for field in config_schema(method):
        name, kind = field["name"], field["type"]
        if kind == "bool":
            values[name] = post.get(name) == "on"
            continue
        text = (post.get(name) or "").strip()
        try:
            if kind == "int":
                values[name] = int(text)
            elif kind == "float":
                values[name] = float(text)
            elif kind == "list":
                values[name] = [part.strip() for part in text.split(",") if part.strip()]
            else:
                values[name] = text
        except ValueError:
            errors[name] = "must be a whole number" if kind == "int" else "must be a number"
            values[name] = text
    return values, errors


@login_required
def run_list_page(request, project_id: int):
    runs = selectors.training_run_list(user=request.user, project_id=project_id)
    project = access_project(request.user, project_id, capability=Capability.DATA)
    return render(
        request,
        "rlhf/runs.html",
        {
            "project": project,
            "runs": runs,
            "can_train": role_can(project.viewer_role, Capability.TRAIN),
            "methods": [(m, METHOD_TITLES[m]) for m in METHODS],
        },
    )


def _pick(model, pk, project):
    if not pk:
        return None
    try:
        found = model.objects.filter(pk=pk, project=project).first()
    except ValueError:  # a tampered form: "run:abc" is no id
        found = None
    if found is None:
        raise ValidationFailed("choose one of the listed options", code="invalid_choice")
    return found


@login_required
@require_http_methods(["GET", "POST"])
def run_new_page(request, project_id: int):
    project = access_project(request.user, project_id, capability=Capability.TRAIN)
    method = request.POST.get("method") or request.GET.get("method") or "reward"
    if method not in METHODS:
        method = "reward"
    choices = selectors.training_run_launch_choices(project=project)
    listed = choices["policy_versions"] + choices["reward_versions"]
    values = {"base_model": default_base_model()}
    errors: dict = {}
    chosen = {k: request.POST.get(k, "") for k in ("snapshot", "base_source", "reward_source")}
    if request.method == "POST":
        values, errors = parse_config(method, request.POST)
        if errors:
            errors = {**_range_errors(method, values, errors), **errors}
        else:
            try:
                run = services.training_run_launch(
                    project=project,
                    created_by=request.user,
                    method=method,
                    snapshot=_pick(DatasetSnapshot, chosen["snapshot"], project)
                    or _missing_snapshot(),
                    config=values,
                    name=request.POST.get("name", ""),
                    **_sources(chosen["base_source"], "base_model", project, listed),
                    **_sources(chosen["reward_source"], "reward_model", project, listed),
                )
            except DomainError as exc:
                errors = exc.extra.get("fields") or {}
                messages.error(request, exc.message)
            else:
                messages.success(request, f"Run {run.pk} queued.")
                return redirect(reverse("runs:run", args=[run.pk]))
    return render(
        request,
        "rlhf/run_new.html",
        {
            "project": project,
            "method": method,
            "method_title": METHOD_TITLES[method],
            "methods": [(m, METHOD_TITLES[m]) for m in METHODS],
            "fields": form_fields(method, values, errors),
            "choices": choices,
            "chosen": chosen,
            "base_options": _model_options(choices["policy_versions"], choices["model_runs"]),
            "reward_options": _model_options(choices["reward_versions"], choices["reward_runs"]),
            "online": method in services.ONLINE_METHODS,
        },
        status=400 if request.method == "POST" else 200,
    )


def _model_options(versions, runs) -> list[tuple[str, list[dict]]]:
    groups = [
        (
            "Registered versions",
            [
                {"value": f"version:{v.pk}", "label": f"{v.name} v{v.version} ({v.state})"}
                for v in versions
            ],
        ),
        (
            "Succeeded runs",
            [
                {"value": f"run:{r.pk}", "label": f"run {r.pk} ({r.method}) {r.name}".strip()}
                for r in runs
            ],
        ),
    ]
    return [(name, options) for name, options in groups if options]


def _sources(choice: str, prefix: str, project, listed_versions) -> dict:
    """``version:<id>`` or ``run:<id>`` from the form's model select, as launch arguments."""
    kind, _, pk = choice.partition(":")
    if kind == "version":
        found = next((v for v in listed_versions if str(v.pk) == pk), None)
        if found is None:
            raise ValidationFailed("choose one of the listed options", code="invalid_choice")
        return {f"{prefix}_version": found}
    if kind == "run":
        return {f"{prefix}_run": _pick(TrainingRun, pk, project)}
    return {}


def _range_errors(method: str, values: dict, type_errors: dict) -> dict:
    """The engine's verdict on the fields that did parse, so the form shows every error."""
    try:
        config_from_dict(method, {k: v for k, v in values.items() if k not in type_errors})
    except ConfigError as exc:
        return exc.errors
    return {}


def _missing_snapshot():
    raise ValidationFailed("choose a ready snapshot", code="snapshot_required")


@login_required
def run_page(request, run_id: int):
    run = selectors.training_run_get(user=request.user, run_id=run_id)
    run_versions.annotate_runs([run])
    return render(
        request,
        "rlhf/run.html",
        {
            "run": run,
            "project": run.project,
            "can_train": role_can(run.project.viewer_role, Capability.TRAIN),
            "config_rows": sorted(run.config.items()),
            "held_out_accuracy": selectors.training_run_held_out_accuracy(run=run),
        },
    )


@login_required
@require_POST
def run_action_page(request, run_id: int, action: str):
    run = selectors.training_run_get(user=request.user, run_id=run_id, capability=Capability.TRAIN)
    try:
        if action == "cancel":
            services.training_run_cancel(run=run, cancelled_by=request.user)
            messages.success(request, "Cancel requested.")
        else:
            services.training_run_retry(run=run, retried_by=request.user)
            messages.success(request, "Run queued again.")
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect(reverse("runs:run", args=[run.pk]))
