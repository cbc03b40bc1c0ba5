"""The plain records the data pipeline reads and the names of what it writes.

``LabelRecord`` is one label with the task it judges, flattened: whoever reads labels from a
database (``rlhf.snapshots.readers``) or a file builds these, and nothing in ``rlhf.data``
knows where they came from. Records must arrive grouped by task (all labels of a task
together), which an ``ORDER BY task_id, label_id`` gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Message = dict[str, str]

KINDS = ("pairwise", "ranking", "rubric", "correction", "confirm")
SHAPES = ("preference", "sft", "kto", "prompt_only", "flags", "rubric_preference", "score")
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
    # The flags the annotator raised on the task (``annotation.labels.FLAGS``), at the
    # frozen version; what they do is ``rlhf.data.flags``.
    flags: tuple[str, ...] = field(default=())
    # The canonical payload of the task's adjudication as the snapshot froze it (the same on
    # every label of the task), or None: it decides the task whatever the votes were.
    adjudication: dict | None = None
    # A confirmed model-proposed variant's source prompt (its lineage's root), as messages:
    # the variant is split with it (``rlhf.data.plan``), so a paraphrase never sits on the
    # other side of its original. None for every other prompt.
    source_prompt: list[Message] | None = None
