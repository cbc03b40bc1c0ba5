"""Label payloads: what clients send, and the canonical form stored in ``Label.payload``.

Clients speak in what they saw (``left``/``right``); the stored payload speaks in the task's
canonical positions (``A`` is the item at position 0), so labels from annotators who saw the
sides swapped are directly comparable. Canonical payloads per kind:

pairwise    {"outcome": "A"|"B"|"tie"|"both_bad", "strength": "slight"|"clear"|"strong"|None,
             "winner": response_id|None, "chosen_side": "left"|"right"|None, "rationale": str}
ranking     {"ranking": [[response_id, ...], ...]}  best tier first; a tier holds ties
rubric      {"scores": {"<response_id>": {"<dimension>": int}}}
correction  {"response_id", "original_text", "corrected_text", "diff", "edit_distance",
             "unchanged"}
confirm     {"decision": "confirm"|"edit"|"reject", "proposal_id", "proposal_kind",
             "proposed_text", "final_text"|None, "edit_distance"|None}; a correction proposal
             that is kept also carries the correction keys ("response_id", "original_text",
             "corrected_text", "diff", "unchanged"), so snapshots read it as a correction

Every kind may carry ``flags`` (stored on the label itself), a subset of ``FLAGS``.

Annotators never see response ids: a review round's answers are written model by model, so
their ids would tell which side is the candidate. The annotator API speaks each response by
its task item's id instead (``selectors.annotator_ids``); ``ids_translated`` maps a payload
between the two, in either direction.
"""

from __future__ import annotations

import difflib

from rapidfuzz.distance import Levenshtein

from annotation.models import TaskKind
from config.errors import ValidationFailed

FLAGS = ("unsafe", "personal_data", "spam")
STRENGTHS = ("slight", "clear", "strong")
OUTCOMES = ("A", "B", "tie", "both_bad")
MAX_RATIONALE_CHARS = 5_000
MAX_CORRECTION_CHARS = 100_000


def _invalid(message: str, field: str = "payload"):
    return ValidationFailed(message, code="invalid_label", field=field)


def clean_flags(flags) -> list[str]:
    if flags is None:
        return []
    if not isinstance(flags, list) or any(f not in FLAGS for f in flags):
        raise _invalid(f"flags must be a list drawn from {list(FLAGS)}", "flags")
    return sorted(set(flags))


def _rationale(payload: dict) -> str:
    rationale = payload.get("rationale") or ""
    if not isinstance(rationale, str):
        raise _invalid("rationale must be text", "rationale")
    if len(rationale) > MAX_RATIONALE_CHARS:
        raise _invalid(f"rationale is longer than {MAX_RATIONALE_CHARS} characters", "rationale")
    return rationale


def canonical_pairwise(payload: dict, *, item_ids: list[int], shown_order: list[int] | None):
    choice = payload.get("choice")
    if choice in ("left", "right"):
        if not shown_order:
            raise _invalid("'left'/'right' needs the shown order of a lease; send 'A' or 'B'")
        winner = shown_order[0] if choice == "left" else shown_order[1]
        outcome = "A" if winner == item_ids[0] else "B"
        side = choice
    elif choice in ("A", "B"):
        winner = item_ids[0] if choice == "A" else item_ids[1]
        outcome = choice
        side = None
        if shown_order:
            side = "left" if shown_order[0] == winner else "right"
    elif choice in ("tie", "both_bad"):
        winner, outcome, side = None, choice, None
    else:
        raise _invalid("choice must be one of left, right, A, B, tie, both_bad", "choice")
    strength = payload.get("strength")
    if outcome in ("A", "B"):
        strength = strength or "clear"
        if strength not in STRENGTHS:
            raise _invalid(f"strength must be one of {list(STRENGTHS)}", "strength")
    elif strength is not None:
        raise _invalid("a tie or 'both bad' carries no strength", "strength")
    return {
        "outcome": outcome,
        "strength": strength,
        "winner": winner,
        "chosen_side": side,
        "rationale": _rationale(payload),
    }


def canonical_ranking(payload: dict, *, item_ids: list[int]):
    ranking = payload.get("ranking")
    if not isinstance(ranking, list) or not ranking:
        raise _invalid("ranking must be a list of tiers, best first", "ranking")
    tiers, seen = [], []
    for tier in ranking:
        tier = tier if isinstance(tier, list) else [tier]
        if not tier or any(not isinstance(i, int) or isinstance(i, bool) for i in tier):
            raise _invalid("each tier is a non-empty list of response ids", "ranking")
        tiers.append(sorted(tier))
        seen.extend(tier)
    if sorted(seen) != sorted(item_ids):
        raise _invalid("the ranking must place every response of the task exactly once", "ranking")
    return {"ranking": tiers, "rationale": _rationale(payload)}


def canonical_rubric(payload: dict, *, item_ids: list[int], rubric: list[dict]):
    scores = payload.get("scores")
    if not isinstance(scores, dict):
        raise _invalid("scores must map each response id to its dimension scores", "scores")
    by_dimension = set(scores) <= {d["name"] for d in rubric}
    if len(item_ids) == 1 and by_dimension and all(isinstance(v, int) for v in scores.values()):
        # One response: the scores may be given directly by dimension.
        scores = {str(item_ids[0]): scores}
    if sorted(scores) != sorted(str(i) for i in item_ids):
        raise _invalid("scores must cover every response of the task", "scores")
    out = {}
    for response_id, dims in scores.items():
        if not isinstance(dims, dict):
            raise _invalid("each response's scores must be an object", "scores")
        if sorted(dims) != sorted(d["name"] for d in rubric):
            raise _invalid(
                "score every rubric dimension: " + ", ".join(d["name"] for d in rubric), "scores"
            )
        row = {}
        for dim in rubric:
            value = dims[dim["name"]]
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not (dim["min"] <= value <= dim["max"])
            ):
                raise _invalid(
                    f"{dim['name']} must be a whole number from {dim['min']} to {dim['max']}",
                    "scores",
                )
            row[dim["name"]] = value
        out[str(response_id)] = row
    return {"scores": out, "rationale": _rationale(payload)}


def text_diff(original: str, corrected: str) -> str:
    lines = difflib.unified_diff(
        original.splitlines(keepends=True),
        corrected.splitlines(keepends=True),
        fromfile="original",
        tofile="corrected",
    )
    return "".join(lines)


def canonical_correction(payload: dict, *, item_ids: list[int], texts: dict[int, str]):
    corrected = payload.get("corrected_text")
    if not isinstance(corrected, str) or not corrected.strip():
        raise _invalid("corrected_text must be the rewritten response", "corrected_text")
    if len(corrected) > MAX_CORRECTION_CHARS:
        raise _invalid(
            f"corrected_text is longer than {MAX_CORRECTION_CHARS} characters", "corrected_text"
        )
    response_id = payload.get("response_id", item_ids[0])
    if response_id not in item_ids:
        raise _invalid("response_id is not a response of this task", "response_id")
    original = texts[response_id]
    return {
        "response_id": response_id,
        "original_text": original,
        "corrected_text": corrected,
        "diff": text_diff(original, corrected),
        "edit_distance": Levenshtein.distance(original, corrected),
        "unchanged": original == corrected,
        "rationale": _rationale(payload),
    }


CONFIRM_DECISIONS = ("confirm", "edit", "reject")


def canonical_confirm(payload: dict, *, proposal: dict, texts: dict[int, str]):
    """A person's decision on a model's proposal. ``proposal``: ``{"id", "kind", "text",
    "response_id"}`` (the response a correction rewrites, else None). ``edit`` with the
    proposal's own text is a ``confirm``: the person changed nothing."""
    decision = payload.get("decision")
    if decision not in CONFIRM_DECISIONS:
        raise _invalid(f"decision must be one of {list(CONFIRM_DECISIONS)}", "decision")
    proposed = proposal["text"]
    final = None
    if decision == "confirm":
        final = proposed
    elif decision == "edit":
        final = payload.get("text")
        if not isinstance(final, str) or not final.strip():
            raise _invalid("an edit needs the edited text", "text")
        if len(final) > MAX_CORRECTION_CHARS:
            raise _invalid(f"text is longer than {MAX_CORRECTION_CHARS} characters", "text")
        if final == proposed:
            decision = "confirm"
    out = {
        "decision": decision,
        "proposal_id": proposal["id"],
        "proposal_kind": proposal["kind"],
        "proposed_text": proposed,
        "final_text": final,
        "edit_distance": None if final is None else Levenshtein.distance(proposed, final),
        "rationale": _rationale(payload),
    }
    if final is not None and proposal["response_id"] is not None:
        original = texts[proposal["response_id"]]
        out.update(
            response_id=proposal["response_id"],
            original_text=original,
            corrected_text=final,
            diff=text_diff(original, final),
            unchanged=original == final,
        )
    return out


def _translated(value, mapping: dict[int, int], strict: bool):
    if not isinstance(value, int) or isinstance(value, bool):
        return value  # the wrong type is canonical_payload's to refuse, with its own message
    if value in mapping:
        return mapping[value]
    if strict:
        raise _invalid(f"{value} is not a response of this task", "payload")
    return value


def ids_translated(kind: str, payload, mapping: dict[int, int], *, strict: bool) -> dict:
    """``payload`` (a client's or a stored one) with every response id mapped through
    ``mapping``. ``strict``: an id the mapping does not know is refused (what a client sends
    must name a response of its task); otherwise it is kept."""
    if not isinstance(payload, dict):
        return payload

    def one(value):
        return _translated(value, mapping, strict)

    out = dict(payload)
    if kind == TaskKind.PAIRWISE and "winner" in out:
        out["winner"] = one(out["winner"])
    elif kind == TaskKind.RANKING and isinstance(out.get("ranking"), list):
        out["ranking"] = [
            [one(i) for i in tier] if isinstance(tier, list) else one(tier)
            for tier in out["ranking"]
        ]
    elif kind == TaskKind.RUBRIC and isinstance(out.get("scores"), dict):
        scores = {}
        for key, value in out["scores"].items():
            # Keys of per-response objects are ids; a one-response task may be scored by
            # dimension name directly ({"helpful": 4}), whose keys are left alone.
            # isascii: "²".isdigit() is True, and int("²") raises.
            is_number = isinstance(key, str) and key.isascii() and key.isdigit()
            number = int(key) if is_number else None
            is_id = number is not None and isinstance(value, dict)
            scores[str(one(number)) if is_id else key] = value
        out["scores"] = scores
    elif kind in (TaskKind.CORRECTION, TaskKind.CONFIRM) and "response_id" in out:
        out["response_id"] = one(out["response_id"])
    return out


def canonical_payload(
    kind: str,
    payload: dict,
    *,
    item_ids: list[int],
    shown_order: list[int] | None,
    rubric: list[dict],
    texts: dict[int, str],
    proposal: dict | None = None,
) -> dict:
    """Validate a client payload for a task of ``kind`` and return its canonical form
    (``proposal``: what a ``confirm`` task asks about, see ``canonical_confirm``)."""
    if not isinstance(payload, dict):
        raise _invalid("payload must be an object")
    if kind == TaskKind.PAIRWISE:
        return canonical_pairwise(payload, item_ids=item_ids, shown_order=shown_order)
    if kind == TaskKind.RANKING:
        return canonical_ranking(payload, item_ids=item_ids)
    if kind == TaskKind.RUBRIC:
        return canonical_rubric(payload, item_ids=item_ids, rubric=rubric)
    if kind == TaskKind.CORRECTION:
        return canonical_correction(payload, item_ids=item_ids, texts=texts)
    if kind == TaskKind.CONFIRM and proposal is not None:
        return canonical_confirm(payload, proposal=proposal, texts=texts)
    raise _invalid(f"unknown task kind {kind!r}")
