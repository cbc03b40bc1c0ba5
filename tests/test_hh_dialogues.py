"""The HH-shaped test data keeps the shape and the signal the tests built on it rely on."""

import json

from tests.hh_dialogues import EDGE_ROWS, ROWS, SCENARIOS, hh_jsonl, hh_rows

LAST_ANSWER = "\n\nAssistant: "


def _split(dialogue: str) -> tuple[str, str]:
    prompt, answer = dialogue.rsplit(LAST_ANSWER, 1)
    return prompt, answer


def _fixed_part(sentence: str) -> str:
    return sentence.split("{", 1)[0]  # the words before the first fill


def test_every_row_is_an_hh_pair_with_a_prompt_of_its_own():
    rows = hh_rows()
    assert len(rows) == ROWS
    prompts = set()
    for row in rows:
        assert set(row) == {"chosen", "rejected"}
        (prompt, chosen), (other_prompt, rejected) = _split(row["chosen"]), _split(row["rejected"])
        assert prompt.startswith("\n\nHuman: ")
        assert prompt == other_prompt  # every turn but the last is shared
        assert chosen != rejected
        prompts.add(prompt)
    assert len(prompts) == ROWS
    assert [json.loads(line) for line in hh_jsonl().decode().splitlines()] == rows
    assert hh_rows(40) == rows[:40]
    assert all(rows[i] == row for i, row in EDGE_ROWS.items())


def test_prompts_are_multi_turn_and_often_long():
    prompts = [_split(row["chosen"])[0] for row in hh_rows()]
    turns = [p.count("\n\nHuman: ") + p.count("\n\nAssistant: ") for p in prompts]
    assert min(turns) == 1
    assert max(turns) == 23
    assert sum(t >= 5 for t in turns) > ROWS // 4
    assert sum(len(p) > 600 for p in prompts) > ROWS // 5


def test_the_chosen_answer_is_the_careful_one():
    unsafe = {_fixed_part(s) for scenario in SCENARIOS for s in scenario.unsafe} - {""}
    safe = {_fixed_part(s) for scenario in SCENARIOS for s in scenario.safe} - {""}
    generated = [row for i, row in enumerate(hh_rows()) if i not in EDGE_ROWS]
    for row in generated:
        chosen, rejected = _split(row["chosen"])[1], _split(row["rejected"])[1]
        assert any(s in chosen for s in safe)
        assert not any(s in chosen for s in unsafe)
        assert any(s in rejected for s in unsafe)
        assert not any(s in rejected for s in safe)
