"""Comparing runs: the selector's side-by-side rows, the curves endpoint and the page."""

import pytest
from django.http import Http404
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from config.errors import ValidationFailed
from rlhf.models import RunStatus, TrainingRun, TrainingRunMetric
from rlhf.runs.selectors import training_run_compare


def _run(project, snapshot, method, config, name=""):
    return TrainingRun.objects.create(
        project=project, name=name, method=method, method_title=method, config=config,
        dataset_snapshot=snapshot, status=RunStatus.SUCCEEDED, attempt=1,
    )  # fmt: skip


@pytest.fixture
def pair(project, snapshot):
    first = _run(project, snapshot, "dpo", {"learning_rate": 5e-5, "beta": 0.1, "seed": 42}, "a")
    second = _run(project, snapshot, "dpo", {"learning_rate": 1e-5, "beta": 0.1, "seed": 42}, "b")
    now = timezone.now()
    TrainingRunMetric.objects.bulk_create(
        TrainingRunMetric(run=run, attempt=1, step=s, name="loss", value=v / s, recorded_at=now)
        for run, v in ((first, 1.0), (second, 2.0))
        for s in (1, 2, 3)
    )
    return first, second


def test_compare_rows_say_exactly_which_fields_differ(engineer, project, snapshot, pair):
    first, second = pair
    kto_config = {"learning_rate": 5e-5, "beta": 0.1, "desirable_weight": 1.0}
    kto = _run(project, snapshot, "kto", kto_config)

    compared = training_run_compare(
        user=engineer, project_id=project.pk, run_ids=[str(first.pk), str(second.pk)]
    )
    rows = {row["name"]: (row["values"], row["differs"]) for row in compared["rows"]}
    assert [r.pk for r in compared["runs"]] == [first.pk, second.pk]
    assert rows == {
        "method": (["dpo", "dpo"], False),
        "snapshot": ([snapshot.pk, snapshot.pk], False),
        "status": (["succeeded", "succeeded"], False),
        "beta": ([0.1, 0.1], False),
        "learning_rate": ([5e-5, 1e-5], True),
        "seed": ([42, 42], False),
    }

    # a field only one run's method has is a difference, shown as absent (None) for the other
    three = training_run_compare(
        user=engineer, project_id=project.pk, run_ids=[second.pk, kto.pk, second.pk]
    )
    rows = {row["name"]: (row["values"], row["differs"]) for row in three["rows"]}
    assert [r.pk for r in three["runs"]] == [second.pk, kto.pk]  # repeats dropped, order kept
    assert rows["desirable_weight"] == ([None, 1.0], True)
    assert rows["seed"] == ([42, None], True)
    assert rows["method"] == (["dpo", "kto"], True)
    assert rows["beta"] == ([0.1, 0.1], False)


def test_compare_refuses_one_run_bad_ids_and_runs_of_another_project(
    engineer, outsider, project, snapshot, pair
):
    first, second = pair
    with pytest.raises(ValidationFailed) as one:
        training_run_compare(user=engineer, project_id=project.pk, run_ids=[first.pk])
    assert one.value.extra == {"field": "run"}
    with pytest.raises(ValidationFailed):
        training_run_compare(user=engineer, project_id=project.pk, run_ids=[first.pk, "x"])
    with pytest.raises(Http404):  # an outsider cannot see them through their own project
        training_run_compare(user=outsider, project_id=project.pk, run_ids=[first.pk, second.pk])
    with pytest.raises(Http404):  # nor a run id that is not this project's
        training_run_compare(user=engineer, project_id=project.pk, run_ids=[first.pk, 999999])


def test_curves_endpoint_returns_each_runs_series_and_the_rows(engineer, project, pair):
    first, second = pair
    api = APIClient()
    api.force_authenticate(engineer)

    body = api.get(
        f"/api/projects/{project.pk}/runs/compare/", {"run": [first.pk, second.pk]}
    ).json()

    assert body["runs"] == [{"id": first.pk, "label": f"#{first.pk} a"},
                            {"id": second.pk, "label": f"#{second.pk} b"}]  # fmt: skip
    assert body["metrics"] == {
        "loss": {
            str(first.pk): [[1, 1.0], [2, 0.5], [3, pytest.approx(1 / 3)]],
            str(second.pk): [[1, 2.0], [2, 1.0], [3, pytest.approx(2 / 3)]],
        }
    }
    assert [r["name"] for r in body["config"] if r["differs"]] == ["learning_rate"]
    refused = api.get(f"/api/projects/{project.pk}/runs/compare/", {"run": [first.pk]})
    assert (refused.status_code, refused.json()["field"]) == (400, "run")


def test_compare_page_highlights_differences_and_the_list_offers_checkboxes(
    client, engineer, project, pair
):
    first, second = pair
    client.force_login(engineer)

    listing = client.get(reverse("runs:list", args=[project.pk])).content.decode()
    assert f'name="run" value="{first.pk}"' in listing
    page = client.get(reverse("runs:compare", args=[project.pk]), {"run": [first.pk, second.pk]})

    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="config-row-learning_rate" data-differs="true" class="differs"' in html
    assert 'data-testid="config-row-beta" data-differs="false">' in html
    assert "vendor/chartjs/chart.umd.min.js" in html
    alone = client.get(reverse("runs:compare", args=[project.pk]), {"run": [first.pk]})
    assert alone.status_code == 400
    assert "pick between 2 and 8 runs to compare" in alone.content.decode()
