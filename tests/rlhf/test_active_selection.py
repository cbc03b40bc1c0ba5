"""The next round in effect: open pairs ranked by the reward model; annotators see nothing."""

import pytest
import torch
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from annotation import services as annotation_services
from annotation.importers import import_file
from annotation.models import Task, TaskKind
from annotation.opaque import task_id_from_ref
from annotation.roles import Role
from rlhf.active_selection import task_priorities_assign
from rlhf.models import TaskSelectionScore
from rlhf.training import rollout
from rlhf.training.base_models import build_tiny_encoder
from rlhf.training.loading import load_sequence_classifier, load_tokenizer
from rlhf.training.tokens import encode_for_scoring
from tests.hh_dialogues import hh_jsonl

pytestmark = pytest.mark.postgres

PROMPT = "How do I make tea?"
PAIRS = [
    ("Boil water, then steep the leaves.", "No."),
    ("The same answer.", "The same answer!"),  # nearly the same: a small gap
    ("Steep the leaves for three minutes.", "Go away, I will not help."),
    ("Boil it.", "Boil it, then wait."),
]


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory):
    """A tiny encoder with a fixed (saved) head, so every load scores the same."""
    base = build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))
    tokenizer = load_tokenizer(base)
    torch.manual_seed(3)
    model = load_sequence_classifier(base, pad_token_id=tokenizer.pad_token_id)
    folder = tmp_path_factory.mktemp("reward-model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def model_rewards(folder, pairs):
    """r(a), r(b) by the model's own scoring path (rollout.score), not the engine's."""
    tokenizer = load_tokenizer(folder)
    model = load_sequence_classifier(folder, pad_token_id=tokenizer.pad_token_id)
    prompt = [{"role": "user", "content": PROMPT}]
    sequences = [encode_for_scoring(tokenizer, prompt, [a, b], 512)[0] for a, b in pairs]
    options = {"pad_id": tokenizer.pad_token_id, "device": "cpu", "precision": "fp32"}
    reward_a = rollout.score(model, [s[0] for s in sequences], **options)
    reward_b = rollout.score(model, [s[1] for s in sequences], **options)
    return reward_a, reward_b


@pytest.fixture
def people(transactional_db):
    users = get_user_model().objects
    return {
        "engineer": users.create_user("eve-engineer", password="pw"),
        "annotator": users.create_user("ann", password="pw"),
    }


@pytest.fixture
def project(people):
    project = annotation_services.project_create(
        name="Active", created_by=people["engineer"], overlap=1
    )
    annotation_services.membership_set(project=project, user=people["engineer"], role=Role.ENGINEER)
    annotation_services.membership_set(
        project=project, user=people["annotator"], role=Role.ANNOTATOR
    )
    return project


def make_pair_task(project, answer_a, answer_b, *, prompt=PROMPT, priority=0):
    task, _ = annotation_services.task_create(
        project=project,
        messages=[{"role": "user", "content": prompt}],
        kind=TaskKind.PAIRWISE,
        responses=[
            {"text": answer_a, "origin": "model", "model_name": "m"},
            {"text": answer_b, "origin": "model", "model_name": "m"},
        ],
        priority=priority,
    )
    return task


def test_uncertainty_puts_the_smallest_reward_gap_first(project, reward_model):
    # Given four open pairs and a reward model
    tasks = [make_pair_task(project, a, b) for a, b in PAIRS]
    reward_a, reward_b = model_rewards(reward_model, PAIRS)
    gaps = [abs(a - b) for a, b in zip(reward_a, reward_b, strict=True)]
    assert len(set(gaps)) == 4  # no ties: the expected order is exact

    # When the uncertainty strategy ranks them
    result = task_priorities_assign(
        project=project, strategy="uncertainty", reward_model_folder=str(reward_model)
    )

    # Then the smallest gap gets -1, the next -2, ...
    expected_order = sorted(range(4), key=lambda i: gaps[i])
    priorities = {t.pk: t.priority for t in Task.objects.filter(project=project)}
    assert [priorities[tasks[i].pk] for i in expected_order] == [-1, -2, -3, -4]
    assert result.tasks == 4
    # ...and each task's score is minus its gap, recorded with the strategy and the model
    for i, task in enumerate(tasks):
        row = TaskSelectionScore.objects.get(task=task)
        assert row.strategy == "uncertainty"
        assert row.score == pytest.approx(-gaps[i], abs=1e-5)
        assert row.priority == priorities[task.pk]
        assert row.reward_model == str(reward_model)
        assert row.config["strategy"] == "uncertainty"
        # ...with the model's rewards of both sides, for feedback once a label exists
        assert row.reward_a == pytest.approx(float(reward_a[i]), abs=1e-5)
        assert row.reward_b == pytest.approx(float(reward_b[i]), abs=1e-5)


def test_random_needs_no_model_and_leaves_labelled_and_review_tasks_alone(project, people):
    # Given two open pairs, a review task that jumps the queue, and a pair already labelled
    fresh = [make_pair_task(project, f"a{i}", f"b{i}", prompt=f"q{i}?") for i in range(2)]
    review = make_pair_task(project, "r1", "r2", prompt="review?", priority=10)
    labelled = make_pair_task(project, "l1", "l2", prompt="labelled?")
    Task.objects.filter(pk=labelled.pk).update(label_count=1, status="done")

    # When random ranks the project
    result = task_priorities_assign(project=project, strategy="random", seed=5)

    # Then the two open pairs get -1 and -2 in a seeded order and nothing else moved
    got = {t.pk: t.priority for t in Task.objects.filter(project=project)}
    assert sorted(got[t.pk] for t in fresh) == [-2, -1]
    assert got[review.pk] == 10
    assert got[labelled.pk] == 0
    assert result.tasks == 2
    assert TaskSelectionScore.objects.filter(task__in=fresh, score=None).count() == 2


def test_a_refused_ranking_writes_nothing(project, people):
    make_pair_task(project, "a", "b")
    with pytest.raises(ValueError, match="needs a reward model folder"):
        task_priorities_assign(project=project, strategy="uncertainty")
    with pytest.raises(ValueError, match="labelled pairs"):
        task_priorities_assign(
            project=project, strategy="disagreement", reward_model_folder="/nowhere"
        )
    with pytest.raises(ValueError, match="strategy"):
        task_priorities_assign(project=project, strategy="margin")
    assert list(Task.objects.values_list("priority", flat=True)) == [0]
    assert not TaskSelectionScore.objects.exists()


def all_keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in all_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in all_keys(v)}
    return set()


def test_the_annotator_sees_no_priority_and_no_score(project, people, reward_model):
    # Given ranked pairs
    for a, b in PAIRS:
        make_pair_task(project, a, b)
    task_priorities_assign(
        project=project, strategy="uncertainty", reward_model_folder=str(reward_model)
    )
    client = APIClient()
    client.force_authenticate(people["annotator"])

    # When the annotator claims the next task and reads it
    shown = client.post(f"/api/projects/{project.pk}/tasks/next/", {}, format="json")
    assert shown.status_code == 200
    view = shown.json()
    read = client.get(f"/api/tasks/{view['task_id']}/").json()

    # Then they got the most informative pair, and nothing says why
    first = TaskSelectionScore.objects.get(priority=-1).task_id
    assert task_id_from_ref(view["task_id"]) == first  # annotators see refs, not ids
    for body in (view, read):
        keys = {k.lower() for k in all_keys(body)}
        assert not keys & {"priority", "score", "strategy", "selection_scores", "reward_model"}
        assert "priority" not in str(body)
        assert "uncertainty" not in str(body)


def test_the_command_ranks_a_project(project, capsys):
    tasks = [make_pair_task(project, f"a{i}", f"b{i}", prompt=f"q{i}?") for i in range(3)]
    call_command("active", "--project", str(project.pk), "--strategy", "random", "--seed", "2")
    assert "3 open pairs ranked by random" in capsys.readouterr().out
    assert sorted(
        Task.objects.filter(pk__in=[t.pk for t in tasks]).values_list("priority", flat=True)
    ) == [-3, -2, -1]


def test_disagreement_refits_on_the_projects_labels_and_ranks_by_spread(
    project, people, reward_model
):
    # Given 12 labelled HH pairs (imported with their labels) and four open pairs
    import_file(
        project=project,
        data=hh_jsonl(12),
        filename="hh12.jsonl",
        kind="preferences",
        created_by=people["engineer"],
        annotator_name="hh-crowd",
    )
    tasks = [make_pair_task(project, a, b) for a, b in PAIRS]

    # When disagreement ranks the open pairs
    result = task_priorities_assign(
        project=project,
        strategy="disagreement",
        reward_model_folder=str(reward_model),
        ensemble_size=4,
    )

    # Then the ensemble was refitted on the 12 labelled pairs, only the open pairs were ranked,
    # and the widest spread got -1, the next -2, ...
    assert result.labelled_pairs == 12
    assert result.tasks == 4
    rows = {r.task_id: r for r in TaskSelectionScore.objects.all()}
    assert set(rows) == {t.pk for t in tasks}
    by_spread = sorted(tasks, key=lambda t: -rows[t.pk].score)
    assert [Task.objects.get(pk=t.pk).priority for t in by_spread] == [-1, -2, -3, -4]
    assert all(rows[t.pk].score >= 0 for t in tasks)
