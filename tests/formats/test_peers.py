"""Label Studio and Argilla records, read and written in their documented shapes."""

import pytest

from formats.peers import (
    PeerJudgement,
    PeerRecord,
    read_argilla_record,
    read_label_studio_task,
    write_argilla_record,
    write_label_studio_task,
)
from formats.preference import FormatError

# The shape of a task exported from Label Studio's Pairwise template (labelstud.io/templates/
# pairwise_comparison): the names come from the labelling config, here toName="text1,text2".
LS_PAIRWISE = {
    "id": 17,
    "data": {"prompt": "Name a prime.", "text1": "Nine.", "text2": "Seven."},
    "annotations": [
        {"id": 1, "completed_by": 3, "was_cancelled": False, "lead_time": 4.2,
         "result": [{"id": "x1", "from_name": "pw", "to_name": "text1,text2",
                     "type": "pairwise", "value": {"selected": "right"}}]},
        {"id": 2, "completed_by": {"id": 5, "email": "b@example.org"}, "was_cancelled": False,
         "result": [{"from_name": "pw", "to_name": "text1,text2", "type": "pairwise",
                     "value": {"selected": "left"}}]},
        {"id": 3, "completed_by": 8, "was_cancelled": True, "result": []},
    ],
    "predictions": [
        {"model_version": "rm-v1", "score": 0.8,
         "result": [{"from_name": "pw", "to_name": "text1,text2", "type": "pairwise",
                     "value": {"selected": "right"}}]}
    ],
}  # fmt: skip

# List + Ranker (labelstud.io/tags/ranker): items {id, title, body}; one column named after
# the List, ids in the annotator's order.
LS_RANKER = {
    "data": {
        "prompt": "Explain recursion.",
        "items": [
            {"id": "blog", "title": "A", "body": "A function calling itself."},
            {"id": "mdn", "title": "B", "body": "Loops."},
            {"id": "wiki", "title": "C", "body": "See recursion."},
        ],
    },
    "annotations": [
        {"completed_by": 2, "result": [{"type": "ranker", "from_name": "rank",
         "to_name": "results", "value": {"ranker": {"results": ["wiki", "blog", "mdn"]}}}]},
        {"completed_by": 4, "result": [{"type": "ranker", "from_name": "rank",
         "to_name": "results", "value": {"ranker": {"best": ["blog", "wiki"], "worst": ["mdn"],
                                                    "_": []}}}]},
    ],
}  # fmt: skip


def test_a_label_studio_pairwise_task_reads_as_judgements_by_person():
    record = read_label_studio_task(LS_PAIRWISE)
    assert record.prompt == [{"role": "user", "content": "Name a prime."}]
    assert record.responses == ["Nine.", "Seven."]
    assert [(j.annotator, j.tiers) for j in record.judgements] == [
        ("3", [[1], [0]]),
        ("5", [[0], [1]]),
    ]
    assert record.skipped == 1  # the cancelled annotation
    assert record.suggestions == [{"agent": "rm-v1", "tiers": [[1], [0]], "score": 0.8}]
    assert record.external_id == "17"


def test_label_studio_ranker_columns_and_buckets_become_tiers():
    record = read_label_studio_task(LS_RANKER)
    assert record.responses == ["A function calling itself.", "Loops.", "See recursion."]
    assert [j.tiers for j in record.judgements] == [[[2], [0], [1]], [[0, 2], [1]]]


def test_an_email_is_kept_only_as_a_digest():
    task = {
        **LS_PAIRWISE,
        "annotations": [
            {"completed_by": "Ann@Example.org", "result": LS_PAIRWISE["annotations"][0]["result"]}
        ],
    }
    (judgement,) = read_label_studio_task(task).judgements
    assert judgement.annotator.startswith("sha256-")
    assert "example" not in judgement.annotator


@pytest.mark.parametrize(
    ("task", "reason"),
    [
        ({"data": {"text1": "a", "text2": "b"}}, "no prompt"),
        ({"data": {"prompt": "p", "text1": "a"}}, "no responses"),
        ({"data": "text"}, "'data' object"),
        ({**LS_RANKER, "annotations": [{"completed_by": 1, "result": [{"type": "ranker",
          "value": {"ranker": {"results": ["blog", "mdn"]}}}]}]}, "exactly once"),
        ({**LS_PAIRWISE, "annotations": [{"completed_by": 1, "result": [{"type": "pairwise",
          "to_name": "text1,text2", "value": {"selected": "up"}}]}]}, "left or right"),
    ],
)  # fmt: skip
def test_label_studio_tasks_of_the_wrong_shape_say_why(task, reason):
    with pytest.raises(FormatError, match=reason):
        read_label_studio_task(task)


# Argilla 2.x, as dataset.records.to_json writes it, with a ranking question "preference".
ARGILLA_V2 = {
    "id": "rec-1",
    "status": "completed",
    "fields": {"prompt": "Name a prime.", "response1": "Nine.", "response2": "Seven."},
    "metadata": {},
    "responses": {
        "preference": [
            {"value": ["response2", "response1"], "user_id": "u-1", "status": "submitted"},
            {"value": ["response1", "response2"], "user_id": "u-2", "status": "draft"},
        ],
        "comment": [{"value": "short answers", "user_id": "u-1", "status": "submitted"}],
    },
    "suggestions": {"preference": {"value": ["response2", "response1"], "score": 0.9,
                                   "agent": "rm-v1"}},
}  # fmt: skip

# Argilla 1.x FeedbackDataset record: responses with per-question values; ranks may tie.
ARGILLA_V1 = {
    "fields": {"prompt": "Explain recursion.", "reply_1": "Itself.", "reply_2": "Loops.",
               "reply_3": "See recursion."},
    "responses": [
        {"user_id": "u-9", "status": "submitted", "values": {"reply-ranking": {"value": [
            {"value": "reply_3", "rank": 1}, {"value": "reply_1", "rank": 1},
            {"value": "reply_2", "rank": 2}]}}},
        {"user_id": "u-8", "status": "discarded", "values": {}},
    ],
    "suggestions": [{"question_name": "reply-ranking", "agent": "gpt", "score": None,
                     "value": [{"value": "reply_1", "rank": 1}, {"value": "reply_2", "rank": 2},
                               {"value": "reply_3", "rank": 3}]}],
}  # fmt: skip


def test_argilla_2_records_read_submitted_rankings_only():
    record = read_argilla_record(ARGILLA_V2)
    assert record.responses == ["Nine.", "Seven."]
    assert [(j.annotator, j.tiers) for j in record.judgements] == [("u-1", [[1], [0]])]
    assert record.skipped == 2  # the draft, and the text question
    assert record.suggestions == [{"agent": "rm-v1", "tiers": [[1], [0]], "score": 0.9}]


def test_argilla_1_records_read_ranks_with_ties():
    record = read_argilla_record(ARGILLA_V1)
    assert record.responses == ["Itself.", "Loops.", "See recursion."]
    assert [(j.annotator, j.tiers) for j in record.judgements] == [("u-9", [[2, 0], [1]])]
    assert record.suggestions[0]["tiers"] == [[0], [1], [2]]


def test_an_argilla_label_question_naming_a_response_picks_the_best_of_two():
    record = {"fields": {"instruction": "Hi", "response-1": "a", "response-2": "b"},
              "responses": {"best": [{"value": "response-2", "user_id": "u"}]}}  # fmt: skip
    assert read_argilla_record(record).judgements[0].tiers == [[1], [0]]


@pytest.mark.parametrize("n", [2, 3])
def test_what_tandem_writes_each_peer_reads_back(n):
    record = PeerRecord(
        prompt=[{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."},
                {"role": "user", "content": "And?"}],
        responses=[f"answer {i}" for i in range(n)],
        judgements=[PeerJudgement("7", [[1], [0]] + ([[2]] if n == 3 else [])),
                    PeerJudgement("9", [[0, 1]] + ([[2]] if n == 3 else []))],
    )  # fmt: skip
    back = read_label_studio_task(write_label_studio_task(record))
    assert (back.prompt, back.responses) == (record.prompt, record.responses)
    assert [(j.annotator, j.tiers) for j in back.judgements] == [
        (j.annotator, j.tiers) for j in record.judgements
    ]
    back = read_argilla_record(write_argilla_record(record))
    assert back.responses == record.responses
    assert [(j.annotator, [sorted(t) for t in j.tiers]) for j in back.judgements] == [
        (j.annotator, j.tiers) for j in record.judgements
    ]
