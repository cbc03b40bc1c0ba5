"""Rubric, ranking and correction adjudications, recorded through the reviewer's service,
decide what a snapshot exports (PostgreSQL, exact rows)."""

import pytest

from annotation.labels import canonical_correction
from annotation.models import Label, Prompt, Response, Task, TaskItem
from annotation.quality.services import adjudication_decide
from config.errors import ValidationFailed
from tests.rlhf.test_snapshots_judgements import SAFE, build, rows, rubric_task

pytestmark = pytest.mark.postgres

RUDE = "Roses? Figure it out yourself."
DIMS = ("helpfulness", "harmlessness", "honesty")


def scored(*values):
    return dict(zip(DIMS, values, strict=True))


@pytest.fixture
def pair_of_raters(make_user):
    return [make_user(f"rater{i}") for i in range(2)]


def test_an_adjudicated_rubric_task_exports_the_adjudicators_scores(
    project, engineer, pair_of_raters, snapshot_settings
):
    # given two raters who both scored the rude answer higher on helpfulness
    a, b = pair_of_raters
    task, (kind, rude) = rubric_task(
        project, "How do I prune roses?", [SAFE, RUDE],
        [(a, [scored(2, 5, 5), scored(4, 5, 5)], []), (b, [scored(2, 5, 5), scored(4, 5, 5)], [])],
    )  # fmt: skip
    # when a reviewer adjudicates: the kind answer is more helpful and more harmless
    adjudication_decide(
        task=task,
        reviewer=engineer,
        payload={"scores": {str(kind): scored(5, 5, 4), str(rude): scored(1, 2, 4)}},
        reason="the second answer insults the user",
    )
    snapshot = build(project, engineer)

    # then the scores and pairs are the adjudicator's, each score row counting one judgement
    pairs = sorted(
        (r["dimension"], r["chosen"][0]["content"], r["rejected"][0]["content"], r["margin"])
        for r in rows(snapshot, "rubric_preference")
    )
    assert pairs == [("harmlessness", SAFE, RUDE, 3.0), ("helpfulness", SAFE, RUDE, 4.0)]
    scores = sorted(
        (r["completion"][0]["content"], r["dimension"], r["score"], r["labels"])
        for r in rows(snapshot, "score")
    )
    assert scores == [
        (SAFE, "harmlessness", 5.0, 1), (SAFE, "helpfulness", 5.0, 1), (SAFE, "honesty", 4.0, 1),
        (RUDE, "harmlessness", 2.0, 1), (RUDE, "helpfulness", 1.0, 1), (RUDE, "honesty", 4.0, 1),
    ]  # fmt: skip
    # changed: 5 score rows (all but the kind answer's harmlessness, 5 either way) and 3 pairs
    # (helpfulness reversed: one row gone, one new; harmlessness: a tie became a pair)
    assert snapshot.report["adjudications"] == {"tasks": 1, "comparisons_changed": 8}
    assert snapshot.frozen_adjudications[str(task.pk)]["scores"][str(rude)] == scored(1, 2, 4)


def test_a_rubric_adjudication_must_score_every_dimension_and_nothing_is_stored(
    project, engineer, pair_of_raters
):
    a, b = pair_of_raters
    task, (kind, rude) = rubric_task(
        project, "How do I prune roses?", [SAFE, RUDE],
        [(a, [scored(2, 5, 5), scored(4, 5, 5)], []), (b, [scored(3, 5, 5), scored(4, 5, 5)], [])],
    )  # fmt: skip
    with pytest.raises(ValidationFailed) as refused:
        adjudication_decide(
            task=task,
            reviewer=engineer,
            payload={"scores": {str(kind): scored(5, 5, 4), str(rude): {"helpfulness": 1}}},
            reason="incomplete",
        )
    assert refused.value.extra["field"] == "scores"
    assert not task.__class__.objects.get(pk=task.pk).labels.filter(reviewed_at__isnull=False)


def test_an_overlong_reason_is_a_validation_error_naming_the_field(
    project, engineer, pair_of_raters
):
    # (it was a TypeError, a 500: the field was passed positionally)
    a = pair_of_raters[0]
    task, (kind, rude) = rubric_task(
        project, "How do I prune roses?", [SAFE, RUDE],
        [(a, [scored(2, 5, 5), scored(4, 5, 5)], [])],
    )  # fmt: skip
    with pytest.raises(ValidationFailed) as refused:
        adjudication_decide(
            task=task,
            reviewer=engineer,
            payload={"scores": {str(kind): scored(5, 5, 4), str(rude): scored(1, 1, 1)}},
            reason="x" * 5001,
        )
    assert refused.value.extra["field"] == "reason"


ORIGINAL = "The capitol of France is Paris."


def correction_task(project, prompt_text, original, rewrites):
    """A correction task of ``original`` with one canonical label per (annotator, rewrite)."""
    prompt = Prompt.objects.create(
        project=project,
        messages=[{"role": "user", "content": prompt_text}],
        content_hash=f"h-{prompt_text}",
    )
    task = Task.objects.create(
        project=project, prompt=prompt, kind="correction", content_hash=f"t-{prompt_text}"
    )
    response = Response.objects.create(
        prompt=prompt, text=original, content_hash=f"r-{prompt_text}", origin="import"
    )
    TaskItem.objects.create(task=task, response=response, position=0)
    for annotator, rewrite in rewrites:
        payload = canonical_correction(
            {"corrected_text": rewrite}, item_ids=[response.pk], texts={response.pk: original}
        )
        Label.objects.create(task=task, annotator=annotator, kind="correction", payload=payload)
    return task


def sft_and_pairs(snapshot):
    sft = sorted(row["messages"][-1]["content"] for row in rows(snapshot, "sft"))
    pairs = sorted(
        (r["chosen"][0]["content"], r["rejected"][0]["content"], r["source"])
        for r in rows(snapshot, "preference")
    )
    kto = sorted((r["completion"][0]["content"], r["label"]) for r in rows(snapshot, "kto"))
    return sft, pairs, kto


def test_an_adjudicated_correction_exports_the_adjudicated_text_instead_of_each_rewrite(
    project, engineer, pair_of_raters, snapshot_settings
):
    # given two raters who rewrote the answer differently, and a task nobody adjudicated
    a, b = pair_of_raters
    task = correction_task(
        project, "What is the capital of France?", ORIGINAL,
        [(a, "The capital of France is Paris."), (b, "Paris, France's capital.")],
    )  # fmt: skip
    correction_task(project, "Name a red fruit.", "A banana.", [(a, "A strawberry.")])
    # when a reviewer decides the final text, their own
    final = "Paris is the capital of France."
    adjudication_decide(
        task=task, reviewer=engineer, payload={"corrected_text": final}, reason="clearer"
    )
    snapshot = build(project, engineer)

    # then the adjudicated task gives one SFT row and one pair, of the reviewer's text; the
    # other task still gives its rewrite's
    sft, pairs, kto = sft_and_pairs(snapshot)
    assert sft == ["A strawberry.", final]
    assert pairs == [("A strawberry.", "A banana.", "correction"), (final, ORIGINAL, "correction")]
    assert kto == [
        ("A banana.", False), ("A strawberry.", True), (final, True), (ORIGINAL, False),
    ]  # fmt: skip
    assert snapshot.report["adjudications"] == {"tasks": 1, "comparisons_changed": 1}
    assert snapshot.frozen_adjudications[str(task.pk)]["corrected_text"] == final


def test_an_adjudicated_no_change_exports_the_original_and_no_pair(
    project, engineer, pair_of_raters, snapshot_settings
):
    # given two raters who both rewrote an answer that needed no correction
    a, b = pair_of_raters
    task = correction_task(
        project, "What is the capital of France?", ORIGINAL,
        [(a, "The capital of France is Paris."), (b, "Paris, France's capital.")],
    )  # fmt: skip
    # when the reviewer decides the original needs no correction
    adjudication_decide(
        task=task, reviewer=engineer, payload={"corrected_text": ORIGINAL}, reason="fine as is"
    )
    snapshot = build(project, engineer)

    # then the original is the one SFT row and a desirable KTO row, and no pair is exported
    assert sft_and_pairs(snapshot) == ([ORIGINAL], [], [(ORIGINAL, True)])
    assert snapshot.report["adjudications"] == {"tasks": 1, "comparisons_changed": 1}
