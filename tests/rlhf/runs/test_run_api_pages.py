"""The run API, the launch form and live page, and ``manage.py train`` (no training here)."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from models_registry.services import model_version_register
from rlhf.models import RunStatus, TrainingRun, TrainingRunMetric
from rlhf.runs import services as run_services
from rlhf.runs.selectors import training_run_metrics
from rlhf.training.config import config_schema


@pytest.fixture
def api(engineer):
    client = APIClient()
    client.force_authenticate(engineer)
    return client


@pytest.fixture
def run(project, engineer, snapshot, reward_config):
    return run_services.training_run_launch(
        project=project,
        created_by=engineer,
        method="reward",
        snapshot=snapshot,
        config=reward_config,
    )


def test_api_launches_lists_shows_and_cancels_a_run(api, project, snapshot, reward_config):
    launched = api.post(
        f"/api/projects/{project.pk}/runs/",
        {"method": "reward", "snapshot": snapshot.pk, "config": reward_config, "name": "api"},
        format="json",
    )
    assert launched.status_code == 202, launched.content
    run_id = launched.json()["id"]
    assert launched.json()["config"]["max_steps"] == 8

    listed = api.get(f"/api/projects/{project.pk}/runs/").json()
    assert [r["id"] for r in listed] == [run_id]
    detail = api.get(f"/api/runs/{run_id}/").json()
    assert (detail["status"], detail["method"], detail["created_by"]) == (
        "queued",
        "reward",
        "eve-engineer",
    )

    cancelled = api.post(f"/api/runs/{run_id}/cancel/")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = api.post(f"/api/runs/{run_id}/cancel/")
    assert (again.status_code, again.json()["error"]) == (409, "run_finished")


def test_api_refuses_an_invalid_config_with_the_fields_at_fault(
    api, project, snapshot, reward_config
):
    response = api.post(
        f"/api/projects/{project.pk}/runs/",
        {"method": "reward", "snapshot": snapshot.pk, "config": {**reward_config, "lora_r": 0}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_config"
    assert response.json()["fields"] == {"lora_r": "must be >= 1"}
    assert TrainingRun.objects.count() == 0


def test_api_refuses_a_base_model_folder_that_links_out_of_its_model_root(
    api, project, snapshot, reward_config, tiny_models, tmp_path
):
    # given a folder under a model root whose weights are a link to a file outside every root
    import shutil

    outside = tmp_path / "elsewhere"
    shutil.copytree(tiny_models["encoder"], outside)
    linked = tiny_models["root"] / "linked-encoder"
    shutil.copytree(tiny_models["encoder"], linked)
    (linked / "model.safetensors").unlink()
    (linked / "model.safetensors").symlink_to(outside / "model.safetensors")

    # when a run is launched from it over HTTP
    response = api.post(
        f"/api/projects/{project.pk}/runs/",
        {"method": "reward", "snapshot": snapshot.pk,
         "config": {**reward_config, "base_model": str(linked)}},
        format="json",
    )  # fmt: skip

    # then the model-folder rule refuses it, as the registry would, and nothing is created
    assert response.status_code == 400, response.content
    assert response.json()["fields"] == {
        "base_model": "holds a symbolic link out of its model root: model.safetensors"
    }
    assert TrainingRun.objects.count() == 0


def test_api_hides_runs_from_other_projects_and_refuses_launch_without_train(
    run, outsider, annotator, project, snapshot
):
    foreign = APIClient()
    foreign.force_authenticate(outsider)
    for url in (f"/api/runs/{run.pk}/", f"/api/runs/{run.pk}/metrics/"):
        assert foreign.get(url).status_code == 404
    assert foreign.post(f"/api/runs/{run.pk}/cancel/").status_code == 404

    member = APIClient()
    member.force_authenticate(annotator)
    launch = member.post(
        f"/api/projects/{project.pk}/runs/",
        {"method": "reward", "snapshot": snapshot.pk},
        format="json",
    )
    assert launch.status_code == 403
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert TrainingRun.objects.count() == 1


def test_run_reads_never_load_the_snapshots_frozen_label_ids(api, project, run):
    # given a run whose snapshot froze its label ids (megabytes for a large project)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # when its project's runs and the run itself are read
    with CaptureQueriesContext(connection) as queries:
        listed = api.get(f"/api/projects/{project.pk}/runs/")
        shown = api.get(f"/api/runs/{run.pk}/")

    # then both answer, and no query fetched the snapshot's blobs
    assert (listed.status_code, shown.status_code) == (200, 200)
    assert shown.json()["dataset_snapshot"] == run.dataset_snapshot_id
    assert [q["sql"] for q in queries.captured_queries if "label_ids" in q["sql"]] == []


def test_metrics_are_served_incrementally_and_thinned(api, run):
    TrainingRunMetric.objects.bulk_create(
        TrainingRunMetric(
            run=run, attempt=1, step=step, name=name, value=step / 10, recorded_at=run.created_at
        )
        for step in range(1, 10_001)
        for name in ("loss", "accuracy")
    )

    everything = api.get(f"/api/runs/{run.pk}/metrics/").json()
    thinned = api.get(f"/api/runs/{run.pk}/metrics/?max_points=500&name=loss").json()
    newer = api.get(f"/api/runs/{run.pk}/metrics/?after={everything['last_id'] - 2}").json()

    assert len(everything["series"]["loss"]) == 10_000
    assert set(thinned["series"]) == {"loss"}
    assert len(thinned["series"]["loss"]) == 500
    assert thinned["series"]["loss"][-1] == [10_000, 1000.0]
    assert newer["series"] == {"loss": [[10_000, 1000.0]], "accuracy": [[10_000, 1000.0]]}
    assert training_run_metrics(run=run, after_id=everything["last_id"])["series"] == {}


def test_methods_endpoint_documents_every_config_field(api):
    methods = {m["method"]: m for m in api.get("/api/training/methods/").json()}

    assert set(methods) == {"sft", "reward", "dpo", "kto", "ppo", "rloo", "grpo"}
    gamma = next(f for f in methods["ppo"]["fields"] if f["name"] == "gamma")
    assert gamma["default"] == 1.0
    assert gamma["help"]
    assert methods["reward"]["shape"] == "preference"


def test_launch_form_has_an_input_per_config_field_with_its_default(
    client, engineer, project, snapshot, tiny_models
):
    base = model_version_register(
        project=project, folder=tiny_models["lm"], name="tiny-lm", approve_as_base=True
    )
    client.force_login(engineer)

    page = client.get(reverse("runs:new", args=[project.pk]) + "?method=ppo")

    assert page.status_code == 200
    html = page.content.decode()
    for field in config_schema("ppo"):
        assert f'name="{field["name"]}"' in html, field["name"]
    assert 'name="clip_range" value="0.2"' in html
    assert 'name="lam" value="0.95"' in html
    assert "GAE lambda" in html
    option = f'<option value="version:{base.pk}">tiny-lm v1 (approved) · LlamaForCausalLM</option>'
    assert option in html
    assert "script-src 'self'" in page["Content-Security-Policy"]


def _reward_form(snapshot, tiny_models) -> dict:
    """The launch form of an encoder reward model as the page fills it in (defaults)."""
    form = {
        field["name"]: (
            ", ".join(field["default"]) if isinstance(field["default"], list) else field["default"]
        )
        for field in config_schema("reward")
        if not isinstance(field["default"], bool)
    }
    form.update(
        method="reward",
        snapshot=snapshot.pk,
        backbone="encoder",
        base_model=str(tiny_models["encoder"]),
        group_by_length="on",
    )
    return form


def test_launch_form_shows_errors_next_to_fields_and_launches_when_valid(
    client, engineer, project, snapshot, tiny_models
):
    client.force_login(engineer)
    url = reverse("runs:new", args=[project.pk])
    form = _reward_form(snapshot, tiny_models)

    refused = client.post(url, {**form, "learning_rate": "-1", "max_length": "abc"})
    assert refused.status_code == 400
    html = refused.content.decode()
    assert 'data-testid="error-learning_rate"' in html
    assert 'data-testid="error-max_length">must be a whole number' in html
    assert TrainingRun.objects.count() == 0

    launched = client.post(url, form)
    assert launched.status_code == 302
    run = TrainingRun.objects.get()
    assert launched["Location"] == reverse("runs:run", args=[run.pk])
    assert run.config["backbone"] == "encoder"
    assert run.config["group_by_length"] is True
    assert run.config["use_lora"] is False
    assert run.config["lora_target_modules"][0] == "q_proj"


@pytest.mark.parametrize(
    "tampered",
    [{"snapshot": "abc"}, {"base_source": "run:abc"}, {"reward_source": "version:1x"}],
)
def test_launch_form_with_a_tampered_choice_is_refused_not_a_server_error(
    client, engineer, project, snapshot, tiny_models, tampered
):
    # given the launch form posted with a choice that is no id
    client.force_login(engineer)
    form = {**_reward_form(snapshot, tiny_models), **tampered}

    # when it is submitted
    response = client.post(reverse("runs:new", args=[project.pk]), form)

    # then the form comes back refused, and nothing was launched
    assert response.status_code == 400
    assert "choose one of the listed options" in response.content.decode()
    assert TrainingRun.objects.count() == 0


def test_live_page_loads_its_script_and_names_its_websocket(client, engineer, outsider, run):
    client.force_login(engineer)
    page = client.get(reverse("runs:run", args=[run.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "rlhf/run_live.js" in html
    assert f'data-ws="/ws/runs/{run.pk}/"' in html
    assert 'data-chart="loss"' in html

    client.force_login(outsider)
    assert client.get(reverse("runs:run", args=[run.pk])).status_code == 404


def test_cli_launches_lists_and_cancels(project, snapshot, tiny_models, run_settings):
    out = StringIO()
    call_command(
        "train",
        "reward",
        "--project",
        project.slug,
        "--snapshot",
        str(snapshot.pk),
        "--set",
        "backbone=encoder",
        "--set",
        f"base_model={tiny_models['encoder']}",
        "--set",
        "max_steps=5",
        stdout=out,
    )
    run = TrainingRun.objects.get()
    assert f"queued run {run.pk}" in out.getvalue()
    assert run.config["max_steps"] == 5

    listing = StringIO()
    call_command("train", "list", "--project", project.slug, stdout=listing)
    assert "reward" in listing.getvalue()
    assert "queued" in listing.getvalue()

    shown = StringIO()
    call_command("train", "show", str(run.pk), stdout=shown)
    assert json.loads(shown.getvalue())["config"]["backbone"] == "encoder"

    call_command("train", "cancel", str(run.pk), stdout=StringIO())
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED

    with pytest.raises(CommandError, match="max_steps: must be >= -1"):
        call_command(
            "train", "reward", "--project", project.slug, "--snapshot", str(snapshot.pk),
            "--set", "max_steps=-5", stdout=StringIO(),
        )  # fmt: skip


def test_run_page_shows_held_out_accuracy_with_its_wilson_interval(client, engineer, run):
    # given a finished reward run that scored 30 of 43 test pairs and 8 of 10 validation pairs
    run.metrics = {
        "train_loss": 0.6,
        "train": {"pairs": 512, "accuracy": 0.9},
        "validation": {"pairs": 10, "accuracy": 0.8},
        "test": {"pairs": 43, "accuracy": 30 / 43},
    }
    run.save(update_fields=["metrics"])
    client.force_login(engineer)

    # when its page is shown
    html = client.get(reverse("runs:run", args=[run.pk])).content.decode()

    # then both held-out splits carry their pairs and 95% Wilson interval (computed by hand:
    # 30/43: centre 0.6815, half-width 0.1325; 8/10: 0.4902 to 0.9433), train is not a
    # held-out figure, and the validation interval says it includes chance
    assert 'data-testid="held-out-accuracy"' in html
    test_row = html.split('data-testid="held-out-test"')[1].split("</tr>")[0]
    assert "<td>43</td><td>0.698</td><td>0.549 to 0.814" in test_row
    assert "includes chance" not in test_row
    validation_row = html.split('data-testid="held-out-validation"')[1].split("</tr>")[0]
    assert "<td>10</td><td>0.800</td><td>0.490 to 0.943" in validation_row
    assert "includes chance" in validation_row
    assert 'data-testid="held-out-train"' not in html


def test_run_page_without_final_metrics_shows_no_held_out_table(client, engineer, run):
    client.force_login(engineer)
    html = client.get(reverse("runs:run", args=[run.pk])).content.decode()
    assert 'data-testid="held-out-accuracy"' not in html


def test_cli_follow_prints_the_log_and_its_steps_on_stderr(run):
    # given a run that has ended after 8 of 8 steps
    TrainingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.SUCCEEDED,
        progress={"step": 8, "total_steps": 8},
        log_tail="step 4 loss 0.6\nstep 8 loss 0.4",
    )
    out, err = StringIO(), StringIO()

    # when it is followed from a log (not a terminal)
    call_command("train", "follow", str(run.pk), stdout=out, stderr=err)

    # then the log and the outcome are on stdout, its steps on stderr
    assert out.getvalue().splitlines() == [
        "step 4 loss 0.6",
        "step 8 loss 0.4",
        f"run {run.pk}: succeeded",
    ]
    assert err.getvalue().splitlines() == [f"run {run.pk} [succeeded attempt 1]: 8/8 step (100%)"]
