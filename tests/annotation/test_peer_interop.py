"""Label Studio and Argilla exports import as labels of named external annotators, and a
project's labels export in both shapes and import back unchanged."""

import json

import pytest

from annotation.importers import import_file
from annotation.models import Label, Task, TaskKind, TaskStatus
from config.errors import ValidationFailed
from formats.peers import argilla_user_id
from tests.formats.test_peers import ARGILLA_V1, ARGILLA_V2, LS_PAIRWISE, LS_RANKER

pytestmark = pytest.mark.django_db


def _import(project, user, records, kind, filename="export.json"):
    data = json.dumps(records).encode()
    return import_file(project=project, data=data, filename=filename, kind=kind, created_by=user)


def _labels(project):
    """{(prompt text, annotator username): outcome or ranking by response text}"""
    out = {}
    for label in Label.objects.filter(task__project=project).select_related(
        "annotator", "task__prompt"
    ):
        texts = dict(label.task.items.values_list("response_id", "response__text"))
        if label.kind == TaskKind.PAIRWISE:
            value = label.payload["outcome"], texts.get(label.payload["winner"])
        else:
            value = [sorted(texts[r] for r in tier) for tier in label.payload["ranking"]]
        out[(label.task.prompt.messages[-1]["content"], label.annotator.username)] = value
    return out


def test_a_label_studio_export_imports_every_judgement_as_a_label(project, admin_user):
    # given a Label Studio export with a pairwise task (2 annotations, 1 cancelled) and a
    # ranking task (a plain ranker and one with buckets)
    batch = _import(project, admin_user, [LS_PAIRWISE, LS_RANKER], "label_studio")
    # then each task exists with every judgement as a label by its Label Studio user
    assert batch.counts["tasks_created"] == 2
    assert batch.counts["labels_created"] == 4
    assert _labels(project) == {
        ("Name a prime.", "external:label-studio-3"): ("B", "Seven."),
        ("Name a prime.", "external:label-studio-5"): ("A", "Nine."),
        ("Explain recursion.", "external:label-studio-2"): [
            ["See recursion."], ["A function calling itself."], ["Loops."]],
        ("Explain recursion.", "external:label-studio-4"): [
            ["A function calling itself.", "See recursion."], ["Loops."]],
    }  # fmt: skip
    # and a task holds all its imported labels (overlap 2 here), done, with the model's
    # pre-annotation kept as a suggestion, not a label
    pairwise = Task.objects.get(kind=TaskKind.PAIRWISE)
    assert (pairwise.label_count, pairwise.status) == (2, TaskStatus.DONE)
    assert pairwise.metadata["label_studio"]["suggestions"][0]["agent"] == "rm-v1"
    assert pairwise.source == "label_studio"
    # and importing the same file again creates nothing
    again = _import(project, admin_user, [LS_PAIRWISE, LS_RANKER], "label_studio")
    assert (again.counts["tasks_created"], again.counts["labels_created"]) == (0, 0)
    assert again.counts["labels_existing"] == 4


def test_an_argilla_export_imports_submitted_responses(project, admin_user):
    batch = _import(project, admin_user, [ARGILLA_V2, ARGILLA_V1], "argilla")
    assert batch.counts["labels_created"] == 2
    assert _labels(project) == {
        ("Name a prime.", "external:argilla-u-1"): ("B", "Seven."),
        ("Explain recursion.", "external:argilla-u-9"): [["Itself.", "See recursion."], ["Loops."]],
    }


def test_argilla_jsonl_is_read_line_by_line(project, admin_user):
    data = (json.dumps(ARGILLA_V2) + "\n" + json.dumps(ARGILLA_V1) + "\n").encode()
    batch = import_file(
        project=project, data=data, filename="records.jsonl", kind="argilla", created_by=admin_user
    )
    assert batch.counts["labels_created"] == 2


def test_a_bad_record_refuses_the_whole_file_naming_it(project, admin_user):
    bad = {"data": {"prompt": "p", "text1": "only one"}}
    with pytest.raises(ValidationFailed) as caught:
        _import(project, admin_user, [LS_PAIRWISE, bad], "label_studio")
    assert caught.value.extra["errors"][0]["line"] == 2
    assert caught.value.message.startswith("record 2: no responses")
    assert Task.objects.count() == Label.objects.count() == 0


def test_a_disabled_ranking_kind_is_refused(project, admin_user):
    project.task_kinds = [TaskKind.PAIRWISE]
    project.save()
    with pytest.raises(ValidationFailed, match="'ranking' is not enabled"):
        _import(project, admin_user, [LS_RANKER], "label_studio")


@pytest.mark.parametrize("fmt", ["label_studio", "argilla"])
def test_labels_export_and_import_back_unchanged(fmt, project, admin_user, make_user, client_for):
    # given a project whose labels came from Label Studio and Argilla
    _import(project, admin_user, [LS_PAIRWISE, LS_RANKER], "label_studio")
    _import(project, admin_user, [ARGILLA_V2, ARGILLA_V1], "argilla")
    before = _labels(project)
    # when its labels are exported through the API
    response = client_for(admin_user).get(
        f"/api/projects/{project.pk}/labels/export/", {"tool": fmt}
    )
    assert response.status_code == 200
    assert response["Content-Disposition"].endswith(f'-labels-{fmt.replace("_", "-")}.json"')
    records = json.loads(b"".join(response.streaming_content))
    # (the data audit log records who took the labels out, and in which shape)
    from annotation.audit import DataAuditEvent

    event = DataAuditEvent.objects.get(action="labels_exported")
    assert (event.actor, event.project, event.details) == (admin_user, project, {"tool": fmt})
    # (the two tools' "Name a prime." comparisons are the same task: three tasks in all)
    assert len(records) == Task.objects.filter(project=project).count() == 3
    assert (
        Task.objects.get(project=project, prompt__messages__0__content="Name a prime.").label_count
        == 3
    )
    # and imported into a fresh project
    from annotation import services

    other = services.project_create(name="Copy", created_by=admin_user, overlap=1)
    batch = _import(other, admin_user, records, fmt)
    # then the same people (by their stable Tandem ids) said the same things
    after = _labels(other)
    assert batch.counts["labels_created"] == len(before) == len(after) == 6

    def exported_as(username):  # the stable Tandem id the export named them by
        tandem_id = str(Label.objects.filter(annotator__username=username).first().annotator_id)
        if fmt == "label_studio":
            return f"external:label-studio-{tandem_id}"
        return f"external:argilla-{argilla_user_id('tandem-user-' + tandem_id)}"

    assert after == {(prompt, exported_as(user)): value for (prompt, user), value in before.items()}


def test_the_export_needs_the_data_capability_and_a_known_format(
    project, admin_user, annotator, client_for
):
    url = f"/api/projects/{project.pk}/labels/export/"
    assert client_for(annotator).get(url, {"tool": "argilla"}).status_code in (403, 404)
    response = client_for(admin_user).get(url, {"tool": "csv"})
    assert response.status_code == 400
    assert "tool" in response.json()  # DRF names the field as a key
