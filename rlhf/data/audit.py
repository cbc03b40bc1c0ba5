"""The bias audit of a data set: pure statistics, no Django (the snapshot job feeds it).

Four probes, each a known way preference data goes wrong:

- **Length** (the classic reward-hacking bias, Singhal et al. 2023, "A Long Way to Go"): how
  long chosen and rejected answers are, and the share of pairs whose chosen answer is the
  longer one, with a Wilson interval and an exact binomial test against one half.
- **Position**: the side the chosen answer was shown on to the annotator (pairwise labels
  record it as ``chosen_side``); sides are shuffled per annotator, so without a bias the
  share shown left is one half.
- **Representation**: a cheap language id (Unicode script, then stopwords for Latin-script
  languages; see ``rlhf.data.topics.language_of`` for its limits) and prompt clusters
  (TF-IDF + spherical k-means in numpy/scipy, ``rlhf.data.topics``) over a seeded uniform
  sample of the prompts.
- **Annotator groups** (optional project attribute): per group, the share of labels that
  agree with the other labels of the same task (leave-one-out majority) and the share that
  chose the longer answer, each tested across groups (chi-square, or Fisher's exact test
  for two groups with an expected count under 5).

``reward_probes`` gives a reward model the same length and position probes on held-out pairs.
Every interval is 95%; scipy computes the tests and the Wilson interval.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import statistics
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import orjson
from scipy.stats import binomtest, chi2_contingency, fisher_exact, spearmanr

from rlhf.data.topics import cluster_audit, language_audit

# A uniform sample of prompts is enough to say which languages and topics dominate; it keeps
# the audit of a million-label snapshot to seconds.
PROMPT_SAMPLE = 5_000
# In a snapshot's export: preference row id -> the side its chosen answer was shown on (only
# rows whose side is known). The reward trainer reads it for the position probe.
SHOWN_SIDES_FILE = "audit/shown_sides.json"


def proportion(count: int, n: int) -> dict:
    """``count`` of ``n`` with its Wilson 95% interval and the two-sided exact binomial test
    against one half (None when ``n`` is 0)."""
    if n == 0:
        return {"count": 0, "n": 0, "share": None, "ci95": None, "p_value": None}
    test = binomtest(count, n, 0.5)
    interval = test.proportion_ci(confidence_level=0.95, method="wilson")
    return {
        "count": count,
        "n": n,
        "share": round(count / n, 4),
        "ci95": [round(float(interval.low), 4), round(float(interval.high), 4)],
        "p_value": _p(test.pvalue),
    }


def words(text: str) -> int:
    """Whitespace-separated words: the token proxy the audit uses (no tokenizer is loaded)."""
    return len(text.split())


def length_audit(chosen: Sequence[str], rejected: Sequence[str]) -> dict:
    """Lengths of the chosen and rejected answers of preference pairs (characters and words)
    and the share of pairs, ties left out, whose chosen answer has more characters."""
    if len(chosen) != len(rejected):
        raise ValueError("one rejected answer per chosen answer")
    return length_stats(
        [len(t) for t in chosen],
        [len(t) for t in rejected],
        [words(t) for t in chosen],
        [words(t) for t in rejected],
    )


def length_stats(
    chosen_chars: Sequence[int],
    rejected_chars: Sequence[int],
    chosen_words: Sequence[int],
    rejected_words: Sequence[int],
) -> dict:
    """``length_audit`` from the lengths alone (what the collector keeps, not the texts)."""
    out: dict = {"pairs": len(chosen_chars)}
    for unit, c, r in (
        ("chars", chosen_chars, rejected_chars),
        ("words", chosen_words, rejected_words),
    ):
        out[unit] = {
            "chosen_mean": _mean(c),
            "rejected_mean": _mean(r),
            "chosen_median": statistics.median(c) if len(c) else None,
            "rejected_median": statistics.median(r) if len(r) else None,
        }
    longer = sum(c > r for c, r in zip(chosen_chars, rejected_chars, strict=True))
    shorter = sum(c < r for c, r in zip(chosen_chars, rejected_chars, strict=True))
    out["chosen_longer"] = proportion(longer, longer + shorter)
    out["equal_length"] = len(chosen_chars) - longer - shorter
    return out


def position_audit(left: int, right: int, *, not_recorded: int = 0) -> dict:
    """The side the chosen answer was shown on: ``left`` and ``right`` decided pairwise labels;
    ``not_recorded``: decided labels without a shown side (imports, API labels without a
    lease)."""
    return {"chosen_left": proportion(left, left + right), "not_recorded": not_recorded}


# -- annotator groups -------------------------------------------------------------------------


def group_test(table: dict[str, tuple[int, int]]) -> dict:
    """Do groups differ in the rate of an outcome? ``table``: group -> (yes, no). Chi-square
    test of independence on the groups x (yes, no) table; with two groups and an expected
    count under 5, Fisher's exact test. None when fewer than two groups have labels or
    every label has the same outcome (nothing can differ)."""
    rows = {g: (y, n) for g, (y, n) in table.items() if y + n > 0}
    # Each group's share with its interval; a test against one half means nothing here.
    groups = {
        g: {k: v for k, v in proportion(y, y + n).items() if k != "p_value"}
        for g, (y, n) in sorted(rows.items())
    }
    result: dict = {"groups": groups, "test": None, "p_value": None}
    observed = np.array([rows[g] for g in sorted(rows)], dtype=float)
    if len(rows) < 2 or (observed.sum(axis=0) == 0).any():
        return result
    chi2, p, dof, expected = chi2_contingency(observed, correction=False)
    if len(rows) == 2 and (expected < 5).any():
        result["test"] = "fisher_exact"
        result["p_value"] = _p(fisher_exact(observed.astype(int))[1])
    else:
        result["test"] = "chi_square"
        result["statistic"] = round(float(chi2), 4)
        result["dof"] = int(dof)
        result["p_value"] = _p(p)
    return result


def leave_one_out_agreement(outcomes: Sequence[tuple[int, str]]) -> list[tuple[int, bool]]:
    """For each label of one task, whether it agrees with the majority of the task's other
    labels; labels whose others have no single most common outcome are left out."""
    out = []
    counts = Counter(o for _, o in outcomes)
    for annotator, outcome in outcomes:
        others = counts.copy()
        others[outcome] -= 1
        ranked = [kv for kv in others.most_common() if kv[1] > 0]
        if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
            continue
        out.append((annotator, outcome == ranked[0][0]))
    return out


# -- the collector the snapshot job feeds -----------------------------------------------------


class AuditCollector:
    """Streams the frozen labels (``observe_task``, one task's records at a time) and the
    exported preference rows (``observe_preference``), then ``result(groups)``.

    Memory: two small integers per label for groups and position, a bounded prompt sample,
    and the texts' lengths of the exported pairs."""

    def __init__(
        self, *, seed: int = 0, prompt_sample: int = PROMPT_SAMPLE, rows_by_label: bool = False
    ):
        """``rows_by_label``: the snapshot keeps every label on its own (policy ``all``), so
        its preference rows are named by label (``L<label>``), not by task."""
        self.rows_by_label = rows_by_label
        self.seed = seed
        self.prompt_sample = prompt_sample
        self.left = self.right = self.side_not_recorded = 0
        self.agreement: list[tuple[int, bool]] = []
        self.chose_longer: list[tuple[int, bool]] = []
        self._sample: list[tuple[int, int, str]] = []  # heap of (-hash, prompt id, text)
        self._seen_prompts: set[int] = set()
        # Lengths of the exported pairs' answers: characters and words, chosen and rejected.
        self.lengths = tuple(array("l") for _ in range(4))
        # Shown sides of decided pairwise labels, to name the side of each exported row:
        # by label (rows of a single label, ``L<label>``) and by (task, winner) (``T<task>``).
        self._label_left: dict[int, bool] = {}
        self._winner_sides: dict[tuple[int, int], list[int]] = {}  # [left, right]
        self.row_sides: dict[str, str] = {}

    def observe_records(self, records: Iterable) -> None:
        """``LabelRecord``s grouped by task (as readers yield them); JSON columns a reader
        left as text are parsed here."""
        task: list = []
        for record in records:
            if isinstance(record.payload, str | bytes):
                record.payload = orjson.loads(record.payload)
            if isinstance(record.prompt, str | bytes):
                record.prompt = orjson.loads(record.prompt)
            if task and record.task_id != task[0].task_id:
                self.observe_task(task)
                task = []
            task.append(record)
        if task:
            self.observe_task(task)

    def observe_task(self, labels: Sequence) -> None:
        """One task's ``LabelRecord``s (``rlhf.data.records``)."""
        first = labels[0]
        self._sample_prompt(first.prompt_id, first.prompt)
        if first.kind != "pairwise":
            return
        texts = list(first.responses.values())
        outcomes = []
        for label in labels:
            payload = label.payload or {}
            outcome = payload.get("outcome")
            if outcome not in ("A", "B", "tie", "both_bad"):
                continue
            outcomes.append((label.annotator_id, outcome))
            if outcome in ("A", "B"):
                side = payload.get("chosen_side")
                if side not in ("left", "right"):
                    self.side_not_recorded += 1
                else:
                    left = side == "left"
                    self.left += left
                    self.right += not left
                    if self.rows_by_label:
                        self._label_left[label.label_id] = left
                    elif (winner := payload.get("winner")) is not None:
                        counts = self._winner_sides.setdefault((label.task_id, winner), [0, 0])
                        counts[0 if left else 1] += 1
                if len(texts) == 2 and len(texts[0]) != len(texts[1]):
                    a_longer = len(texts[0]) > len(texts[1])
                    self.chose_longer.append((label.annotator_id, (outcome == "A") == a_longer))
        if len(outcomes) >= 2:
            self.agreement.extend(leave_one_out_agreement(outcomes))

    def observe_preference(self, row: dict) -> None:
        """One exported preference row (TRL conversational: the answer is the last message)."""
        chosen, rejected = row["chosen"][-1]["content"], row["rejected"][-1]["content"]
        for values, value in zip(
            self.lengths, (len(chosen), len(rejected), words(chosen), words(rejected)), strict=True
        ):
            values.append(value)
        side = self._row_side(row["id"]) if row.get("source") == "pairwise" else None
        if side is not None:
            self.row_sides[row["id"]] = side

    def _row_side(self, row_id: str) -> str | None:
        """The side a row's chosen answer was shown on: its label's (``L<label>:…``), or the
        side most of the task's labels that chose it saw it on (``T<task>:r<id>>…``; an even
        split names none)."""
        key, _, rest = row_id.partition(":")
        chosen = rest.partition(">")[0]
        if not key[1:].isdigit() or not chosen[1:].isdigit():
            return None
        if key[0] == "L":
            left = self._label_left.get(int(key[1:]))
            return None if left is None else ("left" if left else "right")
        left, right = self._winner_sides.get((int(key[1:]), int(chosen[1:])), (0, 0))
        if left == right:
            return None
        return "left" if left > right else "right"

    def _sample_prompt(self, prompt_id: int, messages) -> None:
        # Bottom-k by a seeded hash of the prompt id: a uniform sample, the same on a rebuild.
        if prompt_id in self._seen_prompts:
            return
        self._seen_prompts.add(prompt_id)
        digest = hashlib.blake2b(f"{self.seed}:{prompt_id}".encode(), digest_size=8).digest()
        key = -int.from_bytes(digest, "big")
        text = "\n".join(m.get("content", "") for m in messages if m.get("role") == "user")
        item = (key, prompt_id, text)
        if len(self._sample) < self.prompt_sample:
            heapq.heappush(self._sample, item)
        elif key > self._sample[0][0]:
            heapq.heapreplace(self._sample, item)

    def result(self, groups: dict[int, str] | None = None) -> dict:
        """The audit; ``groups``: annotator id -> group name (annotators without one are
        left out of the group test and counted)."""
        prompts = [text for _, _, text in sorted(self._sample, key=lambda x: x[1])]
        return {
            "length": length_stats(*self.lengths),
            "position": position_audit(self.left, self.right, not_recorded=self.side_not_recorded),
            "prompts": {
                "distinct": len(self._seen_prompts),
                "sampled": len(prompts),
                "language": language_audit(prompts),
                "clusters": cluster_audit(prompts, seed=self.seed),
            },
            "groups": group_audit(self.agreement, self.chose_longer, groups or {}),
        }


def group_audit(
    agreement: Iterable[tuple[int, bool]],
    chose_longer: Iterable[tuple[int, bool]],
    groups: dict[int, str],
) -> dict:
    """Per-group agreement with the other labels of a task, and per-group share of decided
    pairwise labels that chose the longer answer, each with a test across groups."""
    if not any(groups.values()):
        return {"recorded": False}

    def table(pairs):
        counts: dict[str, list[int]] = {}
        ungrouped = 0
        for annotator, yes in pairs:
            group = groups.get(annotator) or ""
            if not group:
                ungrouped += 1
                continue
            counts.setdefault(group, [0, 0])[0 if yes else 1] += 1
        return {g: (y, n) for g, (y, n) in counts.items()}, ungrouped

    agree, ungrouped_agree = table(agreement)
    longer, ungrouped_longer = table(chose_longer)
    return {
        "recorded": True,
        "annotators_by_group": dict(sorted(Counter(g for g in groups.values() if g).items())),
        "agreement_with_others": {**group_test(agree), "ungrouped_labels": ungrouped_agree},
        "chose_longer": {**group_test(longer), "ungrouped_labels": ungrouped_longer},
    }


# -- reward-model probes ----------------------------------------------------------------------


def reward_probes(
    chosen_scores: Sequence[float],
    rejected_scores: Sequence[float],
    chosen_texts: Sequence[str],
    rejected_texts: Sequence[str],
    chosen_sides: Sequence[str | None] | None = None,
) -> dict:
    """The audit's length and position probes for a reward model on held-out pairs:
    accuracy (ties wrong) where the chosen answer is longer and where it is shorter, the
    Spearman correlation of reward with length over every scored answer, and the accuracy
    by the side the chosen answer was shown on (where the pairs record it); and the
    calibration of its Bradley-Terry probabilities (``pairwise_calibration``)."""
    c = np.asarray(chosen_scores, dtype=float)
    r = np.asarray(rejected_scores, dtype=float)
    c_len = np.array([len(t) for t in chosen_texts])
    r_len = np.array([len(t) for t in rejected_texts])
    right = c > r
    out: dict = {"pairs": len(c)}
    for name, mask in (("chosen_longer", c_len > r_len), ("chosen_shorter", c_len < r_len)):
        n = int(mask.sum())
        out[f"accuracy_{name}"] = proportion(int(right[mask].sum()), n)
    scores = np.concatenate([c, r])
    lengths = np.concatenate([c_len, r_len])
    if len(scores) >= 3 and np.ptp(scores) > 0 and np.ptp(lengths) > 0:
        rho, p = spearmanr(scores, lengths)
        out["reward_length_spearman"] = {"rho": round(float(rho), 4), "p_value": _p(p)}
    else:
        out["reward_length_spearman"] = {"rho": None, "p_value": None}
    # Chose-longer rate of the model itself: how often it prefers the longer answer.
    decided = c_len != r_len
    model_longer = np.where(c_len > r_len, c > r, r > c)
    out["prefers_longer"] = proportion(int(model_longer[decided].sum()), int(decided.sum()))
    if chosen_sides is not None:
        sides = np.array([s or "" for s in chosen_sides])
        out["accuracy_by_shown_side"] = {
            side: proportion(int(right[sides == side].sum()), int((sides == side).sum()))
            for side in ("left", "right")
        }
    out["calibration"] = pairwise_calibration(c, r)
    return out


# Confidence bins of ``pairwise_calibration``: a preferred side is chosen with 0.5..1.
CALIBRATION_EDGES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def pairwise_calibration(chosen_scores: Sequence[float], rejected_scores: Sequence[float]) -> dict:
    """How far a reward model's Bradley-Terry probabilities can be taken at their word.

    For each held-out pair the model prefers one side with confidence sigmoid(|margin|)
    (Bradley-Terry: P(a beats b) = sigmoid(r_a - r_b)); within bins of that confidence, the
    mean confidence against how often the preferred side is the chosen one. The expected
    calibration error (Guo et al. 2017, eq. 3) is the pair-weighted mean gap: 0 when "80%
    sure" is right 80% of the time. Ties (margin 0) prefer no side and are left out."""
    margin = np.asarray(chosen_scores, dtype=float) - np.asarray(rejected_scores, dtype=float)
    margin = margin[margin != 0]
    confidence = 1.0 / (1.0 + np.exp(-np.abs(margin)))  # (pairs,)
    right = margin > 0
    n = len(margin)
    bins, gap = [], 0.0
    edges = CALIBRATION_EDGES
    for i, (low, high) in enumerate(itertools.pairwise(edges)):
        last = i == len(edges) - 2
        mask = (confidence >= low) & ((confidence <= high) if last else (confidence < high))
        count = int(mask.sum())
        if not count:
            bins.append({"low": low, "high": high, "pairs": 0, "confidence": None,
                         "accuracy": None})  # fmt: skip
            continue
        mean_conf, accuracy = float(confidence[mask].mean()), float(right[mask].mean())
        gap += count / n * abs(mean_conf - accuracy)
        bins.append(
            {"low": low, "high": high, "pairs": count,
             "confidence": round(mean_conf, 4), "accuracy": round(accuracy, 4)}
        )  # fmt: skip
    return {"pairs": n, "ece": round(gap, 4) if n else None, "bins": bins}


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def _p(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else float(f"{value:.4g}")


# -- the data card's section ------------------------------------------------------------------


def audit_markdown(audit: dict | None) -> list[str]:
    """The data card's "Bias audit" section (Markdown lines) for ``AuditCollector.result``."""
    if not audit:
        return []
    lines = ["", "## Bias audit", ""]
    length = audit["length"]
    longer = length["chosen_longer"]
    lines += ["### Length of chosen and rejected answers", ""]
    if length["pairs"]:
        lines += [
            f"Exported preference pairs: {length['pairs']:,}.",
            "",
            "| measure | chosen | rejected |",
            "| --- | ---: | ---: |",
        ]
        for unit, name in (("chars", "characters"), ("words", "words")):
            m = length[unit]
            lines.append(f"| mean {name} | {m['chosen_mean']:,} | {m['rejected_mean']:,} |")
            lines.append(f"| median {name} | {m['chosen_median']:,} | {m['rejected_median']:,} |")
        lines += [
            "",
            f"- Chosen answer is the longer one: {_share(longer)} of pairs with different "
            f"lengths ({length['equal_length']:,} of equal length left out). A share far "
            "above one half means a reward model can learn length as a proxy for quality.",
        ]
    else:
        lines.append("No preference pairs were exported.")
    position = audit["position"]
    left = position["chosen_left"]
    lines += ["", "### Position of the chosen answer as shown", ""]
    if left["n"]:
        lines.append(
            f"- Chosen answer shown on the left: {_share(left)} of decided pairwise labels "
            "(sides are shuffled per annotator, so one half is expected)."
        )
    else:
        lines.append("- No decided pairwise label records the side it was shown on.")
    if position["not_recorded"]:
        lines.append(
            f"- Decided pairwise labels without a recorded side (imports, labels sent as A/B "
            f"without a lease): {position['not_recorded']:,}."
        )
    prompts = audit["prompts"]
    lines += ["", "### Languages and topics of the prompts", ""]
    lines.append(
        f"Distinct prompts: {prompts['distinct']:,}; audited: a uniform sample of "
        f"{prompts['sampled']:,}."
    )
    language = prompts["language"]
    if language["languages"]:
        lines += ["", "| language | prompts | share |", "| --- | ---: | ---: |"]
        lines += [
            f"| {row['language']} | {row['count']:,} | {row['share']:.1%} |"
            for row in language["languages"]
        ]
        lines += [
            "",
            "Language by a cheap heuristic (Unicode script; English, Spanish, French, "
            "German, Portuguese, Italian and Dutch by stopwords; `latin`: another or "
            "undecided Latin-script text, `und`: no letters).",
        ]
    clusters = prompts["clusters"]
    if clusters["clusters"]:
        lines += [
            "",
            f"Prompt clusters (TF-IDF, spherical k-means, k = {clusters['k']}; "
            f"{clusters['no_terms']:,} prompts without a clustering term):",
            "",
            "| cluster | prompts | share | top terms | example |",
            "| ---: | ---: | ---: | --- | --- |",
        ]
        for n, c in enumerate(clusters["clusters"], 1):
            lines.append(
                f"| {n} | {c['size']:,} | {c['share']:.1%} | {', '.join(c['top_terms'])} | "
                f"{_cell(c['example'])} |"
            )
    else:
        lines += ["", f"Prompt clusters: {clusters.get('note', 'none')}."]
    groups = audit["groups"]
    lines += ["", "### Annotator groups", ""]
    if not groups.get("recorded"):
        lines.append("No annotator of this project has a group: no comparison between groups.")
        return lines
    lines.append(
        "Annotators by group: "
        + ", ".join(f"{_cell(g)} {n}" for g, n in groups["annotators_by_group"].items())
        + "."
    )
    for key, title in (
        ("agreement_with_others", "Agreement with the other labels of the same task"),
        ("chose_longer", "Chose the longer answer"),
    ):
        test = groups[key]
        lines += ["", f"{title}:", "", "| group | labels | share | 95% interval |",
                  "| --- | ---: | ---: | --- |"]  # fmt: skip
        for g, row in test["groups"].items():
            lines.append(
                f"| {_cell(g)} | {row['n']:,} | {row['share']:.1%} | "
                f"{row['ci95'][0]:.1%} to {row['ci95'][1]:.1%} |"
            )
        if test["test"]:
            lines.append(
                f"\nTest across groups: {test['test'].replace('_', ' ')}, "
                f"p = {test['p_value']:.3g}."
            )
        else:
            lines.append("\nNo test: fewer than two groups with labels, or no variation.")
        if test["ungrouped_labels"]:
            lines.append(f"Labels of annotators without a group: {test['ungrouped_labels']:,}.")
    return lines


def _share(p: dict) -> str:
    if not p["n"]:
        return "not measurable (no pair of different lengths)"
    low, high = p["ci95"]
    return (
        f"{p['share']:.1%} ({p['count']:,} of {p['n']:,}; 95% interval {low:.1%} to "
        f"{high:.1%}; binomial test against one half p = {p['p_value']:.3g})"
    )


def _cell(text: str) -> str:
    """Text inside a Markdown table cell: one line, pipes and markup characters escaped."""
    text = " ".join(str(text).split())
    for char in "\\|*_`[]<>#":
        text = text.replace(char, "\\" + char)
    return text
