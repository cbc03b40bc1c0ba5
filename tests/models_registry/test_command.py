"""``manage.py models``: the same services from a terminal, every change attributed."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from annotation.models import Prompt, Response
from models_registry import selectors
from models_registry.models import AuditEvent, ModelVersion

pytestmark = pytest.mark.django_db


def run(*args):
    out = StringIO()
    call_command("models", *args, stdout=out)
    return out.getvalue()


def test_register_review_approve_and_roll_back_from_the_terminal(
    project, admin_user, engineer, reviewer, tiny_base_dir, tiny_candidate_dir
):
    # given a base model (registered by a project admin) and a trained candidate
    run("register-base", "--project", project.slug, "--folder", str(tiny_base_dir),
        "--name", "tiny-base", "--as", admin_user.username)  # fmt: skip
    base = selectors.alias_target(project=project)
    out = run("register", "--project", project.slug, "--folder", str(tiny_candidate_dir),
              "--name", "tiny-dpo", "--parent", str(base.pk), "--launched-by",
              engineer.username, "--as", engineer.username)  # fmt: skip
    assert "tiny-dpo v1" in out
    candidate_id = int(out.split()[0])

    # when it goes through review and approval, then back
    run("transition", str(candidate_id), "in_review", "--reason", "ready", "--as", "erin-engineer")
    with pytest.raises(CommandError, match="own_run"):
        run("transition", str(candidate_id), "approved", "--reason", "x", "--as", "erin-engineer")
    run("transition", str(candidate_id), "approved", "--reason", "good", "--as", "rita-reviewer")
    assert selectors.alias_target(project=project).pk == candidate_id
    assert "champion -> tiny-base v1" in run(
        "rollback", "--project", project.slug, "--reason", "regression", "--as", "rita-reviewer"
    )

    # then the listing and the audit trail say so
    listing = run("list", "--project", project.slug)
    assert "tiny-base v1" in listing
    assert "[champion]" in listing
    audit = run("audit", "--project", project.slug)
    assert audit.count("\n") == AuditEvent.objects.filter(project=project).count() == 7
    assert "rita-reviewer" in audit
    assert "regression" in audit
    assert "all artifacts match" in run("verify", str(candidate_id))


def test_generate_now_writes_responses(candidate, project):
    Prompt.objects.create(
        project=project, messages=[{"role": "user", "content": "hi"}], content_hash="a"
    )
    out = run("generate", str(candidate.pk), "--max-new-tokens", "3", "--now")
    assert "succeeded, 1 new responses (transformers)" in out
    assert Response.objects.filter(model_name=candidate.response_model_name).count() == 1


def test_only_a_project_admin_registers_a_base_model_from_the_terminal(
    project, engineer, tiny_base_dir
):
    with pytest.raises(CommandError, match="not an admin"):
        run("register-base", "--project", project.slug, "--folder", str(tiny_base_dir),
            "--as", engineer.username)  # fmt: skip
    assert not ModelVersion.objects.filter(project=project).exists()


def test_pin_eval_from_a_file_and_from_existing_prompts(project, tmp_path):
    first = Prompt.objects.create(
        project=project, messages=[{"role": "user", "content": "old"}], content_hash="old"
    )
    path = tmp_path / "eval.jsonl"
    path.write_text(
        '{"prompt": "What is 2+2?"}\n{"messages": [{"role": "user", "content": "Hi"}]}\n'
    )
    out = run("pin-eval", "--project", project.slug, "--from-file", str(path), "--first", "1")
    assert "3 pinned evaluation prompts" in out
    project.refresh_from_db()
    pinned = project.options["eval_prompt_ids"]
    assert pinned[0] == first.pk
    assert [Prompt.objects.get(pk=i).messages[0]["content"] for i in pinned[1:]] == [
        "What is 2+2?",
        "Hi",
    ]


def test_unknown_user_is_an_error(project, tiny_base_dir):
    with pytest.raises(CommandError, match="no user"):
        run("register-base", "--project", project.slug, "--folder", str(tiny_base_dir),
            "--as", "nobody")  # fmt: skip
