"""Training-run pages: a project's runs, the launch form, and one run's live page.

The launch form is generated from the method's config dataclass (``config_schema``): one input
per field, with its documented default, range and meaning, in the sections of ``GROUPS``, shown
only where it applies (``FIELD_APPLIES_WHEN``, re-evaluated by ``rlhf/static/rlhf/run_new.js``)
and pre-filled by a preset (``PRESETS``); the engine's own validation decides, and its messages
are shown next to the fields. The compare page overlays picked runs' curves
(``rlhf/static/rlhf/run_compare.js``, Chart.js) and sets their configs side by side. The live
page is server-rendered and then kept current by ``rlhf/static/rlhf/run_live.js`` over the
run's websocket.
"""

from __future__ import annotations

import json
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
    GROUPS,
    METHOD_TITLES,
    METHODS,
    PRESETS,
    ConfigError,
    config_from_dict,
    config_schema,
    field_applies,
    is_seq2seq,
    methods_for_base,
    preset_values,
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


def gpus_present() -> bool:
    """Whether this host has an NVIDIA GPU, for what the launch form offers (the worker decides
    where a run trains). ``TANDEM_GPU_PRESENT`` (True/False) overrides the driver's
    ``/proc/driver/nvidia/gpus`` listing; the web process never imports torch."""
    override = getattr(settings, "TANDEM_GPU_PRESENT", None)
    if override is not None:
        return bool(override)
    listing = Path("/proc/driver/nvidia/gpus")
    try:
        return listing.is_dir() and any(listing.iterdir())
    except OSError:
        return False


def form_fields(method: str, values: dict, errors: dict, *, gpu: bool = False) -> list[dict]:
    """The launch form's inputs for ``method``: schema entries plus the value to show.

    ``applies`` says whether the field has an effect given the other values (the page's script
    re-evaluates it as they change); ``offered`` is False for settings the platform's workers
    never use (multi-GPU strategies, which need ``accelerate launch``), kept as hidden inputs
    with their values. Without a GPU, the ``device`` select does not offer ``cuda``.
    """
    schema = config_schema(method)
    shown = {f["name"]: values.get(f["name"], f["default"]) for f in schema}
    fields = []
    for field in schema:
        value = shown[field["name"]]
        if field["type"] == "list" and isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        choices = [str(c) for c in field.get("choices", [])]
        if field["name"] == "device" and not gpu:
            choices = [c for c in choices if c != "cuda" or str(value) == "cuda"]
        fields.append(
            {
                **field,
                "input": _input_type(field),
                "value": value,
                "step": "1" if field["type"] == "int" else "any",
                "error": errors.get(field["name"], ""),
                "choices": choices,
                "value_text": str(value),
                "applies": field_applies(field["name"], shown),
                "applies_when_json": json.dumps(field["applies_when"]),
                "offered": not field.get("multi_gpu") or bool(errors.get(field["name"])),
            }
        )
    return fields


def form_groups(fields: list[dict]) -> list[dict]:
    """The fields in the launch form's sections (GROUPS order); empty sections left out."""
    groups = []
    for key, title in GROUPS:
        members = [f for f in fields if f["group"] == key]
        if members:
            groups.append({"key": key, "title": title, "fields": members})
    return groups


def form_presets(method: str, *, gpu: bool) -> list[dict]:
    """The presets the form offers, with the values each sets for ``method`` (for its script);
    a GPU preset is listed but disabled on a host without one."""
    return [
        {
            "name": name,
            "title": preset["title"],
            "help": preset["help"],
            "values": preset_values(method, name),
            "available": gpu or not preset["needs_gpu"],
        }
        for name, preset in PRESETS.items()
    ]


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
    return _run_list(request, project_id)


def _run_list(request, project_id: int, *, picked=(), status: int = 200):
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
            "picked": {str(pk) for pk in picked},
        },
        status=status,
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
    gpu = gpus_present()
    values = {"base_model": default_base_model()}
    errors: dict = {}
    chosen = {k: request.POST.get(k, "") for k in ("snapshot", "base_source", "reward_source")}
    preset = request.POST.get("preset") or request.GET.get("preset") or ""
    if preset not in PRESETS:
        preset = ""
    if request.method == "GET":
        chosen["base_source"] = request.GET.get("base_source", "")
        values.update(preset_values(method, preset))
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
                    preset=preset,
                    **_sources(chosen["base_source"], "base_model", project, listed),
                    **_sources(chosen["reward_source"], "reward_model", project, listed),
                )
            except DomainError as exc:
                errors = exc.extra.get("fields") or {}
                messages.error(request, exc.message)
            else:
                messages.success(request, f"Run {run.pk} queued.")
                return redirect(reverse("runs:run", args=[run.pk]))
    base_folder = _base_folder(chosen["base_source"], values, listed, choices["model_runs"])
    return render(
        request,
        "rlhf/run_new.html",
        {
            "project": project,
            "method": method,
            "method_title": METHOD_TITLES[method],
            # Only the methods that can train the chosen base (an encoder-decoder: SFT).
            "methods": [(m, METHOD_TITLES[m]) for m in methods_for_base(base_folder)],
            "base_is_seq2seq": is_seq2seq(base_folder),
            "groups": form_groups(form_fields(method, values, errors, gpu=gpu)),
            "presets": form_presets(method, gpu=gpu),
            "presets_json": json.dumps(form_presets(method, gpu=gpu)),
            "preset": preset,
            "gpu": gpu,
            "choices": choices,
            "chosen": chosen,
            "base_options": _model_options(choices["policy_versions"], choices["model_runs"]),
            "reward_options": _model_options(choices["reward_versions"], choices["reward_runs"]),
            "online": method in services.ONLINE_METHODS,
        },
        status=400 if request.method == "POST" else 200,
    )


def _base_folder(choice: str, values: dict, listed_versions, runs) -> str:
    """The folder of the base model the form has chosen (a listed version or run, else the
    base_model field), to tell which methods apply; "" when it is none of those."""
    kind, _, pk = choice.partition(":")
    if kind == "version":
        found = next((v for v in listed_versions if str(v.pk) == pk), None)
        return found.artifact_dir if found else ""
    if kind == "run":
        found = next((r for r in runs if str(r.pk) == pk), None)
        return services.run_model_dir(found) if found else ""
    folder = values.get("base_model")
    return folder if isinstance(folder, str) else ""


def _model_options(versions, runs) -> list[tuple[str, list[dict]]]:
    groups = [
        (
            "Registered versions",
            [
                {
                    "value": f"version:{v.pk}",
                    "label": f"{v.name} v{v.version} ({v.state}) · {v.architecture}",
                }
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
def run_compare_page(request, project_id: int):
    """Runs picked on the runs list (``?run=1&run=2``): curves overlaid, configs side by side."""
    run_ids = request.GET.getlist("run")
    try:
        compared = selectors.training_run_compare(
            user=request.user, project_id=project_id, run_ids=run_ids
        )
    except ValidationFailed as exc:
        messages.error(request, exc.message)
        return _run_list(request, project_id, picked=run_ids, status=400)
    query = "&".join(f"run={run.pk}" for run in compared["runs"])
    return render(
        request,
        "rlhf/run_compare.html",
        {
            **compared,
            "curves_url": f"{reverse('api-runs-compare', args=[project_id])}?{query}",
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
