"""Imports: whole files or nothing, line numbers in errors, no duplicates on re-import."""

import json
import re

import pytest

from annotation.importers import import_file
from annotation.models import ImportBatch, Label, Prompt, Response, Task, TaskKind, TaskStatus
from config.errors import PayloadTooLarge, ValidationFailed
from tests.hh_dialogues import EDGE_ROWS, hh_jsonl


def jsonl(*rows) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


def counts():
    return (Prompt.objects.count(), Response.objects.count(), Task.objects.count(),
            Label.objects.count())  # fmt: skip


def test_hh_rlhf_pairs_import_as_labels_by_an_external_annotator(project, admin_user):
    # given 800 labelled pairs in the HH-RLHF harmless-base shape
    data = hh_jsonl()
    rows = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    # when it is imported as preferences
    project.overlap = 1
    project.save()
    batch = import_file(
        project=project, data=data, filename="hh_harmless.jsonl", kind="preferences",
        created_by=admin_user, annotator_name="hh-rlhf crowd",
    )  # fmt: skip
    # then every distinct pair became a done pairwise task with one label naming the chosen side
    distinct = {(r["chosen"], r["rejected"]) for r in rows}
    assert batch.rows == len(rows) == 800
    assert batch.counts["tasks_created"] == Task.objects.count() == len(distinct)
    assert Label.objects.count() == len(distinct)
    assert set(Task.objects.values_list("status", flat=True)) == {TaskStatus.DONE}
    label = Label.objects.select_related("annotator", "task").first()
    assert label.annotator.username == "external:hh-rlhf-crowd"
    assert label.annotator.is_active is False
    winner = Response.objects.get(pk=label.payload["winner"])
    first = next(r for r in rows if r["chosen"].endswith(winner.text))
    assert first["chosen"].endswith("\n\nAssistant: " + winner.text)
    # and the chosen side is not always canonical position A
    outcomes = set(Label.objects.values_list("payload__outcome", flat=True))
    assert outcomes == {"A", "B"}


def test_hh_edge_rows_import_as_written(project, admin_user):
    # given the HH-shaped rows that carry edge cases, in one file
    data = "\n".join(json.dumps(row) for row in EDGE_ROWS.values()).encode()
    # when they are imported as preferences
    batch = import_file(project=project, data=data, filename="edges.jsonl", kind="preferences",
                        created_by=admin_user)  # fmt: skip
    # then every row became a labelled pairwise task
    assert batch.counts["tasks_created"] == Label.objects.count() == len(EDGE_ROWS)

    def winner(index):
        prompt = Prompt.objects.get(messages=_hh_prompt(EDGE_ROWS[index]))
        label = Label.objects.get(task__prompt=prompt)
        return Response.objects.get(pk=label.payload["winner"]).text

    # an empty chosen answer is an empty response, and it is the one the label chose
    assert winner(11) == winner(701) == ""
    # two Assistant turns in a row stay two turns of the prompt
    assert [m["role"] for m in _hh_prompt(EDGE_ROWS[17])] == [
        "user", "assistant", "assistant", "user",
    ]  # fmt: skip
    assert Prompt.objects.filter(messages=_hh_prompt(EDGE_ROWS[17])).exists()
    # "human:" inside a turn is text of that turn
    assert Prompt.objects.get(messages=_hh_prompt(EDGE_ROWS[23])).messages[1]["content"] == (
        "Actually, human: I can't watch television, but I can talk about films."
    )
    # answers one character apart are two responses; paragraphs and lists are kept as written
    assert winner(31).endswith("yours to open.")
    assert "\n\n1. Talk to them when you're both calm.\n2. Label" in winner(97)
    assert winner(333).startswith("Entiendo que estés molesto")
    # the 23-turn prompt keeps all its turns
    assert len(Prompt.objects.get(messages=_hh_prompt(EDGE_ROWS[555])).messages) == 23


def _hh_prompt(row: dict) -> list[dict]:
    """The shared turns of an HH row, read independently of the importer."""
    parts = re.split(r"\n\n(Human|Assistant): ", row["chosen"])[1:-2]  # ["", role, text, ...]
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[r], "content": t} for r, t in zip(parts[::2], parts[1::2], strict=True)]


def test_hh_prompts_keep_every_turn_but_the_last(project, admin_user):
    row = {
        "chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: a joke?\n\nAssistant: Knock knock.",
        "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: a joke?\n\nAssistant: No.",
    }
    import_file(project=project, data=jsonl(row), filename="p.jsonl", kind="preferences",
                created_by=admin_user)  # fmt: skip
    assert Prompt.objects.get().messages == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "a joke?"},
    ]
    assert sorted(Response.objects.values_list("text", flat=True)) == ["Knock knock.", "No."]


def test_reimporting_the_same_file_creates_nothing(project, admin_user):
    data = jsonl(
        {"prompt": "2+2?", "chosen": "4", "rejected": "5"},
        {"prompt": [{"role": "user", "content": "Capital of Peru?"}],
         "chosen": [{"role": "assistant", "content": "Lima"}],
         "rejected": [{"role": "assistant", "content": "Cusco"}]},
    )  # fmt: skip
    import_file(project=project, data=data, filename="trl.jsonl", kind="preferences",
                created_by=admin_user)  # fmt: skip
    before = counts()
    again = import_file(project=project, data=data, filename="trl.jsonl", kind="preferences",
                        created_by=admin_user)  # fmt: skip
    assert counts() == before == (2, 4, 2, 2)
    assert again.counts["tasks_created"] == 0
    assert again.counts["labels_existing"] == 2


def test_a_bad_line_refuses_the_whole_file(project, admin_user):
    data = (
        jsonl({"prompt": "fine"}, {"prompt": "also fine"})
        + b"\n{not json}\n"
        + jsonl({"messages": [{"role": "wizard", "content": "x"}]})
    )
    with pytest.raises(ValidationFailed) as refused:
        import_file(project=project, data=data, filename="p.jsonl", kind="prompts",
                    created_by=admin_user)  # fmt: skip
    assert refused.value.message.startswith("line 3: not valid JSON")
    assert [e["line"] for e in refused.value.extra["errors"]] == [3, 4]
    assert "role 'wizard'" in refused.value.extra["errors"][1]["reason"]
    assert counts() == (0, 0, 0, 0)
    assert not ImportBatch.objects.exists()


def test_invalid_utf8_and_nul_bytes_are_refused_with_the_line(project, admin_user):
    bad_utf8 = b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n'
    with pytest.raises(ValidationFailed) as refused:
        import_file(project=project, data=bad_utf8, filename="p.jsonl", kind="prompts",
                    created_by=admin_user)  # fmt: skip
    assert refused.value.message == "line 2: the file is not valid UTF-8"
    with pytest.raises(ValidationFailed) as refused:
        import_file(project=project, data=b'{"prompt": "a\x00"}', filename="p.jsonl",
                    kind="prompts", created_by=admin_user)  # fmt: skip
    assert refused.value.message.startswith("line 1:")
    assert counts() == (0, 0, 0, 0)


def test_oversized_files_are_refused(project, admin_user, settings):
    settings.TANDEM_MAX_IMPORT_BYTES = 100
    with pytest.raises(PayloadTooLarge):
        import_file(project=project, data=b"x" * 101, filename="p.jsonl", kind="prompts",
                    created_by=admin_user)  # fmt: skip
    assert counts() == (0, 0, 0, 0)


def test_csv_prompts_and_responses(project, admin_user):
    prompts = b'prompt,system\n"Write a haiku, please",Be brief\nName three rivers,\n'
    import_file(project=project, data=prompts, filename="p.csv", kind="prompts",
                created_by=admin_user)  # fmt: skip
    assert sorted(len(p.messages) for p in Prompt.objects.all()) == [1, 2]
    responses = b"prompt,response_1,response_2,response_3\nName three rivers,Nile,Amazon,Rhine\n"
    batch = import_file(project=project, data=responses, filename="r.csv", kind="responses",
                        created_by=admin_user)  # fmt: skip
    task = Task.objects.get()
    assert (task.kind, batch.counts["tasks_created"]) == (TaskKind.RANKING, 1)
    assert list(task.items.values_list("response__text", flat=True)) == ["Nile", "Amazon", "Rhine"]
    assert Prompt.objects.count() == 2  # the prompt was matched, not duplicated


def test_responses_with_model_names_and_explicit_kinds(project, admin_user):
    data = jsonl({
        "prompt": "Explain recursion.",
        "responses": [{"text": "A function calling itself.", "model": "v1"},
                      {"text": "See: recursion.", "model": "v2"}],
        "kinds": ["pairwise", "correction"],
    })  # fmt: skip
    import_file(project=project, data=data, filename="r.jsonl", kind="responses",
                created_by=admin_user)  # fmt: skip
    kinds = sorted(Task.objects.values_list("kind", flat=True))
    assert kinds == ["correction", "correction", "pairwise"]
    assert sorted(Response.objects.values_list("model_name", "origin")) == [
        ("v1", "model"), ("v2", "model"),
    ]  # fmt: skip


def test_disabled_task_kinds_are_refused(project, admin_user):
    project.task_kinds = ["ranking"]
    project.save()
    data = jsonl({"prompt": "x?", "responses": ["a", "b"]})
    with pytest.raises(ValidationFailed) as refused:
        import_file(project=project, data=data, filename="r.jsonl", kind="responses",
                    created_by=admin_user)  # fmt: skip
    assert "not enabled" in refused.value.message
    assert counts() == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"prompt": "hi", "metadata": {"score": NaN}}', "NaN is not a JSON number"),
        (b'{"prompt": "hi", "metadata": {"score": 1e999}}', "out of range"),
        (b'{"prompt": "hi", "metadata": {"x": "a\\u0000b"}}', "NUL character"),
        (b'{"prompt": "hi", "source": "s\\u0000"}', "NUL character"),
        (b'{"prompt": "hi", "metadata": {"x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}",
         "nested too deeply"),
    ],
)  # fmt: skip
def test_json_the_database_cannot_store_is_refused_with_the_line(project, admin_user, line, reason):
    # given a file whose second row is JSON to Python but not storable (jsonb, text columns)
    data = jsonl({"prompt": "fine"}) + b"\n" + line + b"\n"
    # when it is imported, then it is refused with the line and the reason, and nothing is kept
    with pytest.raises(ValidationFailed) as refused:
        import_file(project=project, data=data, filename="p.jsonl", kind="prompts",
                    created_by=admin_user)  # fmt: skip
    assert refused.value.extra["errors"][0]["line"] == 2
    assert reason in refused.value.extra["errors"][0]["reason"]
    assert counts() == (0, 0, 0, 0)
    assert not ImportBatch.objects.exists()
