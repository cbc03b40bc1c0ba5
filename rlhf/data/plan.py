"""After pass 1: cluster, split, de-duplicate rows and check leakage, from compact arrays.

``StreamState`` is what the main process keeps while the stream passes (hashes, row
references, counters, never text); ``plan()`` turns it into the keep flags and splits that
pass 2 applies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from rlhf.data.aggregate import AggregationStats
from rlhf.data.config import DedupConfig, PipelineConfig
from rlhf.data.dedup import TextSpace
from rlhf.data.minhash import _mix64
from rlhf.data.records import SHAPES
from rlhf.data.shards import EXAMPLES_PER_DECISION, LENGTH_BINS, note_example
from rlhf.data.splits import assign_splits
from rlhf.data.truncation import TruncationConfig


@dataclass
class Plan:
    prompt_split: np.ndarray  # split index per prompt occurrence (= per spilled task)
    keep: dict[str, np.ndarray]  # per shape, a keep flag per row (prompt_only: per prompt)
    dedup: dict
    leakage: dict


class StreamState:
    """What the main process keeps while the stream passes: hashes, row refs, counters."""

    def __init__(self, workdir: Path, config: PipelineConfig):
        self.workdir = workdir
        self.config = config
        bands, _ = config.dedup.bands_rows
        near = config.dedup.near
        self.prompts = TextSpace(
            workdir, "prompts", num_perm=config.dedup.num_perm, bands=bands, near=near
        )
        self.texts = TextSpace(
            workdir, "texts", num_perm=config.dedup.num_perm, bands=bands, near=near
        )
        self.shards: list[dict] = []  # per shard: spill path, group and row ranges
        self.rows: dict[str, list[np.ndarray]] = {"preference": [], "kto": [], "sft": []}
        self.labels = 0
        self.groups = 0
        self.removed: Counter = Counter()
        self.flag_counts: Counter = Counter()
        self.cleaning = {"texts": 0, "changed": Counter(), "pii": Counter(), "dropped": Counter()}
        self.stats = AggregationStats()
        self.prompt_tasks: list[np.ndarray] = []  # the task of each prompt occurrence
        # Per prompt occurrence, the hash its split follows: its own, or for a confirmed
        # variant its source prompt's (``split_groups``).
        self.split_hashes: list[np.ndarray] = []
        self.augmented: Counter = Counter()
        self.examples: dict[str, list[int]] = {}
        self.prompt_hist = np.zeros(len(LENGTH_BINS), dtype=np.int64)
        self.text_hist = np.zeros(len(LENGTH_BINS), dtype=np.int64)

    def absorb(self, out: dict) -> None:
        self.labels += out["labels"]
        self.groups += out["groups"]
        near = self.config.dedup.near
        p_base = self.prompts.add(
            out["prompt_hashes"], out.get("prompt_sigs"), out.get("prompt_bands") if near else None
        )
        t_base = self.texts.add(
            out["text_hashes"], out.get("text_sigs"), out.get("text_bands") if near else None
        )
        offsets = np.array([p_base, t_base, t_base], dtype=np.int64)
        pref = out["pref"] + offsets
        kto = out["kto"] + np.array([p_base, t_base, 0], dtype=np.int64)
        sft = out["sft"] + offsets[:2]
        self.rows["preference"].append(pref.astype(np.int32))
        self.rows["kto"].append(kto.astype(np.int32))
        self.rows["sft"].append(sft.astype(np.int32))
        self.shards.append(
            {
                "index": out["index"],
                "spill_path": out["spill_path"],
                "groups": (self.groups - out["groups"], self.groups),
                "rows": {
                    shape: (
                        sum(len(a) for a in self.rows[shape]) - len(out[key]),
                        sum(len(a) for a in self.rows[shape]),
                    )
                    for shape, key in (("preference", "pref"), ("kto", "kto"), ("sft", "sft"))
                },
            }
        )
        self.removed += out["removed"]
        self.flag_counts += out["flag_counts"]
        self.prompt_tasks.append(out["prompt_tasks"])
        self.split_hashes.append(out["split_hashes"])
        self.augmented += out["augmented"]
        for decision, task_ids in out["examples"].items():
            for task_id in task_ids:
                note_example(self.examples, decision, task_id)
        self.cleaning["texts"] += out["cleaning"]["texts"]
        for key in ("changed", "pii", "dropped"):
            self.cleaning[key] += out["cleaning"][key]
        self.stats.merge(out["stats"])
        self.prompt_hist += out["prompt_length_hist"]
        self.text_hist += out["text_length_hist"]

    def rows_total(self) -> int:
        return sum(sum(len(a) for a in arrays) for arrays in self.rows.values()) + self.groups

    def plan(self) -> Plan:
        for shape, arrays in self.rows.items():
            width = 2 if shape == "sft" else 3
            self.rows[shape] = [
                np.concatenate(arrays) if arrays else np.zeros((0, width), np.int32)
            ]
        dedup = self.config.dedup
        pc = self.prompts.cluster(dedup.threshold)
        tc = self.texts.cluster(dedup.threshold)
        ph, th = self.prompts.hashes, self.texts.hashes
        # Near-duplicate prompts share their cluster's split, decided by the hash of the
        # cluster's earliest prompt: stable when later data joins the cluster. A confirmed
        # variant joins its source's group (``split_groups``), so a paraphrase is never on
        # the other side of its original; without variants, groups are the clusters.
        split_keys = (
            np.concatenate(self.split_hashes) if self.split_hashes else np.zeros(0, np.uint64)
        )
        group_of, group_representative = split_groups(pc.labels, ph, split_keys)
        group_split = assign_splits(split_keys[group_representative], self.config.split)
        prompt_split = group_split[group_of]

        keep, removed = {}, Counter()
        p_near, t_near = pc.labels, tc.labels
        pref = self.rows["preference"][0]
        kto = self.rows["kto"][0]
        sft = self.rows["sft"][0]
        same_text = th[pref[:, 1]] == th[pref[:, 2]]
        same_cluster = t_near[pref[:, 1]] == t_near[pref[:, 2]] if dedup.near else same_text
        # Keys are built one column at a time, and the near key only once the exact pass is
        # done, so at most three row-length arrays are alive at once.
        keep["preference"] = _dedup(
            "preference",
            lambda: _key((ph, pref[:, 0]), (th, pref[:, 1]), (th, pref[:, 2])),
            lambda: _key((p_near, pref[:, 0]), (t_near, pref[:, 1]), (t_near, pref[:, 2])),
            dedup,
            removed,
            drop=[("identical_answers", same_text), ("near_identical_answers", same_cluster)],
        )
        del same_text, same_cluster
        keep["kto"] = _dedup(
            "kto",
            lambda: _key((ph, kto[:, 0]), (th, kto[:, 1]), (None, kto[:, 2])),
            lambda: _key((p_near, kto[:, 0]), (t_near, kto[:, 1]), (None, kto[:, 2])),
            dedup,
            removed,
        )
        keep["sft"] = _dedup(
            "sft",
            lambda: _key((ph, sft[:, 0]), (th, sft[:, 1])),
            lambda: _key((p_near, sft[:, 0]), (t_near, sft[:, 1])),
            dedup,
            removed,
        )
        index = np.arange(len(ph))
        prompt_keep = np.ones(len(ph), dtype=bool)
        if dedup.exact:
            exact_first = pc.exact_representative[pc.exact_labels] == index
            removed["prompt_only", "exact_duplicate"] += int((~exact_first).sum())
            prompt_keep &= exact_first
        if dedup.near:
            near_first = pc.representative[pc.labels] == index
            removed["prompt_only", "near_duplicate"] += int((prompt_keep & ~near_first).sum())
            prompt_keep &= near_first
        keep["prompt_only"] = prompt_keep
        self.removed += removed
        tasks = np.concatenate(self.prompt_tasks) if self.prompt_tasks else np.zeros(0, np.int64)
        duplicates = np.concatenate([np.flatnonzero(~prompt_keep), pref[~keep["preference"], 0]])
        for prompt_index in duplicates[: 4 * EXAMPLES_PER_DECISION].tolist():
            note_example(self.examples, "duplicate_rows", int(tasks[prompt_index]))

        sizes = pc.cluster_sizes()
        dedup_report = {
            "lsh": {
                "threshold": dedup.threshold,
                "num_perm": dedup.num_perm,
                "bands": dedup.bands_rows[0] if dedup.near else None,
                "rows_per_band": dedup.bands_rows[1] if dedup.near else None,
                "shingle_words": dedup.shingle_words,
            },
            "prompts": _space_report(pc, len(ph)),
            "answers": _space_report(tc, len(th)),
            "near_dup_pairs_found": pc.near_pairs + tc.near_pairs,
            "largest_prompt_cluster": int(sizes.max()) if len(sizes) else 0,
        }
        leakage = _leakage(ph, prompt_split, pc, split_keys)
        return Plan(prompt_split=prompt_split, keep=keep, dedup=dedup_report, leakage=leakage)

    def write_jobs(self, plan: Plan, truncation: TruncationConfig | None) -> Iterator[tuple]:
        """Pass-2 jobs, one per shard, with the shard's slices of the keep flags."""
        for shard in self.shards:
            keep = {
                shape: plan.keep[shape][shard["rows"][shape][0] : shard["rows"][shape][1]]
                for shape in ("preference", "kto", "sft")
            }
            g0, g1 = shard["groups"]
            keep["prompt_only"] = plan.keep["prompt_only"][g0:g1]
            part_dir = str(self.workdir / f"part-{shard['index']:06d}")
            yield (
                shard["index"],
                shard["spill_path"],
                keep,
                plan.prompt_split[g0:g1],
                part_dir,
                truncation,
            )

    def report(self, plan: Plan, split_counts: dict, seconds: float) -> dict:
        removed: dict[str, dict[str, int]] = {shape: {} for shape in SHAPES}
        for (shape, reason), n in sorted(self.removed.items()):
            removed[shape][reason] = n
        cleaning = {
            "texts": self.cleaning["texts"],
            "changed": dict(sorted(self.cleaning["changed"].items())),
            "pii": dict(sorted(self.cleaning["pii"].items())),
            "dropped": dict(sorted(self.cleaning["dropped"].items())),
        }
        return {
            "input": {"labels": self.labels, "tasks": self.groups},
            "config": self.config.as_dict(),
            "cleaning": cleaning,
            "aggregation": {"policy": self.config.aggregation.policy, **self.stats.as_dict()},
            "flags": self._flags_report(split_counts),
            "adjudications": {
                "tasks": self.stats.decisions["adjudicated_tasks"],
                "comparisons_changed": self.stats.decisions["adjudication_changed"],
            },
            "adjudications_changed": self.stats.decisions["adjudication_changed"],
            "rubric_rows_exported": {
                shape: sum(split_counts[shape].values()) for shape in ("rubric_preference", "score")
            },
            "dedup": plan.dedup,
            "removed": removed,
            "splits": split_counts,
            "leakage": plan.leakage,
            # Model-proposed data people confirmed; the rows are counted as written (pipeline).
            "augmented": {
                "variant_tasks": self.augmented["variant_tasks"],
                "model_corrections": self.augmented["model_corrections"],
                "rows": dict.fromkeys(SHAPES, 0),
            },
            "lengths": {
                "bins": list(LENGTH_BINS),
                "prompt_chars": self.prompt_hist.tolist(),
                "answer_chars": self.text_hist.tolist(),
            },
            # A few task ids per decision (removed:<reason>, changed:flag_unsafe, adjudicated,
            # adjudication_changed, pii_replaced, duplicate_rows...), linked from the card.
            "examples": {k: v for k, v in sorted(self.examples.items())},
            "seconds": round(seconds, 3),
        }

    def _flags_report(self, split_counts: dict) -> dict:
        """What flags did: tasks whose flag counted (or fell short of ``min_flags``), rows
        removed and changed per flag and shape, texts scrubbed, rows of the flags file."""
        counts = self.flag_counts
        removed: dict[str, dict[str, int]] = {}
        for (shape, reason), n in sorted(
            self.removed.items(), key=lambda kv: (kv[0][1], SHAPES.index(kv[0][0]))
        ):
            if reason.startswith("flag_") and n:
                removed.setdefault(reason.removeprefix("flag_"), {})[shape] = n
        changed: dict[str, dict[str, int]] = {}
        for key, n in sorted(
            (kv for kv in counts.items() if isinstance(kv[0], tuple) and kv[0][0] == "changed"),
            key=lambda kv: (kv[0][1], SHAPES.index(kv[0][2])),
        ):
            if n:
                changed.setdefault(key[1], {})[key[2]] = n
        return {
            "policy": self.config.flags.as_dict(),
            "tasks_flagged": _by_flag(counts, "tasks"),
            "flagged_below_minimum": _by_flag(counts, "below_minimum"),
            "rows_removed": removed,
            "rows_changed": changed,
            "texts_scrubbed": counts["texts_scrubbed"],
            "flag_rows": sum(split_counts["flags"].values()),
        }

    def cleanup(self) -> None:
        self.prompts.cleanup()
        self.texts.cleanup()


def _by_flag(counts: Counter, what: str) -> dict[str, int]:
    return {
        key[1]: n
        for key, n in sorted(counts.items(), key=lambda kv: repr(kv[0]))
        if isinstance(key, tuple) and key[0] == what and n
    }


_KEY_SALTS = (
    np.uint64(0x9E3779B97F4A7C15),
    np.uint64(0xC2B2AE3D27D4EB4F),
    np.uint64(0x165667B19E3779F9),
)


def _key(*columns: tuple[np.ndarray | None, np.ndarray]) -> np.ndarray:
    """A 64-bit key per row from ``(values, index)`` columns (``values[index]``, or the
    index itself where values is None), mixed one column at a time."""
    key = np.zeros(len(columns[0][1]), dtype=np.uint64)
    for salt, (values, index) in zip(_KEY_SALTS, columns, strict=False):
        column = index if values is None else values[index]
        key ^= column.astype(np.uint64) * salt
        del column
        key = _mix64(key)
    return key


def _first_occurrence(keys: np.ndarray) -> np.ndarray:
    """True at the first row of every distinct key (stable: earliest row wins)."""
    mask = np.zeros(len(keys), dtype=bool)
    if len(keys):
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        new = np.empty(len(keys), dtype=bool)
        new[0] = True
        np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
        mask[order[new]] = True
    return mask


def _dedup(shape, exact_key, near_key, config: DedupConfig, removed: Counter, drop=()):
    """Keep flags for one shape's rows; ``exact_key``/``near_key`` build the keys on demand."""
    keep = None
    for reason, mask in drop:
        if reason.startswith("near_") and not config.near:
            continue
        keep = np.ones(len(mask), dtype=bool) if keep is None else keep
        removed[shape, reason] += int((keep & mask).sum())
        keep &= ~mask
    for reason, make_key, enabled in (
        ("exact_duplicate", exact_key, config.exact),
        ("near_duplicate", near_key, config.near),
    ):
        if not enabled:
            continue
        keys = make_key()
        keep = np.ones(len(keys), dtype=bool) if keep is None else keep
        candidates = np.flatnonzero(keep)
        first = _first_occurrence(keys[candidates])
        del keys
        removed[shape, reason] += int((~first).sum())
        keep[candidates[~first]] = False
    if keep is None:
        keep = np.ones(len(exact_key()), dtype=bool)
    return keep


def _space_report(clusters, n: int) -> dict:
    sizes = clusters.cluster_sizes()
    return {
        "occurrences": n,
        "distinct": len(np.unique(clusters.exact_labels)) if n else 0,
        "clusters": len(sizes),
        "in_near_duplicate_clusters": int(sizes[sizes > 1].sum()) if len(sizes) else 0,
        "lsh_candidates": clusters.candidates,
        "near_pairs": clusters.near_pairs,
    }


def split_groups(
    cluster_of: np.ndarray, prompt_hashes: np.ndarray, split_keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(group per prompt occurrence, earliest occurrence per group): prompt clusters joined
    through shared split keys. A variant's key is its source's hash, so it joins the cluster
    of its source when the source is in the data, and every other variant of that source
    either way. Where keys equal the prompts' own hashes, groups are the clusters."""
    n = len(cluster_of)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    clusters = int(cluster_of.max()) + 1
    # Nodes: the clusters, then one node per distinct split key; each occurrence links its
    # cluster to its key's node, and each occurrence's own hash links to the same key node.
    keys, key_index = np.unique(split_keys, return_inverse=True)
    own = np.searchsorted(keys, prompt_hashes)
    own_found = (own < len(keys)) & (keys[np.minimum(own, len(keys) - 1)] == prompt_hashes)
    a = np.concatenate([cluster_of, cluster_of[own_found]])
    b = np.concatenate([clusters + key_index, clusters + own[own_found]])
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(clusters + len(keys),) * 2)
    _, component = connected_components(graph, directed=False)
    group_of = component[cluster_of]
    _, group_of = np.unique(group_of, return_inverse=True)
    first = np.full(int(group_of.max()) + 1, n, dtype=np.int64)
    np.minimum.at(first, group_of, np.arange(n, dtype=np.int64))
    return group_of.astype(np.int64), first


def _leakage(
    prompt_hashes: np.ndarray, prompt_split: np.ndarray, clusters, split_keys: np.ndarray
) -> dict:
    """Verify, independently of how splits were assigned, that no prompt, no pair of
    near-duplicate prompts and no variant and its source (or two variants of one source)
    is on two sides."""
    order = np.argsort(prompt_hashes, kind="stable")
    same_prompt = prompt_hashes[order][1:] == prompt_hashes[order][:-1]
    other_split = prompt_split[order][1:] != prompt_split[order][:-1]
    exact_crossing = len(np.unique(prompt_hashes[order][1:][same_prompt & other_split]))
    a, b = clusters.near_edges
    crossing = int((prompt_split[a] != prompt_split[b]).sum())
    # A variant and its source share a split key with each other (and the source's own
    # hash equals it): every occurrence whose key or own hash is the same must agree.
    both_hashes = np.concatenate([split_keys, prompt_hashes])
    both_splits = np.concatenate([prompt_split, prompt_split])
    is_variant = split_keys != prompt_hashes
    involved = np.isin(both_hashes, split_keys[is_variant])
    lineage_crossing = 0
    if involved.any():
        hashes, splits = both_hashes[involved], both_splits[involved]
        order = np.argsort(hashes, kind="stable")
        same = hashes[order][1:] == hashes[order][:-1]
        other = splits[order][1:] != splits[order][:-1]
        lineage_crossing = len(np.unique(hashes[order][1:][same & other]))
    return {
        "prompts_in_two_splits": exact_crossing,
        "near_duplicate_prompt_pairs_checked": len(a),
        "near_duplicate_pairs_across_splits": crossing,
        "variant_prompts": int(is_variant.sum()),
        "variants_across_splits": lineage_crossing,
        "ok": exact_crossing == 0 and crossing == 0 and lineage_crossing == 0,
    }
