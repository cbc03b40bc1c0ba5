"""Label Studio and Argilla exports, read and written as plain dicts (no Django).

Both peers describe a comparison as a record holding a prompt, two or more responses and the
judgements of named people. Tandem reads each into one neutral :class:`PeerRecord` (a prompt
as messages, the responses' texts, and each person's judgement as *tiers*: lists of response
indices, best first, where a tier of several holds a tie) and writes them back the same way,
so an export of Tandem's labels imports into Tandem again unchanged.

Label Studio (the JSON export: a list of tasks, https://labelstud.io/guide/task_format):
- pairwise, as the ``<Pairwise name="comparison" toName="answer1,answer2"/>`` template saves
  it: ``data`` holds the prompt and the two texts named by ``to_name``; an annotation's result
  ``{"type": "pairwise", "value": {"selected": "left"|"right"}}``. A tie, which the Pairwise
  tag cannot say, is written (and read) as a ``choices`` result whose choice is ``"tie"``.
- ranking, as ``<List name="answers" value="$items"/><Ranker name="rank" toName="answers"/>``
  saves it: ``data.items`` is a list of ``{"id", "title", "body"}``; the result
  ``{"type": "ranker", "value": {"ranker": {"answers": [ids in order]}}}``; with ``<Bucket>``
  tags the value holds one list per bucket, read in order as tiers (the internal ``"_"``
  column, items left unsorted, is ignored; a ranking must place every item).
- cancelled annotations (``was_cancelled``) and empty results are skipped; ``predictions``
  (a model's pre-annotations) are kept as suggestions, never as labels.

Argilla (records exported with ``dataset.records.to_json`` / ``to_list(flatten=False)`` in
2.x, or a 1.x ``FeedbackDataset`` record): ``fields`` hold the prompt and the responses;
``responses`` hold each user's answers per question (2.x: ``{question: [{"value", "user_id",
"status"}]}``; 1.x: ``[{"user_id", "values": {question: {"value"}}, "status"}]``). A ranking
question's value is a list of field names in order, or of ``{"value", "rank"}`` (equal ranks
are a tie); a label question whose value names one response field picks the best of two.
Only submitted answers count (a missing status counts as submitted). ``suggestions`` are kept
as suggestions.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field

from formats.preference import Conversation, FormatError, as_conversation

PROMPT_KEYS = ("messages", "prompt", "instruction", "question", "input", "text", "context")
# Pairs of data keys that hold the two answers, tried in order when a Label Studio pairwise
# result does not name them. (An Argilla record's responses are its text fields beside the
# prompt-like ones.)
PAIR_KEYS = (
    ("answer1", "answer2"),
    ("response1", "response2"),
    ("response-1", "response-2"),
    ("response_1", "response_2"),
    ("response_a", "response_b"),
    ("text1", "text2"),
)
TIE = "tie"
# The names Tandem writes; the reader accepts these and the alternatives above.
LS_PAIRWISE_FROM, LS_RANKER_FROM, LS_LIST_NAME = "comparison", "rank", "answers"
ARGILLA_QUESTION = "preference"
_USER_NAMESPACE = uuid.UUID("6f2b0d3e-5c7a-4c1e-9a51-7d0c2b8e4f11")

Tiers = list[list[int]]


@dataclass
class PeerJudgement:
    annotator: str  # the peer's own id for the person, e.g. "7" or a uuid
    tiers: Tiers  # response indices, best first; a tier of several is a tie


@dataclass
class PeerRecord:
    prompt: Conversation
    responses: list[str]
    judgements: list[PeerJudgement] = field(default_factory=list)
    suggestions: list[dict] = field(default_factory=list)  # {"agent", "tiers", "score"}
    external_id: str = ""
    skipped: int = 0  # cancelled, draft or empty judgements, and questions of other kinds


# ---------------------------------------------------------------------------------------
# Reading


def _prompt_of(data: dict) -> Conversation:
    for key in PROMPT_KEYS:
        value = data.get(key)
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return as_conversation(value)
        if isinstance(value, str) and value.strip():
            return as_conversation(value)
    raise FormatError(f"no prompt: expected one of the fields {list(PROMPT_KEYS)}")


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise FormatError(f"{what} must be text")
    return value


def _complete(tiers: Tiers, n: int, what: str) -> Tiers:
    placed = [i for tier in tiers for i in tier]
    if sorted(placed) != list(range(n)):
        raise FormatError(f"{what} must place each of the {n} responses exactly once")
    return [list(t) for t in tiers if t]


def _annotator_of_ls(annotation: dict) -> str:
    """Label Studio's user id; an e-mail only as a digest (it is personal data)."""
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        if who.get("id") is not None:
            return str(who["id"])
        who = who.get("email")
    if isinstance(who, int | str) and str(who).isdigit():
        return str(who)
    if isinstance(who, str) and who:
        return "sha256-" + hashlib.sha256(who.strip().lower().encode()).hexdigest()[:16]
    raise FormatError("an annotation has no completed_by")


def _ls_pair_keys(data: dict, results: list[dict]) -> tuple[str, str] | None:
    for result in results:
        if result.get("type") == "pairwise" and isinstance(result.get("to_name"), str):
            names = [n.strip() for n in result["to_name"].split(",")]
            if len(names) == 2 and all(isinstance(data.get(n), str) for n in names):
                return names[0], names[1]
    for keys in PAIR_KEYS:
        if all(isinstance(data.get(k), str) for k in keys):
            return keys
    return None


def _ls_items(data: dict) -> list[dict] | None:
    for value in data.values():
        if (
            isinstance(value, list)
            and value
            and all(
                isinstance(v, dict) and "id" in v and any(k in v for k in ("body", "text", "title"))
                for v in value
            )
        ):
            return value
    return None


def _ls_tiers(results: list[dict], n: int, item_ids: list[str] | None) -> Tiers | None:
    """The judgement in one annotation's results, or None if it holds none we read."""
    for result in results:
        kind, value = result.get("type"), result.get("value") or {}
        if kind == "pairwise" and n == 2:
            selected = value.get("selected")
            if selected not in ("left", "right"):
                raise FormatError("a pairwise result's value.selected must be left or right")
            return [[0], [1]] if selected == "left" else [[1], [0]]
        if kind == "choices" and n == 2 and value.get("choices") == [TIE]:
            return [[0, 1]]
        if kind == "ranker" and item_ids is not None:
            columns = value.get("ranker")
            if not isinstance(columns, dict) or not columns:
                raise FormatError("a ranker result's value.ranker must be an object")
            lists = [v for k, v in columns.items() if k != "_"] or list(columns.values())
            position = {item_id: i for i, item_id in enumerate(item_ids)}
            if len(lists) == 1:  # a List + Ranker: one ordered column, no ties
                tiers = [[position.get(str(x), -1)] for x in lists[0]]
            else:  # buckets, in order, each a tier
                tiers = [[position.get(str(x), -1) for x in column] for column in lists]
            return _complete(tiers, n, "a ranker result")
    return None


def read_label_studio_task(task: dict) -> PeerRecord:
    """One task of a Label Studio JSON export."""
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise FormatError("each task must be an object with a 'data' object")
    data = task["data"]
    prompt = _prompt_of(data)
    annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict)]
    all_results = [r for a in annotations for r in a.get("result") or [] if isinstance(r, dict)]
    pair = _ls_pair_keys(data, all_results)
    items = None if pair else _ls_items(data)
    if pair:
        responses, item_ids = [_text(data[k], k) for k in pair], None
    elif items:
        responses = [
            _text(next(it[k] for k in ("body", "text", "title") if k in it), "an item")
            for it in items
        ]
        item_ids = [str(it["id"]) for it in items]
    else:
        raise FormatError(
            "no responses: expected two texts (answer1/answer2, or those a pairwise result "
            "names) or a list of items {id, title, body}"
        )
    record = PeerRecord(prompt=prompt, responses=responses, external_id=str(task.get("id", "")))
    for annotation in annotations:
        results = [r for r in annotation.get("result") or [] if isinstance(r, dict)]
        tiers = (
            None
            if annotation.get("was_cancelled")
            else _ls_tiers(results, len(responses), item_ids)
        )
        if tiers is None:
            record.skipped += 1
            continue
        record.judgements.append(PeerJudgement(_annotator_of_ls(annotation), tiers))
    for prediction in task.get("predictions") or []:
        if not isinstance(prediction, dict):
            continue
        results = [r for r in prediction.get("result") or [] if isinstance(r, dict)]
        tiers = _ls_tiers(results, len(responses), item_ids)
        if tiers is not None:
            record.suggestions.append(
                {"agent": str(prediction.get("model_version") or ""), "tiers": tiers,
                 "score": prediction.get("score")}
            )  # fmt: skip
    return record


def _argilla_response_fields(fields: dict) -> list[str]:
    """Every text field but the prompt-like ones, in the record's order."""
    return [k for k, v in fields.items() if k not in PROMPT_KEYS and isinstance(v, str)]


def _argilla_tiers(value, names: list[str]) -> Tiers | None:
    position = {name: i for i, name in enumerate(names)}
    if isinstance(value, str) and value in position and len(names) == 2:  # a label question
        best = position[value]
        return [[best], [1 - best]]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(v, str) for v in value):
        tiers = [[position.get(v, -1)] for v in value]
    elif all(isinstance(v, dict) and "value" in v for v in value):
        by_rank: dict = {}
        for i, v in enumerate(value):
            rank = v.get("rank")
            by_rank.setdefault(rank if isinstance(rank, int) else 10**6 + i, []).append(
                position.get(v["value"], -1)
            )
        tiers = [by_rank[r] for r in sorted(by_rank)]
    else:
        return None
    return _complete(tiers, len(names), "a ranking")


def _argilla_answers(record: dict) -> list[tuple[str, str, object, bool]]:
    """(user, question, value, submitted) of each answer, in 2.x or 1.x shape."""
    answers, raw = [], record.get("responses") or {}
    if isinstance(raw, dict):  # 2.x
        for question, given in raw.items():
            for r in given or []:
                if isinstance(r, dict):
                    submitted = r.get("status", "submitted") == "submitted"
                    answers.append(
                        (str(r.get("user_id") or ""), question, r.get("value"), submitted)
                    )
    elif isinstance(raw, list):  # 1.x
        for r in raw:
            if not isinstance(r, dict):
                continue
            submitted = r.get("status", "submitted") == "submitted"
            values = r.get("values") or {}
            if not values:
                answers.append((str(r.get("user_id") or ""), "", None, submitted))
            for question, given in values.items():
                value = given.get("value") if isinstance(given, dict) else None
                answers.append((str(r.get("user_id") or ""), question, value, submitted))
    return answers


def read_argilla_record(record: dict) -> PeerRecord:
    """One record of an Argilla export (2.x or 1.x shape)."""
    if not isinstance(record, dict) or not isinstance(record.get("fields"), dict):
        raise FormatError("each record must be an object with a 'fields' object")
    fields = record["fields"]
    prompt = _prompt_of(fields)
    names = _argilla_response_fields(fields)
    if len(names) < 2:
        raise FormatError("a record needs at least two response fields beside the prompt")
    out = PeerRecord(
        prompt=prompt,
        responses=[fields[k] for k in names],
        external_id=str(record.get("id") or record.get("external_id") or ""),
    )
    judged: set[str] = set()
    for user, _question, value, submitted in _argilla_answers(record):
        tiers = _argilla_tiers(value, names) if submitted else None
        if tiers is None or not user or user in judged:  # one judgement per person
            out.skipped += 1
            continue
        judged.add(user)
        out.judgements.append(PeerJudgement(user, tiers))
    raw = record.get("suggestions") or {}
    given = (
        [dict(v, question_name=k) for k, v in raw.items() if isinstance(v, dict)]
        if isinstance(raw, dict)
        else [s for s in raw if isinstance(s, dict)]
    )
    for s in given:
        tiers = _argilla_tiers(s.get("value"), names)
        if tiers is not None:
            out.suggestions.append(
                {"agent": str(s.get("agent") or ""), "tiers": tiers, "score": s.get("score")}
            )
    return out


READERS = {"label_studio": read_label_studio_task, "argilla": read_argilla_record}


# ---------------------------------------------------------------------------------------
# Writing


def _prompt_text(prompt: Conversation) -> str:
    return (
        prompt[-1]["content"]
        if len(prompt) == 1
        else "\n\n".join(f"{m['role']}: {m['content']}" for m in prompt)
    )


def write_label_studio_task(record: PeerRecord, *, task_id: int | None = None) -> dict:
    """A Label Studio task (data, annotations) that ``read_label_studio_task`` reads back."""
    n = len(record.responses)
    data: dict = {"prompt": _prompt_text(record.prompt)}
    if len(record.prompt) > 1:
        data["messages"] = record.prompt
    if n == 2:
        data["answer1"], data["answer2"] = record.responses
    else:
        data["items"] = [
            {"id": f"r{i + 1}", "title": f"Response {i + 1}", "body": text}
            for i, text in enumerate(record.responses)
        ]
    annotations = []
    for judgement in record.judgements:
        annotations.append(
            {"completed_by": int(judgement.annotator) if judgement.annotator.isdigit()
             else judgement.annotator,
             "was_cancelled": False, "result": [_ls_result(judgement.tiers, n)]}
        )  # fmt: skip
    task = {"data": data, "annotations": annotations}
    if task_id is not None:
        task["id"] = task_id
    return task


def _ls_result(tiers: Tiers, n: int) -> dict:
    if n == 2 and len(tiers) == 1:
        return {"type": "choices", "from_name": "outcome", "to_name": "prompt",
                "value": {"choices": [TIE]}}  # fmt: skip
    if n == 2:
        selected = "left" if tiers[0] == [0] else "right"
        return {"type": "pairwise", "from_name": LS_PAIRWISE_FROM, "to_name": "answer1,answer2",
                "value": {"selected": selected}}  # fmt: skip
    ids = [[f"r{i + 1}" for i in tier] for tier in tiers]
    if all(len(tier) == 1 for tier in tiers):
        ranker = {LS_LIST_NAME: [tier[0] for tier in ids]}
    else:
        ranker = {f"tier-{k + 1}": tier for k, tier in enumerate(ids)}
    return {"type": "ranker", "from_name": LS_RANKER_FROM, "to_name": LS_LIST_NAME,
            "value": {"ranker": ranker}}  # fmt: skip


def argilla_user_id(annotator: str) -> str:
    """A stable uuid for a Tandem annotator, as Argilla names its users."""
    return str(uuid.uuid5(_USER_NAMESPACE, annotator))


def write_argilla_record(record: PeerRecord) -> dict:
    """An Argilla 2.x record (fields, responses of a ranking question) that
    ``read_argilla_record`` reads back. Ties need ranks, so a ranking with a tie is written as
    ``{"value", "rank"}`` items; one without as the plain list of field names."""
    names = [f"response{i + 1}" for i in range(len(record.responses))]
    fields = {"prompt": _prompt_text(record.prompt)}
    fields.update(zip(names, record.responses, strict=True))
    answers = []
    for judgement in record.judgements:
        if all(len(tier) == 1 for tier in judgement.tiers):
            value: list = [names[tier[0]] for tier in judgement.tiers]
        else:
            value = [
                {"value": names[i], "rank": rank + 1}
                for rank, tier in enumerate(judgement.tiers)
                for i in tier
            ]
        answers.append({"value": value, "user_id": judgement.annotator, "status": "submitted"})
    out = {"fields": fields, "responses": {ARGILLA_QUESTION: answers} if answers else {},
           "suggestions": {}, "metadata": {}}  # fmt: skip
    if record.external_id:
        out["id"] = record.external_id
    return out


WRITERS = {"label_studio": write_label_studio_task, "argilla": write_argilla_record}


def _peer_user(fmt: str, annotator: str) -> str:
    return argilla_user_id(f"tandem-user-{annotator}") if fmt == "argilla" else annotator


def peer_json_array(records, fmt: str):
    """Yield a JSON array of ``records`` written in ``fmt``, one element at a time."""
    write = WRITERS[fmt]
    yield "["
    for n, record in enumerate(records):
        for judgement in record.judgements:
            judgement.annotator = _peer_user(fmt, judgement.annotator)
        yield ("," if n else "") + "\n" + json.dumps(write(record), ensure_ascii=False)
    yield "\n]\n"
