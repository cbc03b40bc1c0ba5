"""Encoder-decoder SFT through the platform: a registered tiny T5 is offered SFT only, trains
from a snapshot, becomes a candidate adapter under it, and that candidate answers prompts in a
generation job; a DPO launch from the T5 is refused naming base_model, and nothing is created."""

import json

import pytest
from django.urls import reverse

from annotation.models import Prompt, Response
from config.errors import ValidationFailed
from models_registry.generation import generation_job_create, generation_job_run
from models_registry.run_versions import training_run_candidate
from models_registry.services import model_version_register
from rlhf.models import DatasetSnapshot, RunStatus, SnapshotStatus, TrainingRun
from rlhf.runs import services as run_services
from rlhf.runs.execution import training_run_execute
from rlhf.training.base_models import build_tiny_seq2seq
from tests.rlhf.runs.conftest import preference_rows


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    return build_tiny_seq2seq(tmp_path_factory.mktemp("models") / "t5")


@pytest.fixture
def t5_settings(run_settings, tiny_t5):
    run_settings.TANDEM_MODEL_ROOTS = [*run_settings.TANDEM_MODEL_ROOTS, tiny_t5.parent]
    return run_settings


@pytest.fixture
def sft_snapshot(project, engineer, t5_settings, tmp_path):
    export = tmp_path / "export"
    (export / "sft").mkdir(parents=True)
    for split, count in (("train", 12), ("validation", 2), ("test", 2)):
        rows = [
            {
                "id": f"{split}-{i}",
                "messages": [
                    {"role": "user", "content": f"How long do I boil egg {i}?"},
                    {"role": "assistant", "content": f"Boil egg {i} for seven minutes."},
                ],
                "source": "correction",
            }
            for i in range(count)
        ]
        (export / "sft" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # and preference pairs, so that a DPO launch is refused for its base, not for its data
    (export / "preference").mkdir()
    (export / "preference" / "train.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in preference_rows(2))
    )
    (export / "manifest.json").write_text(json.dumps({"format": "tandem-export/1"}))
    return DatasetSnapshot.objects.create(
        project=project, name="eggs", created_by=engineer, status=SnapshotStatus.READY,
        max_label_id=0, config={}, export_path=str(export),
        row_counts={"sft": {"train": 12, "validation": 2, "test": 2}, "preference": {"train": 2}},
    )  # fmt: skip


def test_a_t5_base_trains_with_sft_registers_and_generates(
    client, project, engineer, sft_snapshot, tiny_t5
):
    base = model_version_register(
        project=project, folder=tiny_t5, name="tiny-t5", registered_by=engineer,
        approve_as_base=True,
    )  # fmt: skip
    assert base.architecture == "T5ForConditionalGeneration"

    # given the T5 chosen on the launch form, only SFT is offered
    client.force_login(engineer)
    page = client.get(
        reverse("runs:new", args=[project.pk]) + f"?method=sft&base_source=version:{base.pk}"
    )
    html = page.content.decode()
    links = html.split('data-testid="method-links">', 1)[1].split("</p>", 1)[0]
    assert links.strip() == "<strong>sft</strong>"
    assert 'data-testid="seq2seq-note"' in html

    # a DPO launch from it is refused with the field named, and no run is recorded
    with pytest.raises(ValidationFailed) as refused:
        run_services.training_run_launch(
            project=project, created_by=engineer, method="dpo", snapshot=sft_snapshot,
            base_model_version=base, config={"max_steps": 2},
        )  # fmt: skip
    assert set(refused.value.extra["fields"]) == {"base_model"}
    assert TrainingRun.objects.count() == 0

    # when a LoRA SFT run starts from it and a worker executes it
    run = run_services.training_run_launch(
        project=project, created_by=engineer, method="sft", snapshot=sft_snapshot,
        base_model_version=base, name="Tiny T5 SFT",
        config={"max_steps": 2, "per_device_batch_size": 2, "max_length": 64,
                "checkpoint_every_steps": 1, "eval_generations": 2, "eval_max_new_tokens": 4},
    )  # fmt: skip
    assert training_run_execute(run_id=run.pk, attempt=1) == "succeeded"

    # then it was evaluated on the held-out corrections and registered under its base
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert run.metrics["architecture"] == "seq2seq"
    assert run.metrics["generation"]["generations"] == 2
    assert run.metrics["generation"]["references"] == "corrections"
    version = training_run_candidate(run=run)
    assert (version.kind, version.is_adapter, version.parent) == ("policy", True, base)

    # and the candidate answers the project's prompts through a generation job
    prompts = [
        Prompt.objects.create(
            project=project, messages=[{"role": "user", "content": text}], content_hash=f"h{i}"
        )
        for i, text in enumerate(["How long for a soft egg?", "And a hard one?"])
    ]
    job = generation_job_create(
        version=version, prompt_ids=[p.pk for p in prompts], enqueue=False,
        config={"max_new_tokens": 4, "temperature": 0.0, "backend": "transformers"},
    )  # fmt: skip
    job = generation_job_run(job_id=job.pk)
    assert job.status == "succeeded", job.error
    answers = Response.objects.filter(prompt__in=prompts, origin="model")
    assert answers.count() == 2
    assert all(1 <= a.generation["new_tokens"] <= 4 for a in answers)
