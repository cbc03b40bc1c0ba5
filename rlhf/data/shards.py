"""The per-shard work of both passes, run in worker processes.

Pass 1 (``process_shard``): clean, scrub, aggregate a shard's tasks, hash and MinHash its
texts, and write the tasks to the shard's spill file (one JSON line per task). Pass 2
(``write_shard``): read the spill back and write the rows the plan keeps to an export part.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import xxhash

from annotation.quality.flag_policy import DROP, PERSONAL_DATA, SCRUB, TASK_DROPPING, UNSAFE
from rlhf.data.aggregate import (
    ADJUDICATED,
    AggregationStats,
    aggregate_task,
    comparison_votes,
)
from rlhf.data.cleaning import CleaningConfig, TextCleaner
from rlhf.data.config import PipelineConfig
from rlhf.data.export import PartWriter
from rlhf.data.flags import rows_after_unsafe, task_flags
from rlhf.data.minhash import MinHasher, band_keys
from rlhf.data.records import SHAPES, SPLITS, LabelRecord
from rlhf.data.truncation import TruncationConfig

LENGTH_BINS = (0, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
# Example task ids kept per decision for the data card's links (the first ones met).
EXAMPLES_PER_DECISION = 5


def note_example(examples: dict[str, list[int]], decision: str, task_id: int) -> None:
    """Remember ``task_id`` as an example of ``decision`` (a few per decision)."""
    kept = examples.setdefault(decision, [])
    if len(kept) < EXAMPLES_PER_DECISION and task_id not in kept:
        kept.append(task_id)


def _normalised_hash(text: str) -> int:
    return xxhash.xxh3_64_intdigest(" ".join(text.casefold().split()).encode("utf-8"))


def _prompt_text(messages: list[dict]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def collect_votes(index: int, source, config: PipelineConfig) -> dict:
    """Pass 0, under a pooled policy only (in a worker): the votes of a shard's comparisons
    (``rlhf.data.aggregate.comparison_votes``), which the main process fits on together."""
    votes: dict = {}
    for labels in _tasks(list(source() if callable(source) else source)):
        votes.update(comparison_votes(labels, config=config.aggregation))
    return votes


def _tasks(records: list[LabelRecord]):
    """The labels of each task in turn, their JSON columns read as text (the PostgreSQL
    reader) parsed in place."""
    start = 0
    while start < len(records):
        end = start + 1
        while end < len(records) and records[end].task_id == records[start].task_id:
            end += 1
        labels = records[start:end]
        for label in labels:
            if isinstance(label.payload, (str, bytes)):
                label.payload = orjson.loads(label.payload)
            if isinstance(label.flags, (str, bytes)):
                label.flags = tuple(orjson.loads(label.flags) or ())
            if isinstance(label.source_prompt, (str, bytes)):
                label.source_prompt = orjson.loads(label.source_prompt)
        yield labels
        start = end


def confirmed_corrections(labels: list[LabelRecord]) -> tuple[list[LabelRecord], list[str]]:
    """A task's labels as the pipeline reads them, and the unit keys of model-proposed
    corrections among them. A ``confirm`` label is a person's decision on a model's
    proposal: a kept correction reads as a correction (corrected > original), a prompt
    variant or a rejection gives no row (the variant's data comes from its own tasks)."""
    if labels[0].kind != "confirm":
        return labels, []
    kept = []
    for label in labels:
        if label.payload.get("decision") != "reject" and "corrected_text" in label.payload:
            label.kind = "correction"
            kept.append(label)
    return kept, [f"L{label.label_id}" for label in kept]


def process_shard(
    index: int, source, config: PipelineConfig, workdir: str, pooled: dict | None = None
) -> dict:
    """Pass 1 for one shard (in a worker): its tasks go to a spill file of its own; the
    compact results come back. ``pooled``: a pooled policy's decisions of its comparisons."""
    records = list(source() if callable(source) else source)
    out = process_chunk(records, config, pooled=pooled)
    spill_path = Path(workdir) / f"spill-{index:06d}.jsonl"
    spill_path.write_bytes(out.pop("spill"))
    out["spill_path"] = str(spill_path)
    out["index"] = index
    return out


# Rows no de-duplication applies to, written as spilled: spill key -> (shape, the fields after
# "id" and "prompt" in schema order); a field in _TEXT_FIELDS holds an index into the texts.
_WRITTEN_AS_SPILLED = {
    "flags": ("flags", ("completion", "flag", "flagged_by", "labels", "agreement")),
    "rubric": ("rubric_preference", ("chosen", "rejected", "dimension", "margin")),
    "scores": ("score", ("completion", "dimension", "score", "labels")),
}
_TEXT_FIELDS = frozenset({"completion", "chosen", "rejected"})


def _answer(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def write_shard(
    index: int,
    spill_path: str,
    keep: dict[str, np.ndarray],
    splits: np.ndarray,
    part_dir: str,
    truncation: TruncationConfig | None,
) -> dict:
    """Pass 2 for one shard (in a worker): its kept rows to a part of the export."""
    writer = PartWriter(Path(part_dir), truncation=truncation)
    cursor = dict.fromkeys(SHAPES, 0)
    augmented = dict.fromkeys(SHAPES, 0)
    keep = {shape: flags.tolist() for shape, flags in keep.items()}
    split_names = [SPLITS[i] for i in splits.tolist()]
    with open(spill_path, "rb") as spill:
        for group_index, line in enumerate(spill):
            group = orjson.loads(line)
            split = split_names[group_index]
            prompt, texts = group["prompt"], group["texts"]
            variant, model_units = group.get("variant", False), set(group.get("model_units", ()))

            def write(shape, row, *, split=split, variant=variant, model_units=model_units):
                writer.write(shape, split, row)
                if variant or row["id"].split(":", 1)[0] in model_units:
                    augmented[shape] += 1

            for row_id, c, r, margin, weight, source in group["pref"]:
                if keep["preference"][cursor["preference"]]:
                    write(
                        "preference",
                        {
                            "id": row_id,
                            "prompt": prompt,
                            "chosen": [{"role": "assistant", "content": texts[c]}],
                            "rejected": [{"role": "assistant", "content": texts[r]}],
                            "margin": margin,
                            "weight": weight,
                            "source": source,
                        },
                    )
                cursor["preference"] += 1
            for row_id, t, desirable in group["kto"]:
                if keep["kto"][cursor["kto"]]:
                    write(
                        "kto",
                        {
                            "id": row_id,
                            "prompt": prompt,
                            "completion": [{"role": "assistant", "content": texts[t]}],
                            "label": desirable,
                        },
                    )
                cursor["kto"] += 1
            for row_id, t in group["sft"]:
                if keep["sft"][cursor["sft"]]:
                    write(
                        "sft",
                        {
                            "id": row_id,
                            "messages": [*prompt, {"role": "assistant", "content": texts[t]}],
                            "source": "correction",
                        },
                    )
                cursor["sft"] += 1
            for key, (shape, fields) in _WRITTEN_AS_SPILLED.items():
                for values in group.get(key, ()):
                    row = {"id": values[0], "prompt": prompt}
                    for name, value in zip(fields, values[1:], strict=True):
                        row[name] = _answer(texts[value]) if name in _TEXT_FIELDS else value
                    write(shape, row)
            if keep["prompt_only"][group_index]:
                write("prompt_only", {"id": f"p{group['p']}", "prompt": prompt})
    Path(spill_path).unlink()
    done = writer.close()
    return {
        **done,
        "part_dir": part_dir,
        "groups": len(split_names),
        "index": index,
        "augmented": augmented,
    }


def process_chunk(
    records: list[LabelRecord], config: PipelineConfig, *, pooled: dict | None = None
) -> dict:
    """Clean, aggregate and hash a list of whole tasks.

    Returns picklable plain data: the spill lines, per-occurrence hashes and signatures,
    row references local to the chunk, and the counters of what happened.
    """
    cleaner = TextCleaner(config.cleaning)
    # The scrubber a personal-data flag calls for: every personal-data type, nothing else.
    scrubber = TextCleaner(
        CleaningConfig(
            normalize_unicode=False,
            strip_control=False,
            strip_html=False,
            normalize_whitespace=False,
            min_chars=0,
        )
    )
    policy = config.flags
    stats = AggregationStats()
    removed: Counter = Counter()
    flag_counts: Counter = Counter()
    spill: list[bytes] = []
    prompt_strings: list[str] = []
    # What decides each prompt's split: its own text, or a confirmed variant's source's.
    split_strings: list[str] = []
    augmented: Counter = Counter()
    text_strings: list[str] = []
    pref, kto, sft = [], [], []
    prompt_tasks: list[int] = []  # the task of each spilled prompt, for the card's examples
    examples: dict[str, list[int]] = {}
    prompt_lengths, text_lengths = [], []
    groups = 0
    for labels in _tasks(records):
        labels, model_corrections = confirmed_corrections(labels)
        if not labels:
            continue
        groups += 1
        first = labels[0]
        augmented["model_corrections"] += len(model_corrections)
        augmented["variant_tasks"] += first.source_prompt is not None
        pii_before = sum(cleaner.pii.values())
        changed_before = stats.decisions["adjudication_changed"]
        messages = (
            orjson.loads(first.prompt) if isinstance(first.prompt, (str, bytes)) else first.prompt
        )
        prompt = [{"role": m["role"], "content": cleaner.clean(m["content"])} for m in messages]
        prompt_string = _prompt_text(prompt)
        response_ids = list(first.responses)
        texts = [cleaner.clean(first.responses[rid]) for rid in response_ids]
        keys = [f"r{rid}" for rid in response_ids]
        corrected_index = {}
        if first.kind == "correction" and first.adjudication is not None:
            # The adjudicator's final text stands for the task: the rewrites give no rows.
            corrected_index[ADJUDICATED] = len(texts)
            texts.append(cleaner.clean(first.adjudication["corrected_text"]))
            keys.append(f"a{first.task_id}")
        else:
            for label in labels:
                if label.kind == "correction" and "corrected_text" in label.payload:
                    corrected_index[label.label_id] = len(texts)
                    texts.append(cleaner.clean(label.payload["corrected_text"]))
                    keys.append(f"c{label.label_id}")
        units = aggregate_task(
            labels,
            config=config.aggregation,
            response_ids=response_ids,
            stats=stats,
            corrected_index=corrected_index,
            pooled=pooled,
        )
        if first.adjudication is not None:
            changed = stats.decisions["adjudication_changed"] > changed_before
            note_example(
                examples, "adjudication_changed" if changed else "adjudicated", first.task_id
            )
        if sum(cleaner.pii.values()) > pii_before:
            note_example(examples, "pii_replaced", first.task_id)
        flagged = task_flags(
            labels,
            response_ids=response_ids,
            excluded=config.aggregation.exclude_annotators,
            adjudication=first.adjudication,
        )
        counted = flagged.counted(policy)
        for flag in flagged.counts:
            flag_counts["tasks" if flag in counted else "below_minimum", flag] += 1
        if PERSONAL_DATA in counted and policy.personal_data == SCRUB:
            scrubbed = [scrubber.clean(m["content"]) for m in prompt]
            scrubbed_texts = [scrubber.clean(text) for text in texts]
            flag_counts["texts_scrubbed"] += sum(
                a != b
                for a, b in zip(
                    [*scrubbed, *scrubbed_texts],
                    [*(m["content"] for m in prompt), *texts],
                    strict=True,
                )
            )
            note_example(examples, "flag_personal_data_scrubbed", first.task_id)
            prompt = [{**m, "content": c} for m, c in zip(prompt, scrubbed, strict=True)]
            prompt_string = _prompt_text(prompt)
            texts = scrubbed_texts
        prompt_reason = cleaner.verdict("\n".join(m["content"] for m in prompt))
        dropping = next(
            (
                f"flag_{flag}"
                for flag in [
                    *TASK_DROPPING,
                    *(f for f in counted if f not in (UNSAFE, *TASK_DROPPING)),
                ]
                if flag in counted and policy.action(flag) == DROP
            ),
            None,
        )
        if prompt_reason or dropping:
            reason = f"prompt_{prompt_reason}" if prompt_reason else dropping
            note_example(examples, f"removed:{reason}", first.task_id)
            removed["prompt_only", reason] += 1
            for unit in units:
                removed["preference", reason] += len(unit.pairs)
                removed["kto", reason] += len(unit.kto)
                removed["sft", reason] += len(unit.sft)
                removed["rubric_preference", reason] += len(unit.rubric_pairs)
                removed["score", reason] += len(unit.scores)
            continue
        if UNSAFE in counted and policy.unsafe != "keep":
            unsafe_rows: Counter = Counter()
            rows_after_unsafe(units, set(flagged.attributed[UNSAFE]), policy.unsafe, unsafe_rows)
            for (what, shape), n in unsafe_rows.items():
                if n:
                    note_example(examples, f"{what}:flag_unsafe", first.task_id)
                if what == "removed":
                    removed[shape, "flag_unsafe"] += n
                else:
                    flag_counts["changed", UNSAFE, shape] += n
        verdicts = [cleaner.verdict(text) for text in texts]
        # task text index -> its index among the texts this task spills (first use first)
        used: dict[int, int] = {}

        prompt_local = len(prompt_strings)
        prompt_strings.append(prompt_string)
        split_strings.append(
            _prompt_text(
                [
                    {"role": m["role"], "content": cleaner.clean(m["content"])}
                    for m in first.source_prompt
                ]
            )
            if first.source_prompt
            else prompt_string
        )
        prompt_tasks.append(first.task_id)
        prompt_lengths.append(len(prompt_string))
        group_pref, group_kto, group_sft = [], [], []
        group_rubric, group_scores = [], []
        for unit in units:
            for pair in unit.pairs:
                bad = verdicts[pair.chosen] or verdicts[pair.rejected]
                if bad:
                    removed["preference", f"answer_{bad}"] += 1
                    note_example(examples, f"removed:answer_{bad}", first.task_id)
                    continue
                c = used.setdefault(pair.chosen, len(used))
                r = used.setdefault(pair.rejected, len(used))
                group_pref.append(
                    [
                        f"{unit.key}:{keys[pair.chosen]}>{keys[pair.rejected]}",
                        c,
                        r,
                        pair.margin,
                        pair.weight,
                        pair.source,
                    ]
                )
            for index, desirable in unit.kto:
                if verdicts[index]:
                    removed["kto", f"answer_{verdicts[index]}"] += 1
                    continue
                sign = "+" if desirable else "-"
                t = used.setdefault(index, len(used))
                group_kto.append([f"{unit.key}:{keys[index]}{sign}", t, desirable])
            for index in unit.sft:
                if verdicts[index]:
                    removed["sft", f"answer_{verdicts[index]}"] += 1
                    continue
                t = used.setdefault(index, len(used))
                group_sft.append([f"{unit.key}:{keys[index]}", t])
            for higher, lower, dimension, margin in unit.rubric_pairs:
                bad = verdicts[higher] or verdicts[lower]
                if bad:
                    removed["rubric_preference", f"answer_{bad}"] += 1
                    continue
                c = used.setdefault(higher, len(used))
                r = used.setdefault(lower, len(used))
                row_id = f"{unit.key}:{keys[higher]}>{keys[lower]}:{dimension}"
                group_rubric.append([row_id, c, r, dimension, margin])
            for index, dimension, score, n in unit.scores:
                if verdicts[index]:
                    removed["score", f"answer_{verdicts[index]}"] += 1
                    continue
                t = used.setdefault(index, len(used))
                group_scores.append(
                    [f"{unit.key}:{keys[index]}:{dimension}", t, dimension, score, n]
                )
        group_flags = []
        for flag, attributed in sorted(flagged.attributed.items()):
            for index, n in sorted(attributed.items()):
                t = used.setdefault(index, len(used))
                agreement = round(n / flagged.labels, 4)
                row_id = f"T{first.task_id}:{keys[index]}:{flag}"
                group_flags.append([row_id, t, flag, n, flagged.labels, agreement])
        order = sorted(used, key=used.get)
        text_base = len(text_strings)
        for index in order:
            text_strings.append(texts[index])
            text_lengths.append(len(texts[index]))
        for row in group_pref:
            pref.append((prompt_local, text_base + row[1], text_base + row[2]))
        for row in group_kto:
            kto.append((prompt_local, text_base + row[1], int(row[2])))
        for row in group_sft:
            sft.append((prompt_local, text_base + row[1]))
        spill.append(
            orjson.dumps(
                {
                    "p": first.prompt_id,
                    "prompt": prompt,
                    "texts": [texts[i] for i in order],
                    "pref": group_pref,
                    "kto": group_kto,
                    "sft": group_sft,
                    "flags": group_flags,
                    "rubric": group_rubric,
                    "scores": group_scores,
                    # Augmented rows, counted as written: every row of a variant's task,
                    # and the rows of model-proposed corrections (by unit key).
                    "variant": first.source_prompt is not None,
                    "model_units": model_corrections,
                }
            )
        )

    out = {
        "labels": len(records),
        "groups": groups,
        "spill": b"\n".join(spill) + b"\n" if spill else b"",
        "prompt_hashes": np.fromiter(map(_normalised_hash, prompt_strings), np.uint64),
        "split_hashes": np.fromiter(map(_normalised_hash, split_strings), np.uint64),
        "augmented": augmented,
        "text_hashes": np.fromiter(map(_normalised_hash, text_strings), np.uint64),
        "pref": np.asarray(pref, dtype=np.int64).reshape(-1, 3),
        "kto": np.asarray(kto, dtype=np.int64).reshape(-1, 3),
        "sft": np.asarray(sft, dtype=np.int64).reshape(-1, 2),
        "removed": removed,
        "flag_counts": flag_counts,
        "prompt_tasks": np.asarray(prompt_tasks, dtype=np.int64),
        "examples": examples,
        "stats": stats,
        "prompt_length_hist": np.histogram(prompt_lengths, bins=[*LENGTH_BINS, 1 << 62])[0],
        "text_length_hist": np.histogram(text_lengths, bins=[*LENGTH_BINS, 1 << 62])[0],
    }
    if config.dedup.near:
        hasher = MinHasher(config.dedup.num_perm, config.dedup.shingle_words, config.dedup.seed)
        bands, rows = config.dedup.bands_rows
        for name, strings in (("prompt", prompt_strings), ("text", text_strings)):
            sigs = (
                hasher.signatures(strings) if strings else np.zeros((0, hasher.num_perm), np.uint16)
            )
            out[f"{name}_sigs"] = sigs
            out[f"{name}_bands"] = (
                np.stack([band_keys(sigs, b, rows) for b in range(bands)], axis=1)
                if len(sigs)
                else np.zeros((0, bands), np.uint64)
            )
    # The cleaner travels back as its counters only.
    out["cleaning"] = {
        "texts": cleaner.texts,
        "changed": cleaner.changed,
        "pii": cleaner.pii,
        "dropped": cleaner.dropped,
    }
    return out
