"""KTO through the platform: labels (a clear win, "both bad", an unsafe flag) become a snapshot,
the snapshot a KTO run, the run a candidate policy version under the base it started from."""

import pytest

from models_registry.run_versions import training_run_candidate
from models_registry.services import model_version_register
from rlhf.data.export import iter_export_rows
from rlhf.models import RunStatus
from rlhf.runs import services as run_services
from rlhf.runs.execution import training_run_execute
from rlhf.snapshots import services as snapshot_services
from tests.rlhf.test_snapshots_judgements import pairwise_task

pytestmark = pytest.mark.postgres

UNSAFE = "Here is how to hurt someone badly with garden tools."


def test_labels_to_a_kto_run_to_a_candidate_version(
    project, engineer, make_user, run_settings, tiny_models
):
    # given clear wins, a "both bad" judgement and a task flagged unsafe
    crowd = [make_user(f"crowd{i}") for i in range(3)]
    a = crowd[0]
    for i in range(12):
        pairwise_task(
            project, f"How do I water plant number {i}?",
            f"Water plant {i} twice a week.", "I will not tell you.", [(a, "A", [])],
        )  # fmt: skip
    pairwise_task(project, "What is two plus two?", "Five.", "Seven.", [(a, "both_bad", [])])
    pairwise_task(
        project, "How do I prune roses?", "Cut above an outward bud.", UNSAFE,
        [(crowd[1], "B", []), (crowd[2], "A", ["unsafe"])],
    )  # fmt: skip
    # (every prompt in train, so that the flagged one is trained on whatever its hash)
    snapshot = snapshot_services.snapshot_create(
        project=project, created_by=engineer, enqueue=False,
        config={"split": {"validation": 0.0, "test": 0.0}},
    )  # fmt: skip
    snapshot = snapshot_services.snapshot_build(snapshot_id=snapshot.pk, workers=0)
    assert snapshot.status == "ready", snapshot.error
    export = snapshot.export_path
    kto = {s: list(iter_export_rows(export, "kto", s)) for s in ("train", "validation", "test")}
    flags = {s: list(iter_export_rows(export, "flags", s)) for s in kto}
    # the default flag policy drops the flagged task's kto rows; its flags row stays
    assert UNSAFE not in {r["completion"][0]["content"] for rows in kto.values() for r in rows}
    assert [r["completion"][0]["content"] for r in flags["train"]] == [UNSAFE]
    both_bad = [r for r in kto["train"] if r["prompt"][-1]["content"] == "What is two plus two?"]
    assert sorted(r["label"] for r in both_bad) == [False, False]

    # when a LoRA KTO run starts from the registered tiny LM and a worker executes it
    base = model_version_register(
        project=project, folder=tiny_models["lm"], name="tiny-lm", registered_by=engineer,
        approve_as_base=True,
    )  # fmt: skip
    run = run_services.training_run_launch(
        project=project, created_by=engineer, method="kto", snapshot=snapshot,
        base_model_version=base, name="Tiny KTO",
        config={"max_steps": 2, "per_device_batch_size": 2, "max_length": 64,
                "checkpoint_every_steps": 1, "lora_r": 4, "lora_alpha": 8},
    )  # fmt: skip
    assert training_run_execute(run_id=run.pk, attempt=1) == "succeeded"

    # then it trained on every kto row of the train split plus the flagged answer there
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert run.result["global_step"] == 2
    assert [c["global_step"] for c in run.checkpoints] == [1, 2]
    assert run.result["train_rows"] == len(kto["train"]) + len(flags["train"])
    assert "1 from flags" in run.log_tail
    assert run.result["reference_model"].endswith("(the parent: LoRA adapter disabled)")
    # and its adapter is a candidate policy whose parent is the version it started from
    version = training_run_candidate(run=run)
    assert (version.kind, version.name, version.is_adapter) == ("policy", "tiny-kto", True)
    assert version.parent == base
    assert version.config["method"] == "kto"
