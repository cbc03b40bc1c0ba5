"""Label flags in snapshots: what a flag does to the rows of the task it was raised on.

An annotator flags a task, not a response: the annotator's page has one set of checkboxes
per task (``unsafe``, ``personal_data``, ``spam``; ``annotation.labels.FLAGS``) and
``Label.flags`` stores them with the label. A flag counts once its task carries it on at least
``min_flags`` labels (labels of excluded annotators do not count).

Which response a flag is about is read from the flagging label's own judgement: the
responses that annotator did not put first (pairwise: the side they rejected, both sides for
a tie or "both bad"; ranking: every response below the top tier, all of them for a single
tier; correction: the corrected response; rubric: every response). That attribution is used
by the ``reject`` action and by the flags file; ``drop`` needs none.

Actions, per flag:
- ``unsafe``: ``drop`` (default) removes every row of the task but its prompt, so no
  response of a flagged task is ever ``chosen``, whichever side the flag meant; ``reject``
  keeps a pair whose flagged side is already ``rejected``, swaps one whose ``chosen`` side is
  flagged and the other is not, drops one whose both sides are flagged, marks a flagged
  response's KTO rows undesirable and drops a rubric pair whose higher-scored answer is
  flagged (scores stay: a low score is what a flagged answer should get); ``keep`` ignores
  the flag.
- ``personal_data``: ``drop`` (default) removes the task (every row, its prompt too);
  ``scrub`` runs the task's prompt and answers through the personal-data scrubber
  (``rlhf.data.cleaning``, every type, whatever the cleaning config says) and keeps it;
  ``keep`` ignores the flag.
- ``spam``: ``drop`` (default) removes the task; ``keep`` ignores the flag.
- any other flag a project defines: ``other``, ``keep`` (default) or ``drop``.

Defaults, and why: one flag is enough (``min_flags`` 1) because training a model to prefer an
unsafe answer costs more than losing one pair, and flags are rare; ``drop`` rather than
``reject`` for unsafe because a flag is raised on a task and its side is only inferred; a
personal-data flag drops the task because a person flags what the pattern-based scrubber
misses (names, addresses), so scrubbing would usually leave it in.

An adjudicator's flags (``Adjudication.flags``, frozen with the adjudication) count as one
more judge's flags that always reach the minimum, attributed from the adjudicator's decision.

Every flag given, counted or not, also becomes a row of the ``flags`` shape (one per flagged
response and flag: text, flag, how many labels attributed it, agreement), for a safety
classifier or a KTO run; a task dropped for spam or personal data gives no flags row.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from annotation.quality.flag_policy import (
    DROP,
    FlagPolicy,
)
from rlhf.data.aggregate import derive_kto
from rlhf.data.records import LabelRecord


@dataclass
class TaskFlags:
    """The flags raised on one task: labels carrying each, and the responses each was
    attributed to (``attributed[flag][text index]`` = labels)."""

    labels: int
    counts: Counter
    attributed: dict[str, Counter]
    # Flags the task's adjudicator found: they count whatever ``min_flags`` says.
    adjudicated: frozenset = frozenset()

    def counted(self, policy: FlagPolicy) -> list[str]:
        return sorted(
            f for f, n in self.counts.items() if n >= policy.min_flags or f in self.adjudicated
        )


def task_flags(
    labels: list[LabelRecord],
    *,
    response_ids: list[int],
    excluded: frozenset = frozenset(),
    adjudication: dict | None = None,
) -> TaskFlags:
    """The flags of a task's labels; an adjudication's flags (frozen with it) count as one
    more judge whose flags always count, attributed from the adjudicator's decision."""
    kept = [label for label in labels if label.annotator_id not in excluded]
    judges = list(kept)
    reviewer_flags = frozenset((adjudication or {}).get("flags") or ())
    if reviewer_flags:
        judges.append(
            LabelRecord(0, labels[0].task_id, labels[0].kind, 0, adjudication, 0, [], {},
                        flags=tuple(sorted(reviewer_flags)))
        )  # fmt: skip
    kept = judges
    counts: Counter = Counter()
    attributed: dict[str, Counter] = {}
    position = {rid: i for i, rid in enumerate(response_ids)}
    for label in kept:
        flags = sorted(set(label.flags or ()))
        if not flags:
            continue
        targets = attributed_responses(label, position)
        for flag in flags:
            counts[flag] += 1
            attributed.setdefault(flag, Counter()).update(targets)
    return TaskFlags(
        labels=len(kept), counts=counts, attributed=attributed, adjudicated=reviewer_flags
    )


def attributed_responses(label: LabelRecord, position: dict[int, int]) -> list[int]:
    """The text indices a flag on ``label`` is about: what the annotator did not put first."""
    everything = sorted(position.values())
    payload = label.payload or {}
    if label.kind == "pairwise":
        outcome = payload.get("outcome")
        if outcome == "A":
            return everything[1:2]
        if outcome == "B":
            return everything[:1]
        return everything
    if label.kind == "ranking":
        tiers = [t if isinstance(t, list) else [t] for t in payload.get("ranking") or []]
        if len(tiers) < 2:
            return everything
        return sorted(position[rid] for tier in tiers[1:] for rid in tier if rid in position)
    if label.kind == "correction" and payload.get("response_id") in position:
        return [position[payload["response_id"]]]
    return everything


def rows_after_unsafe(units: list, flagged: set[int], action: str, counts: Counter) -> None:
    """Apply the ``unsafe`` action to a flagged task's units, in place; ``counts`` gains
    ``(what, shape)`` for each row removed or changed (``what``: removed / changed).

    ``flagged`` holds the text indices the flag was attributed to (used by ``reject``)."""
    for unit in units:
        if action == DROP:
            counts["removed", "preference"] += len(unit.pairs)
            counts["removed", "kto"] += len(unit.kto)
            counts["removed", "sft"] += len(unit.sft)
            counts["removed", "rubric_preference"] += len(unit.rubric_pairs)
            counts["removed", "score"] += len(unit.scores)
            unit.pairs, unit.kto, unit.sft = [], [], []
            unit.rubric_pairs, unit.scores = [], []
            continue
        in_pairs = {i for pair in unit.pairs for i in (pair.chosen, pair.rejected)}
        old_kto = list(unit.kto)
        pairs = []
        for pair in unit.pairs:
            if pair.chosen not in flagged:
                pairs.append(pair)
            elif pair.rejected in flagged:
                counts["removed", "preference"] += 1
            else:
                pair.chosen, pair.rejected = pair.rejected, pair.chosen
                pairs.append(pair)
                counts["changed", "preference"] += 1
        unit.pairs = pairs
        # KTO rows not explained by a pair ("both bad", an unchanged correction) stay; the
        # rest are derived again from the pairs as they now are.
        unit.kto = [(i, desirable) for i, desirable in old_kto if i not in in_pairs]
        derive_kto(unit)
        unit.kto = [(i, desirable and i not in flagged) for i, desirable in unit.kto]
        new_kto = set(unit.kto)
        counts["changed", "kto"] += len(new_kto - set(old_kto))
        counts["removed", "kto"] += max(0, len(old_kto) - len(unit.kto))
        sft = [i for i in unit.sft if i not in flagged]
        counts["removed", "sft"] += len(unit.sft) - len(sft)
        unit.sft = sft
        # A rubric pair stands on its scores: one whose higher answer is flagged goes.
        rubric = [pair for pair in unit.rubric_pairs if pair[0] not in flagged]
        counts["removed", "rubric_preference"] += len(unit.rubric_pairs) - len(rubric)
        unit.rubric_pairs = rubric
