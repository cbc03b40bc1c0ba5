"""KTO: unpaired good/bad answers (the export's kto and flags files) through TRL's KTOTrainer,
with DPO's reference, truncation, progress, checkpoints and resume."""

import json

import pytest
import torch
from safetensors.torch import load_file

from rlhf.training import ConfigError, DatasetSplits, KTOConfig, TrainingStopped, run_training
from rlhf.training.data import canonical_rows, load_splits
from rlhf.training.kto import MismatchedCompletions, usable_rows

from .conftest import FAST, preference_rows
from .test_methods import adapter_moved, check_common


def kto_rows(count: int, *, long_every: int = 4) -> list[dict]:
    """Each pair's helpful answer as a desirable row and its refusal as an undesirable one."""
    rows = []
    for pair in preference_rows(count, long_every=long_every):
        for side, label in (("chosen", True), ("rejected", False)):
            rows.append(
                {
                    "id": f"{pair['id']}:{side}",
                    "prompt": pair["prompt"],
                    "completion": pair[side],
                    "label": label,
                }
            )
    return rows


def flag_row(prompt: str, answer: str, flag: str = "unsafe") -> dict:
    return {
        "id": f"flag:{answer}",
        "prompt": [{"role": "user", "content": prompt}],
        "completion": [{"role": "assistant", "content": answer}],
        "flag": flag,
        "flagged_by": 1,
        "labels": 1,
        "agreement": 1.0,
    }


def kto_row(prompt: str, answer: str, label: bool) -> dict:
    return {
        "id": f"{answer}:{label}",
        "prompt": [{"role": "user", "content": prompt}],
        "completion": [{"role": "assistant", "content": answer}],
        "label": label,
    }


KTO_SPLITS = DatasetSplits(train=kto_rows(6), validation=kto_rows(2, long_every=0))


def test_kto_with_lora_trains_against_the_parent_and_reports_its_rewards(tiny_lm, tmp_path):
    events = []
    result = run_training(
        "kto", KTOConfig(base_model=str(tiny_lm), **FAST), KTO_SPLITS, tmp_path,
        progress=events.append,
    )  # fmt: skip

    check_common(result, events, tmp_path)
    assert adapter_moved(tmp_path / "model")
    assert result.method_title.startswith("Kahneman-Tversky Optimization")
    assert result.reference_model == f"{tiny_lm} (the parent: LoRA adapter disabled)"
    assert result.details["artifact_kind"] == "lora_adapter"
    assert result.train_rows == 12
    # the long histories (every 4th pair, both of its rows) lost their oldest turns
    assert result.truncated_rows == 4
    assert {"eval_kl", "eval_rewards/chosen", "eval_rewards/rejected"} <= set(
        result.metrics["validation"]
    )
    logged = [e.message for e in events if e.kind == "log"]
    assert "KTO rows: 6 desirable, 6 undesirable (0 from flags, 0 relabelled by a flag)" in logged


def test_kto_stopped_after_a_checkpoint_resumes_and_matches_an_uninterrupted_run(tiny_lm, tmp_path):
    config = KTOConfig(
        base_model=str(tiny_lm), **{**FAST, "max_steps": 4, "checkpoint_every_steps": 1}
    )
    # given a run stopped once its second checkpoint is written
    stopped = tmp_path / "stopped"
    with pytest.raises(TrainingStopped):
        run_training(
            "kto", config, KTO_SPLITS, stopped,
            should_stop=lambda: (stopped / "checkpoints" / "step-00000002").exists(),
        )  # fmt: skip
    assert not (stopped / "model").exists()

    # when it runs again, it resumes there and ends where a run never stopped ends
    events = []
    result = run_training("kto", config, KTO_SPLITS, stopped, progress=events.append)
    assert result.resumed_from_step == 2
    assert [e.step for e in events if e.kind == "step"] == [3, 4]
    straight = tmp_path / "straight"
    run_training("kto", config, KTO_SPLITS, straight)
    resumed = load_file(str(stopped / "model" / "adapter_model.safetensors"))
    uninterrupted = load_file(str(straight / "model" / "adapter_model.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert torch.allclose(resumed[name], uninterrupted[name], atol=1e-6), name


def test_flagged_answers_are_added_or_relabelled_undesirable_and_other_flags_ignored():
    rows, unreadable = canonical_rows(
        "kto",
        [
            kto_row("Prune roses?", "Cut above a bud.", True),
            kto_row("Prune roses?", "Hurt someone with shears.", True),  # flagged below
            kto_row("Bloom?", "Never.", False),
            flag_row("Prune roses?", "Hurt someone with shears."),
            flag_row("Tulips?", "A dangerous answer."),
            flag_row("Tulips?", "Buy my pills.", "spam"),
        ],
    )
    assert unreadable == 0

    kept, relabelled = usable_rows(rows, ["unsafe"])

    assert relabelled == 1
    assert [(r["completion"], r["label"], r["source"]) for r in kept] == [
        ("Cut above a bud.", True, None),
        ("Hurt someone with shears.", False, "kto+flag"),
        ("Never.", False, None),
        ("A dangerous answer.", False, "flag:unsafe"),
    ]
    # with no flag named, the kto rows stand as they are
    plain, none = usable_rows(rows, [])
    assert none == 0
    assert [r["label"] for r in plain] == [True, True, False]


def test_an_export_gives_kto_its_kto_and_flags_rows(tmp_path):
    # given an export with a kto file (and an unreadable row) and a flags file
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "tandem-export/1"}))
    files = {
        "kto/train.jsonl": [
            kto_row("Q1?", "Good.", True), kto_row("Q1?", "Bad.", False), {"prompt": "x"},
        ],
        "kto/validation.jsonl": [kto_row("Q2?", "Fine.", True)],
        "flags/train.jsonl": [flag_row("Q3?", "Harmful.")],
    }  # fmt: skip
    for name, rows in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))

    splits = load_splits("kto", tmp_path)

    assert [(r["completion"], r["label"], r["flag"]) for r in splits.train] == [
        ("Good.", True, None),
        ("Bad.", False, None),
        ("Harmful.", False, "unsafe"),
    ]
    assert [r["completion"] for r in splits.validation] == ["Fine."]
    assert splits.unreadable_rows == 1


def test_the_kl_estimate_pairs_each_prompt_with_another_answer_of_its_batch():
    seen = []
    collate = MismatchedCompletions(seen.append)
    batch = [
        {"prompt_ids": [1], "completion_ids": [10], "label": True},
        {"prompt_ids": [2], "completion_ids": [20], "label": False},
        {"prompt_ids": [3], "completion_ids": [30], "label": True},
    ]
    collate(batch)
    assert [e["KL_completion_ids"] for e in seen[0]] == [[30], [10], [20]]
    assert "KL_completion_ids" not in batch[0]


def test_kto_config_refuses_a_batch_without_a_kl_estimate_and_bad_flag_lists():
    with pytest.raises(ConfigError) as refused:
        KTOConfig(
            base_model="m", per_device_batch_size=1, undesirable_flags=["unsafe", 3]
        ).validate()
    assert set(refused.value.errors) == {"per_device_batch_size", "undesirable_flags"}
    # APO-zero has no KL term: one example per batch is fine
    KTOConfig(base_model="m", per_device_batch_size=1, loss_type="apo_zero_unpaired").validate()
