"""Reading training data: a Tandem export folder, one .jsonl file, or rows already in memory.

An export folder (``tandem-export/1``) holds ``manifest.json`` and ``<shape>/<split>.jsonl`` for
the shapes ``preference``, ``sft``, ``kto`` and ``prompt_only``; rows are TRL conversational
(messages are ``{"role", "content"}``). A single .jsonl file may be in HH-RLHF or TRL shape; a
stable hash of each row puts ``holdout_fraction`` of them into the validation split.

Everything here returns canonical rows:
- preference: ``{"id", "prompt": [messages], "chosen": str, "rejected": str, "margin", "weight",
  "source"}`` (``weight``: None where the row has none)
- sft: ``{"id", "messages": [messages ending with the assistant's answer], "source"}``
- prompt: ``{"id", "prompt": [messages ending with a user turn]}``
- kto: ``{"id", "prompt": [messages], "completion": str, "label": bool, "flag", "source"}``;
  a ``flags`` row (``flag`` set) reads as an undesirable answer, and KTO decides which
  flags count (``KTOConfig.undesirable_flags``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from formats.preference import FormatError, as_conversation, parse_preference_row
from rlhf.training.config import METHOD_SPECS

EXPORT_FORMAT = "tandem-export/1"
SPLITS = ("train", "validation", "test")

# Which export shape each method reads (from the method table).
SHAPE_FOR_METHOD = {name: spec.data_shape for name, spec in METHOD_SPECS.items()}


class DataError(ValueError):
    """The data cannot be read for this method; the message says where and why."""


@dataclass
class DatasetSplits:
    """Canonical rows per split, plus how many raw rows could not be read (never silently lost)."""

    train: list[dict] = field(default_factory=list)
    validation: list[dict] = field(default_factory=list)
    test: list[dict] = field(default_factory=list)
    unreadable_rows: int = 0
    source: str = "memory"

    def split(self, name: str) -> list[dict]:
        return getattr(self, name)


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line_no}: not JSON ({exc.msg})") from exc
    return rows


def _row_id(row: dict, fallback: str) -> str:
    value = row.get("id") if isinstance(row, dict) else None
    return str(value) if value is not None else fallback


def canonical_preference(row: dict, index: int) -> dict:
    pair = parse_preference_row(row)
    margin = row.get("margin") if isinstance(row, dict) else None
    if margin is not None and not isinstance(margin, int | float):
        raise FormatError("'margin' must be a number or null")
    weight = row.get("weight") if isinstance(row, dict) else None
    if weight is not None and (
        isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight < 1e9
    ):
        raise FormatError("'weight' must be a number from 0 or null")
    return {
        "id": _row_id(row, f"row-{index}"),
        "prompt": pair.prompt,
        "chosen": pair.chosen,
        "rejected": pair.rejected,
        "margin": None if margin is None else float(margin),
        "weight": None if weight is None else float(weight),
        "source": row.get("source") if isinstance(row, dict) else None,
    }


def canonical_sft(row: dict, index: int) -> dict:
    if not isinstance(row, dict):
        raise FormatError("expected an object")
    if "messages" in row:
        messages = as_conversation(row["messages"])
    elif "prompt" in row and "completion" in row:
        completion = as_conversation(row["completion"], default_role="assistant")
        messages = as_conversation(row["prompt"]) + completion
    elif "chosen" in row:
        # A preference row teaches its chosen answer (corrections arrive this way too).
        pair = parse_preference_row(row)
        messages = [*pair.prompt, {"role": "assistant", "content": pair.chosen}]
    else:
        raise FormatError("expected 'messages', 'prompt'+'completion' or a preference pair")
    if messages[-1]["role"] != "assistant":
        raise FormatError("the conversation must end with the assistant's answer")
    return {"id": _row_id(row, f"row-{index}"), "messages": messages, "source": row.get("source")}


def canonical_prompt(row: dict, index: int) -> dict:
    if not isinstance(row, dict):
        raise FormatError("expected an object")
    if "prompt" in row:
        prompt = as_conversation(row["prompt"])
    elif "chosen" in row:
        prompt = parse_preference_row(row).prompt
    elif "messages" in row:
        prompt = as_conversation(row["messages"])
        if prompt[-1]["role"] == "assistant":
            prompt = prompt[:-1]
    else:
        raise FormatError("expected 'prompt', a preference pair or 'messages'")
    if not prompt or prompt[-1]["role"] != "user":
        raise FormatError("a prompt must end with a user turn")
    return {"id": _row_id(row, f"row-{index}"), "prompt": prompt}


def canonical_kto(row: dict, index: int) -> dict:
    """An unpaired answer with its verdict: TRL's ``prompt, completion, label`` shape, or a row
    of the export's ``flags`` file (``flag`` set: undesirable)."""
    if not isinstance(row, dict):
        raise FormatError("expected an object")
    if "prompt" not in row or "completion" not in row:
        raise FormatError("expected 'prompt' and 'completion'")
    prompt = as_conversation(row["prompt"])
    completion = as_conversation(row["completion"], default_role="assistant")
    if not prompt or prompt[-1]["role"] != "user":
        raise FormatError("a prompt must end with a user turn")
    if len(completion) != 1 or completion[0]["role"] != "assistant":
        raise FormatError("the completion must be one assistant answer")
    flag = row.get("flag")
    if flag is not None:
        if not isinstance(flag, str) or not flag:
            raise FormatError("'flag' must be a flag name")
        label = False
    else:
        label = row.get("label")
        if not isinstance(label, bool):
            raise FormatError("'label' must be true (desirable) or false (undesirable)")
    return {
        "id": _row_id(row, f"row-{index}"),
        "prompt": prompt,
        "completion": completion[0]["content"],
        "label": label,
        "flag": flag,
        "source": row.get("source"),
    }


def canonical_score(row: dict, index: int) -> dict:
    """A rubric score row: one answer to a prompt, a dimension and its (mean) score."""
    if not isinstance(row, dict):
        raise FormatError("expected an object")
    prompt = as_conversation(row.get("prompt"))
    completion = as_conversation(row.get("completion"), default_role="assistant")
    if not completion or completion[-1]["role"] != "assistant":
        raise FormatError("'completion' must be the assistant's answer")
    score = row.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise FormatError("'score' must be a number")
    dimension = row.get("dimension")
    if not isinstance(dimension, str) or not dimension:
        raise FormatError("'dimension' must name a rubric dimension")
    return {
        "id": _row_id(row, f"row-{index}"),
        "prompt": prompt,
        "completion": completion[-1]["content"],
        "dimension": dimension,
        "score": float(score),
    }


_CANONICAL = {
    "score": canonical_score,
    "preference": canonical_preference,
    "sft": canonical_sft,
    "prompt_only": canonical_prompt,
    "kto": canonical_kto,
}


def canonical_rows(shape: str, rows: list[dict]) -> tuple[list[dict], int]:
    """Canonical rows of one shape and the number of rows that could not be read."""
    convert = _CANONICAL[shape]
    out, bad = [], 0
    for index, row in enumerate(rows):
        try:
            out.append(convert(row, index))
        except FormatError:
            bad += 1
    return out, bad


def _holdout(row: dict, index: int, fraction: float) -> bool:
    key = json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + str(index).encode()
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
    return bucket < fraction


def load_splits(
    method: str,
    data: str | Path | DatasetSplits,
    *,
    holdout_fraction: float = 0.1,
    shape: str | None = None,
) -> DatasetSplits:
    """Canonical rows for a method from an export folder, a .jsonl file or in-memory splits.

    ``shape``: another shape than the method's own (a reward model on rubric ``score`` rows).
    """
    shape = shape or SHAPE_FOR_METHOD[method]
    if isinstance(data, DatasetSplits):
        result = DatasetSplits(source=data.source, unreadable_rows=data.unreadable_rows)
        for name in SPLITS:
            rows, bad = canonical_rows(shape, data.split(name))
            setattr(result, name, rows)
            result.unreadable_rows += bad
        return _require_train(result, method)
    path = Path(data)
    if path.is_dir():
        return _require_train(_load_export(path, method, shape), method)
    if path.is_file():
        raw = read_jsonl(path)
        rows, bad = canonical_rows(shape, raw)
        result = DatasetSplits(source=str(path), unreadable_rows=bad)
        for index, row in enumerate(rows):
            target = result.validation if _holdout(row, index, holdout_fraction) else result.train
            target.append(row)
        return _require_train(result, method)
    raise DataError(f"{path} is neither an export folder nor a .jsonl file")


def _load_export(root: Path, method: str, shape: str) -> DatasetSplits:
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(f"{root} has no manifest.json: not a Tandem export")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != EXPORT_FORMAT:
        raise DataError(f"{manifest_path}: format {manifest.get('format')!r}, need {EXPORT_FORMAT}")
    # Online methods sample their own answers, so any prompt will do: fall back on the
    # prompts of preference pairs when the export has no prompt-only shape.
    spec = METHOD_SPECS[method]
    candidates = spec.accepted_shapes if shape == spec.data_shape else (shape,)
    for candidate in candidates:
        folder = root / candidate
        if (folder / "train.jsonl").is_file():
            result = DatasetSplits(source=str(root))
            for name in SPLITS:
                # The method's extra shapes (KTO: flags) join its own rows, split by split.
                for read in (candidate, *spec.extra_shapes):
                    split_file = root / read / f"{name}.jsonl"
                    if split_file.is_file():
                        rows, bad = canonical_rows(shape, read_jsonl(split_file))
                        result.split(name).extend(rows)
                        result.unreadable_rows += bad
            return result
    raise DataError(f"{root} has no {shape}/train.jsonl, which {method} training reads")


def _require_train(splits: DatasetSplits, method: str) -> DatasetSplits:
    if not splits.train:
        raise DataError(
            f"no usable training rows for {method} in {splits.source} "
            f"({splits.unreadable_rows} rows could not be read)"
        )
    return splits
