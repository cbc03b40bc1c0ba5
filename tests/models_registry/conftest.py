"""Fixtures for the registry tests: people with roles, a project, tiny model folders, versions."""

import pytest
from django.contrib.auth import get_user_model

from annotation import services as annotation_services
from annotation.models import Label, Task, TaskKind, TaskStatus
from annotation.roles import Role
from models_registry import services
from models_registry.models import VersionKind
from rlhf.training.base_models import build_tiny_causal_lm

User = get_user_model()


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-base"), seed=0)


@pytest.fixture(scope="session")
def tiny_candidate_dir(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-candidate"), seed=1)


@pytest.fixture(scope="session")
def tiny_reward_dir(tiny_base_dir, tmp_path_factory):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-reward")
    torch.manual_seed(3)
    AutoModelForSequenceClassification.from_pretrained(tiny_base_dir, num_labels=1).save_pretrained(
        out
    )
    AutoTokenizer.from_pretrained(tiny_base_dir).save_pretrained(out)
    return out


@pytest.fixture
def make_user(db):
    counter = {"n": 0}

    def make(username=None, *, is_staff=False):
        counter["n"] += 1
        name = username or f"user{counter['n']}"
        return User.objects.create_user(name, password="pw-" + name, is_staff=is_staff)

    return make


@pytest.fixture
def admin_user(make_user):
    return make_user("alice-admin", is_staff=True)


@pytest.fixture
def project(admin_user):
    # Most tests approve with a handful of review labels: they set the threshold explicitly
    # (the default, 20 blind labels, has its own tests in test_review_integrity.py).
    project = annotation_services.project_create(name="Registry", created_by=admin_user)
    project.options = {**(project.options or {}), "review_min_labels": 0}
    project.save(update_fields=["options"])
    return project


@pytest.fixture
def other_project(admin_user):
    return annotation_services.project_create(name="Elsewhere", created_by=admin_user)


@pytest.fixture
def member(project, make_user):
    def make(role=Role.ANNOTATOR, username=None, target=None):
        user = make_user(username)
        annotation_services.membership_set(project=target or project, user=user, role=role)
        return user

    return make


@pytest.fixture
def engineer(member):
    return member(Role.ENGINEER, "erin-engineer")


@pytest.fixture
def reviewer(member):
    return member(Role.REVIEWER, "rita-reviewer")


@pytest.fixture
def annotator(member):
    return member(Role.ANNOTATOR, "andy-annotator")


@pytest.fixture
def base_version(project, engineer, tiny_base_dir):
    return services.model_version_register_base(
        project=project, registered_by=engineer, folder=tiny_base_dir, name="tiny-base"
    )


def snapshot_and_run(project, created_by, **run_fields):
    """A ready (empty) snapshot of ``project`` and a DPO run on it (nothing trained)."""
    from rlhf.models import DatasetSnapshot, SnapshotStatus, TrainingRun

    snapshot = DatasetSnapshot.objects.create(
        project=project, status=SnapshotStatus.READY, max_label_id=0, config={}
    )
    run = TrainingRun.objects.create(
        project=project, name="dpo", method="dpo", method_title="DPO", config={},
        dataset_snapshot=snapshot, data_path="/nowhere", created_by=created_by, **run_fields,
    )  # fmt: skip
    return snapshot, run


@pytest.fixture
def candidate(project, engineer, base_version, tiny_candidate_dir):
    """A trained candidate whose run was launched by the engineer."""
    snapshot, run = snapshot_and_run(project, engineer, status="succeeded")
    return services.model_version_register(
        project=project,
        folder=tiny_candidate_dir,
        name="tiny-dpo",
        kind=VersionKind.POLICY,
        registered_by=engineer,
        parent=base_version,
        launched_by=engineer,
        training_run=run,
        dataset_snapshot=snapshot,
        config={"method": "dpo", "beta": 0.1},
        metrics={"reward_mean": 0.42},
        data_card={"pairs": 128, "annotators": 3},
    )


@pytest.fixture
def add_reviews(project, make_user):
    """Blind pairwise labels between two versions: ``add_reviews(cand, champ, "AAB t")``.

    Each character is one task: ``A``/``B`` = the candidate / the opponent won, ``t`` = tie.
    The candidate alternates between positions A and B, as randomised review tasks would.
    """
    counter = {"n": 0}

    def add(candidate_version, opponent, outcomes: str, annotator=None):
        annotator = annotator or make_user()
        for char in outcomes.replace(" ", ""):
            counter["n"] += 1
            n = counter["n"]
            cand_first = n % 2 == 0
            names = [candidate_version.response_model_name, opponent.response_model_name]
            if not cand_first:
                names.reverse()
            task, _ = annotation_services.task_create(
                project=project,
                messages=[{"role": "user", "content": f"review prompt {n}"}],
                kind=TaskKind.PAIRWISE,
                responses=[
                    {"text": f"answer {n} by {m}", "origin": "model", "model_name": m}
                    for m in names
                ],
            )
            if char == "t":
                outcome = "tie"
            else:
                cand_won = char == "A"
                outcome = "A" if cand_won == cand_first else "B"
            Label.objects.create(
                task=task,
                annotator=annotator,
                kind=TaskKind.PAIRWISE,
                payload={"outcome": outcome, "strength": None, "rationale": ""},
            )
            Task.objects.filter(pk=task.pk).update(
                label_count=1,
                required_labels=1,
                status=TaskStatus.DONE,
                completed_at=task.created_at,
            )

    return add
