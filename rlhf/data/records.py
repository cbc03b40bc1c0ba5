"""The plain records the data pipeline reads and the names of what it writes.

``LabelRecord`` is one label with the task it judges, flattened: whoever reads labels from a
database (``rlhf.snapshots.readers``) or a file builds these, and nothing in ``rlhf.data``
knows where they came from. Records must arrive grouped by task (all labels of a task
together), which an ``ORDER BY task_id, label_id`` gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Message = dict[str, str]

KINDS = ("pairwise", "ranking", "rubric", "correction")
SHAPES = ("preference", "sft", "kto", "prompt_only")
SPLITS = ("train", "validation", "test")
EXPORT_FORMAT = "tandem-export/1"


@dataclass(slots=True)
class LabelRecord:
    """One annotator's label and what it was about.

    payload: the canonical payload of ``annotation.labels`` for ``kind``.
    prompt: the conversation the responses answer, as ``{role, content}`` messages.
    responses: response id -> text, in the task's canonical order (position A first).
    """

    label_id: int
    task_id: int
    kind: str
    annotator_id: int
    payload: dict
    prompt_id: int
    prompt: list[Message]
    responses: dict[int, str]
    source: str = ""
    flags: tuple[str, ...] = field(default=())
