"""Registration, lifecycle, aliases and approval rules. A refused action changes nothing."""

import hashlib
import json

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404

from annotation.roles import Capability, Role
from config.errors import Conflict, Forbidden, ValidationFailed
from models_registry import selectors, services
from models_registry.access import access_model_version
from models_registry.models import (
    AuditAction,
    AuditEvent,
    ModelAlias,
    ModelArtifact,
    ModelVersion,
    VersionKind,
    VersionState,
)

pytestmark = pytest.mark.django_db


def snapshot(project):
    """Everything a refused action must leave untouched."""
    return (
        list(
            ModelVersion.objects.filter(project=project).values_list("id", "state").order_by("id")
        ),
        list(ModelAlias.objects.filter(project=project).values_list("name", "version_id")),
        AuditEvent.objects.filter(project=project).count(),
        ModelArtifact.objects.filter(version__project=project).count(),
    )


# --------------------------------------------------------------------------- registration


def test_registering_a_base_model_hashes_every_file_and_makes_it_champion(
    project, engineer, tiny_base_dir
):
    # when a local folder is registered as a base model
    version = services.model_version_register_base(
        project=project, registered_by=engineer, folder=tiny_base_dir, name="tiny-base"
    )

    # then every file is recorded with the sha256 of its bytes
    recorded = {a.path: (a.role, a.sha256, a.size_bytes) for a in version.artifacts.all()}
    on_disk = sorted(p.name for p in tiny_base_dir.iterdir() if p.is_file())
    assert sorted(recorded) == on_disk
    weights = tiny_base_dir / "model.safetensors"
    assert recorded["model.safetensors"] == (
        "weights",
        hashlib.sha256(weights.read_bytes()).hexdigest(),
        weights.stat().st_size,
    )
    assert recorded["tokenizer.json"][0] == "tokenizer"
    # and what it is, with the chat template's hash
    template = (
        json.loads((tiny_base_dir / "tokenizer_config.json").read_text()).get("chat_template")
        or (tiny_base_dir / "chat_template.jinja").read_text()
    )
    assert version.chat_template_sha256 == hashlib.sha256(template.encode()).hexdigest()
    assert (version.name, version.version, version.kind) == ("tiny-base", 1, "policy")
    assert (version.architecture, version.backbone) == ("LlamaForCausalLM", "llama")
    assert version.library_versions["torch"].startswith("2.")
    # and a base model starts approved, as the project's champion, both steps in the log
    assert version.state == VersionState.APPROVED
    assert selectors.alias_target(project=project) == version
    events = AuditEvent.objects.filter(project=project).order_by("id")
    assert [(e.action, e.to_state, e.alias, e.actor_name) for e in events] == [
        (AuditAction.REGISTERED, "approved", "", "erin-engineer"),
        (AuditAction.ALIAS_SET, "", "champion", "erin-engineer"),
    ]
    assert events[0].evidence["files"]["model.safetensors"] == recorded["model.safetensors"][1]
    assert services.model_version_verify_artifacts(version=version) == []


def test_a_second_registration_of_a_name_is_the_next_version_with_lineage(candidate, base_version):
    assert (candidate.name, candidate.version) == ("tiny-dpo", 1)
    assert candidate.parent == base_version
    assert candidate.base_model == base_version
    assert candidate.state == VersionState.CANDIDATE
    again = services.model_version_register(
        project=candidate.project,
        folder=candidate.artifact_dir,
        name="tiny-dpo",
        parent=candidate,
    )
    assert again.version == 2
    assert again.base_model == base_version
    assert selectors.model_version_ancestors(again) == [candidate, base_version]


def test_a_folder_with_only_pickle_weights_is_refused_and_nothing_is_written(
    project, engineer, tmp_path, base_version
):
    # given a folder with a config and a pickle checkpoint only
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04 pickle")
    before = snapshot(project)

    # when registering it, then it is refused and nothing changed
    with pytest.raises(ValidationFailed) as refused:
        services.model_version_register(
            project=project, folder=tmp_path, name="pickled", registered_by=engineer
        )
    assert refused.value.code == "unsafe_model_folder"
    assert "pytorch_model.bin" in refused.value.message
    assert snapshot(project) == before


def test_a_model_asking_for_custom_code_is_refused(project, engineer, tmp_path, tiny_base_dir):
    for f in tiny_base_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValidationFailed, match="trust_remote_code"):
        services.model_version_register(project=project, folder=tmp_path, name="custom")
    assert not ModelVersion.objects.filter(project=project).exists()


def test_pickle_files_next_to_safetensors_are_never_recorded(project, tmp_path, tiny_base_dir):
    for f in tiny_base_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "training_args.bin").write_bytes(b"\x80\x04 pickle")
    version = services.model_version_register(project=project, folder=tmp_path, name="with-args")
    assert not version.artifacts.filter(path="training_args.bin").exists()
    registered = version.audit_events.get(action=AuditAction.REGISTERED)
    assert registered.evidence["ignored_pickle_files"] == ["training_args.bin"]


def test_a_causal_lm_cannot_be_registered_as_a_reward_model(project, tiny_base_dir):
    with pytest.raises(ValidationFailed) as refused:
        services.model_version_register(
            project=project, folder=tiny_base_dir, name="rm", kind=VersionKind.REWARD
        )
    assert refused.value.code == "wrong_architecture"


def test_a_reward_model_registers_with_its_kind(project, engineer, tiny_reward_dir):
    version = services.model_version_register_base(
        project=project,
        registered_by=engineer,
        folder=tiny_reward_dir,
        name="tiny-rm",
        kind=VersionKind.REWARD,
    )
    assert (version.kind, version.architecture) == ("reward", "LlamaForSequenceClassification")
    assert selectors.alias_target(project=project) is None  # reward models are not champions


def test_the_model_card_tells_lineage_data_config_and_hashes(candidate, base_version):
    card = candidate.model_card
    assert card.startswith("# tiny-dpo v1\n")
    assert "`tiny-base v1` → **`tiny-dpo v1`**" in card
    assert "| `pairs` | `128` |" in card
    assert "| `beta` | `0.1` |" in card
    assert "| `reward_mean` | `0.42` |" in card
    weights = candidate.artifacts.get(path="model.safetensors")
    assert f"`{weights.sha256}`" in card
    assert "## Limitations" in card


# --------------------------------------------------------------------------- lifecycle


def test_skipping_review_is_refused_and_changes_nothing(candidate, reviewer):
    before = snapshot(candidate.project)
    with pytest.raises(Conflict) as refused:
        services.model_version_transition(
            version=candidate, actor=reviewer, to_state=VersionState.APPROVED, reason="looks good"
        )
    assert refused.value.code == "invalid_transition"
    assert snapshot(candidate.project) == before


@pytest.mark.parametrize(
    ("path", "refused_step"),
    [
        (["in_review", "rejected", "approved"], "approved"),
        (["in_review", "rejected", "in_review"], "in_review"),
        (["archived"], "archived"),
        (["in_review", "candidate"], "candidate"),
    ],
)
def test_transitions_outside_the_lifecycle_are_refused(candidate, reviewer, path, refused_step):
    for step in path[:-1]:
        services.model_version_transition(
            version=candidate, actor=reviewer, to_state=step, reason="step"
        )
    before = snapshot(candidate.project)
    with pytest.raises(Conflict):
        services.model_version_transition(
            version=candidate, actor=reviewer, to_state=refused_step, reason="step"
        )
    assert snapshot(candidate.project) == before


def test_the_person_who_launched_the_run_cannot_approve_it(candidate, engineer, reviewer):
    services.model_version_transition(
        version=candidate, actor=reviewer, to_state=VersionState.IN_REVIEW, reason="review"
    )
    before = snapshot(candidate.project)
    with pytest.raises(Forbidden) as refused:
        services.model_version_approve(version=candidate, actor=engineer, reason="mine is great")
    assert refused.value.code == "own_run"
    assert snapshot(candidate.project) == before


def test_approving_needs_a_rationale(candidate, reviewer):
    services.model_version_transition(version=candidate, actor=reviewer, to_state="in_review")
    before = snapshot(candidate.project)
    with pytest.raises(ValidationFailed) as refused:
        services.model_version_approve(version=candidate, actor=reviewer, reason="  ")
    assert refused.value.code == "rationale_required"
    assert snapshot(candidate.project) == before


def test_approving_without_enough_review_labels_is_refused(
    candidate, base_version, reviewer, add_reviews
):
    # given a project that requires 6 review labels, and 5 of them
    project = candidate.project
    project.options = {"review_min_labels": 6}
    project.save()
    add_reviews(candidate, base_version, "AAAAB")
    services.model_version_transition(version=candidate, actor=reviewer, to_state="in_review")
    before = snapshot(project)

    # when the reviewer approves, then it is refused and nothing changed
    with pytest.raises(Conflict) as refused:
        services.model_version_approve(version=candidate, actor=reviewer, reason="wins")
    assert refused.value.code == "not_enough_reviews"
    assert refused.value.extra == {"review_labels": 5, "required": 6}
    assert snapshot(project) == before


def test_approving_below_the_minimum_win_rate_is_refused(
    candidate, base_version, reviewer, add_reviews
):
    project = candidate.project
    project.options = {"review_min_labels": 4, "review_min_win_rate": 0.6}
    project.save()
    add_reviews(candidate, base_version, "ABBt")  # (1 + 0.5) / 4 = 0.375
    services.model_version_transition(version=candidate, actor=reviewer, to_state="in_review")
    before = snapshot(project)
    with pytest.raises(Conflict) as refused:
        services.model_version_approve(version=candidate, actor=reviewer, reason="hm")
    assert refused.value.code == "win_rate_too_low"
    assert refused.value.extra["win_rate"] == 0.375
    assert snapshot(project) == before


def test_a_reward_model_is_approved_without_the_policy_review_thresholds(
    project, engineer, reviewer, base_version, tiny_reward_dir
):
    # given a project that requires blind review labels and a win rate against the champion,
    # and a trained reward model in review (reward models write no answers to review)
    project.options = {"review_min_labels": 3, "review_min_win_rate": 0.6}
    project.save()
    reward = services.model_version_register(
        project=project, folder=tiny_reward_dir, name="tiny-rm", kind=VersionKind.REWARD,
        registered_by=engineer, launched_by=engineer,
        metrics={"test": {"accuracy": 0.92, "pairs": 50}},
    )  # fmt: skip
    services.model_version_transition(version=reward, actor=engineer, to_state="in_review")

    # when a reviewer approves it with a rationale
    services.model_version_approve(version=reward, actor=reviewer, reason="92% pair accuracy")

    # then it is approved, the champion stays, and the log says the thresholds did not apply
    reward.refresh_from_db()
    assert reward.state == VersionState.APPROVED
    assert selectors.alias_target(project=project) == base_version
    approval = AuditEvent.objects.filter(project=project).order_by("-id").first()
    assert (approval.version, approval.to_state, approval.reason) == (
        reward,
        "approved",
        "92% pair accuracy",
    )
    assert approval.evidence["review"] == {
        "candidate_version": reward.pk,
        "thresholds": "policies only",
        "evaluation": {"status": "finished"},
    }


def test_a_reward_model_without_held_out_accuracy_needs_an_explicit_waiver(
    project, engineer, reviewer, tiny_reward_dir
):
    # given a reward-model candidate whose training measured no held-out pairs
    reward = services.model_version_register(
        project=project, folder=tiny_reward_dir, name="tiny-rm", kind=VersionKind.REWARD,
        registered_by=engineer, launched_by=engineer, metrics={"train_loss": 0.5},
    )  # fmt: skip
    # when a reviewer decides to approve it: refused, and it stays a candidate
    with pytest.raises(Conflict) as refused:
        services.model_version_decide(
            version=reward, actor=reviewer, decision="approve", reason="looks fine"
        )
    assert refused.value.code == "evaluation_not_finished"
    reward.refresh_from_db()
    assert reward.state == VersionState.CANDIDATE
    assert not AuditEvent.objects.filter(version=reward, action="transition").exists()
    # when they approve without it: put in review, then approved, both audited
    services.model_version_decide(
        version=reward, actor=reviewer, decision="approve", reason="no split, used by hand",
        without_evaluation=True,
    )  # fmt: skip
    reward.refresh_from_db()
    assert reward.state == VersionState.APPROVED
    steps = AuditEvent.objects.filter(version=reward, action="transition").order_by("id")
    assert [(e.from_state, e.to_state, e.actor) for e in steps] == [
        ("candidate", "in_review", reviewer),
        ("in_review", "approved", reviewer),
    ]
    assert steps[1].evidence["review"]["evaluation"]["approved_without_it"] is True
    # a client cannot write the evaluation record itself
    assert "evaluation" in services.MEASURED_EVIDENCE_KEYS


def test_a_reward_model_candidate_can_be_rejected_and_a_bad_decision_is_named(
    project, engineer, reviewer, tiny_reward_dir
):
    reward = services.model_version_register(
        project=project, folder=tiny_reward_dir, name="tiny-rm", kind=VersionKind.REWARD,
        registered_by=engineer, launched_by=engineer,
    )  # fmt: skip
    with pytest.raises(ValidationFailed) as bad:
        services.model_version_decide(version=reward, actor=reviewer, decision="ok", reason="x")
    assert bad.value.extra == {"field": "decision"}
    services.model_version_decide(
        version=reward, actor=reviewer, decision="reject", reason="length-biased"
    )
    reward.refresh_from_db()
    assert reward.state == VersionState.REJECTED


def test_approval_records_the_review_evidence_and_moves_the_champion(
    candidate, base_version, reviewer, add_reviews
):
    # given 7 wins, 2 losses and 1 tie for the candidate against the champion
    project = candidate.project
    project.options = {"review_min_labels": 10, "review_min_win_rate": 0.55}
    project.save()
    add_reviews(candidate, base_version, "AAAAAAABBt")
    services.model_version_transition(
        version=candidate, actor=reviewer, to_state="in_review", reason="start"
    )

    # when the reviewer approves with a rationale
    services.model_version_approve(version=candidate, actor=reviewer, reason="clearly better")

    # then it is approved and champion, and the log shows both steps with the evidence
    candidate.refresh_from_db()
    assert candidate.state == VersionState.APPROVED
    assert selectors.alias_target(project=project) == candidate
    approval, promotion = AuditEvent.objects.filter(project=project).order_by("-id")[:2][::-1]
    assert (approval.from_state, approval.to_state, approval.actor_name) == (
        "in_review",
        "approved",
        "rita-reviewer",
    )
    assert approval.reason == "clearly better"
    review = approval.evidence["review"]
    assert (review["wins"], review["losses"], review["ties"]) == (7, 2, 1)
    assert review["win_rate"] == 0.75
    assert review["review_labels"] == 10
    assert review["opponent_version"] == base_version.pk
    assert (promotion.action, promotion.alias, promotion.previous_version) == (
        AuditAction.ALIAS_SET,
        "champion",
        base_version,
    )
    assert "7 wins, 2 losses, 1 ties" in ModelVersion.objects.get(pk=candidate.pk).model_card


def test_rollback_moves_the_champion_back_and_is_logged(candidate, base_version, reviewer):
    services.model_version_transition(version=candidate, actor=reviewer, to_state="in_review")
    services.model_version_approve(version=candidate, actor=reviewer, reason="ok")
    project = candidate.project

    services.alias_rollback(project=project, name="champion", actor=reviewer, reason="regression")

    assert selectors.alias_target(project=project) == base_version
    last = AuditEvent.objects.filter(project=project).order_by("-id").first()
    assert (last.action, last.version, last.previous_version, last.reason) == (
        AuditAction.ROLLBACK,
        base_version,
        candidate,
        "regression",
    )


def test_an_alias_only_points_at_approved_versions(candidate, reviewer):
    before = snapshot(candidate.project)
    with pytest.raises(Conflict) as refused:
        services.alias_set(
            project=candidate.project,
            name="champion",
            version=candidate,
            actor=reviewer,
            reason="x",
        )
    assert refused.value.code == "not_approved"
    assert snapshot(candidate.project) == before


def test_the_champion_cannot_be_archived_until_the_alias_moves(base_version, reviewer):
    before = snapshot(base_version.project)
    with pytest.raises(Conflict) as refused:
        services.model_version_transition(
            version=base_version, actor=reviewer, to_state="archived", reason="old"
        )
    assert refused.value.code == "version_aliased"
    assert snapshot(base_version.project) == before


# --------------------------------------------------------------------------- review results


def test_review_comparisons_read_outcomes_whatever_side_the_candidate_was_on(
    candidate, base_version, add_reviews
):
    add_reviews(candidate, base_version, "AABtB")
    summary = selectors.review_summary(candidate=candidate)
    w = summary.win_rate
    assert (summary.labels, w.wins, w.losses, w.ties) == (5, 2, 2, 1)
    assert w.win_rate == 0.5


def test_the_leaderboard_ranks_versions_from_review_labels(candidate, base_version, add_reviews):
    add_reviews(candidate, base_version, "AAAAAAAB")
    rows = selectors.leaderboard(project=candidate.project, bootstrap_samples=100)
    assert [r["version"] for r in rows] == [candidate, base_version]
    assert (rows[0]["row"].wins, rows[0]["row"].losses) == (7, 1)


# --------------------------------------------------------------------------- access


def test_access_gate_hides_other_projects_and_blinds_annotators(
    candidate, reviewer, annotator, member, other_project
):
    assert access_model_version(reviewer, candidate.pk) == candidate
    outsider = member(Role.ADMIN, "olga-outsider", target=other_project)
    with pytest.raises(Http404):
        access_model_version(outsider, candidate.pk)
    with pytest.raises(Http404):
        access_model_version(reviewer, 999_999)
    with pytest.raises(PermissionDenied):
        access_model_version(annotator, candidate.pk)
    with pytest.raises(PermissionDenied):
        access_model_version(reviewer, candidate.pk, capability=Capability.TRAIN)
