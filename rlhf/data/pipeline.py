"""From label records to a cleaned, de-duplicated, split and exported data set.

    records (grouped by task) --chunks--> workers: clean, scrub, aggregate, hash, MinHash
        |                                   |
        |        spill file (one JSON line per task) + content hashes + signatures/bands
        v
    cluster prompts and answers (exact + near duplicates), assign splits by prompt cluster,
    de-duplicate rows per shape, check leakage
        v
    second pass over the spill: rows to JSONL / Parquet / ``datasets`` (``rlhf.data.export``)

The stream is read once and never held: per text occurrence the pipeline keeps a 64-bit
hash in memory, and per row a few integer references (see ``rlhf.data.dedup``). Chunks are
processed by a pool of worker processes (``workers``) when there is more than one core.

A row's "near key" is made of the cluster ids of its prompt and answers, so two preference
rows are near duplicates when their prompts are near duplicates and their chosen and rejected
answers are too; exact duplicates are the same with content hashes. The first row in stream
order (task order) is kept.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import orjson
import xxhash

from rlhf.data.aggregate import AggregationConfig, AggregationStats, aggregate_task
from rlhf.data.cleaning import CleaningConfig, TextCleaner
from rlhf.data.dedup import TextSpace
from rlhf.data.export import PartWriter, assemble_export
from rlhf.data.minhash import MinHasher, _mix64, band_keys, lsh_params
from rlhf.data.records import SHAPES, SPLITS, LabelRecord
from rlhf.data.splits import SplitConfig, assign_splits
from rlhf.data.truncation import TruncationConfig

LENGTH_BINS = (0, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class DedupConfig:
    """exact: drop rows whose normalised content (case-folded, whitespace collapsed) repeats.
    near: drop rows whose prompt and answers are near duplicates of an earlier row's, and
        cluster near-duplicate prompts so they share a split.
    threshold: estimated Jaccard similarity of word 3-gram sets at which two texts are near
        duplicates.
    num_perm / shingle_words / seed: MinHash parameters (``rlhf.data.minhash.MinHasher``).
    """

    exact: bool = True
    near: bool = True
    threshold: float = 0.8
    num_perm: int = 64
    shingle_words: int = 3
    seed: int = 1

    def __post_init__(self):
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")

    @property
    def bands_rows(self) -> tuple[int, int]:
        return lsh_params(self.threshold, self.num_perm)


@dataclass(frozen=True)
class PipelineConfig:
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    split: SplitConfig = field(default_factory=SplitConfig)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["aggregation"]["exclude_annotators"] = sorted(self.aggregation.exclude_annotators)
        data["cleaning"]["pii_types"] = list(self.cleaning.pii_types)
        return data

    @classmethod
    def from_dict(cls, data: dict | None) -> PipelineConfig:
        data = data or {}
        cleaning = dict(data.get("cleaning") or {})
        if "pii_types" in cleaning:
            cleaning["pii_types"] = tuple(cleaning["pii_types"])
        aggregation = dict(data.get("aggregation") or {})
        if "exclude_annotators" in aggregation:
            aggregation["exclude_annotators"] = frozenset(aggregation["exclude_annotators"])
        return cls(
            cleaning=CleaningConfig(**cleaning),
            dedup=DedupConfig(**(data.get("dedup") or {})),
            aggregation=AggregationConfig(**aggregation),
            split=SplitConfig(**(data.get("split") or {})),
        )


@dataclass
class BuildResult:
    report: dict
    manifest: dict

    @property
    def content_sha256(self) -> str:
        return self.manifest["rows_sha256_all"]


def build_dataset(
    records: Iterable[LabelRecord] | None = None,
    *,
    shards: Sequence[Callable[[], Iterable[LabelRecord]]] | None = None,
    config: PipelineConfig,
    export_dir: Path,
    workers: int = 0,
    chunk_labels: int = 4000,
    workdir: Path | None = None,
    truncation: TruncationConfig | None = None,
    progress: Progress | None = None,
    total_labels: int | None = None,
    manifest_extra: dict | None = None,
) -> BuildResult:
    """Run the whole pipeline and write the export; returns the report and the manifest.

    Give either ``records`` (grouped by task; cut into chunks of about ``chunk_labels``) or
    ``shards``: picklable callables, each returning the records of a disjoint, ordered
    range of tasks, which worker processes call themselves so that the records never pass
    through this process (``rlhf.readers.label_shards`` makes them for a database).
    ``workers`` > 0 runs both passes in that many processes; 0 runs everything here.
    """
    if (records is None) == (shards is None):
        raise ValueError("give records or shards, not both")
    started = time.monotonic()
    progress = progress or (lambda stage, done, total: None)
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        timings[name] = round(time.monotonic() - started - sum(timings.values()), 2)

    with (
        tempfile.TemporaryDirectory(dir=workdir, prefix="tandem-build-") as tmp,
        _worker_pool(workers) as pool,
    ):
        state = _StreamState(Path(tmp), config)
        sources = shards if shards is not None else _chunks(records, chunk_labels)
        jobs = ((index, source, config, tmp) for index, source in enumerate(sources))
        for out in _map_ordered(pool, process_shard, jobs, workers):
            state.absorb(out)
            progress("read", state.labels, total_labels)
        lap("read_clean_hash")
        progress("cluster", state.labels, total_labels)
        plan = state.plan()
        lap("cluster_dedup_split")
        progress("export", 0, state.groups)
        written = []
        for done in _map_ordered(pool, write_shard, state.write_jobs(plan, truncation), workers):
            written.append(done)
            progress("export", sum(d["groups"] for d in written), state.groups)
        lap("write_rows")
        split_counts = {shape: dict.fromkeys(SPLITS, 0) for shape in SHAPES}
        truncated = dict.fromkeys(SHAPES, 0)
        for done in written:
            for shape in SHAPES:
                truncated[shape] += done["truncated"][shape]
                for split in SPLITS:
                    split_counts[shape][split] += done["counts"][shape][split]
        report = state.report(plan, split_counts, time.monotonic() - started)
        report["timings_s"] = timings
        progress("assemble", 0, None)
        manifest = assemble_export(
            export_dir,
            [Path(d["part_dir"]) for d in written],
            truncation=truncation,
            truncated=truncated,
            map_fn=lambda fn, jobs: _map_ordered(pool, fn, jobs, workers),
            extra={
                "config": config.as_dict(),
                "report_summary": _summary(report),
                **(manifest_extra or {}),
            },
        )
        lap("assemble_files")
        report["seconds"] = round(time.monotonic() - started, 3)
        report["truncation"] = manifest["truncation"]
        report["content_sha256"] = manifest["rows_sha256_all"]
        if manifest["shapes"] != split_counts:
            raise RuntimeError("export files disagree with the rows written")
    return BuildResult(report=report, manifest=manifest)


# --- stream: chunks in, compact state out -------------------------------------------------


def _chunks(records: Iterable[LabelRecord], size: int) -> Iterator[list[LabelRecord]]:
    """Lists of about ``size`` records that never split a task across two chunks."""
    chunk: list[LabelRecord] = []
    for record in records:
        if len(chunk) >= size and record.task_id != chunk[-1].task_id:
            yield chunk
            chunk = []
        chunk.append(record)
    if chunk:
        yield chunk


@contextmanager
def _worker_pool(workers: int):
    if workers <= 0:
        yield None
        return
    # spawn: workers start clean (no inherited database connections or threads).
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield pool


def _map_ordered(pool, fn, jobs: Iterable[tuple], workers: int) -> Iterator:
    """``fn(*job)`` for every job, results in job order; at most two jobs per worker in
    flight, so a generator of jobs is consumed no faster than the workers keep up."""
    if pool is None:
        for job in jobs:
            yield fn(*job)
        return
    pending: deque = deque()
    for job in jobs:
        pending.append(pool.apply_async(fn, job))
        while len(pending) >= 2 * workers:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _normalised_hash(text: str) -> int:
    return xxhash.xxh3_64_intdigest(" ".join(text.casefold().split()).encode("utf-8"))


def _prompt_text(messages: list[dict]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def process_shard(index: int, source, config: PipelineConfig, workdir: str) -> dict:
    """Pass 1 for one shard (in a worker): its tasks go to a spill file of its own; the
    compact results come back."""
    records = list(source() if callable(source) else source)
    out = process_chunk(records, config)
    spill_path = Path(workdir) / f"spill-{index:06d}.jsonl"
    spill_path.write_bytes(out.pop("spill"))
    out["spill_path"] = str(spill_path)
    out["index"] = index
    return out


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
    keep = {shape: flags.tolist() for shape, flags in keep.items()}
    split_names = [SPLITS[i] for i in splits.tolist()]
    with open(spill_path, "rb") as spill:
        for group_index, line in enumerate(spill):
            group = orjson.loads(line)
            split = split_names[group_index]
            prompt, texts = group["prompt"], group["texts"]
            for row_id, c, r, margin, weight, source in group["pref"]:
                if keep["preference"][cursor["preference"]]:
                    writer.write(
                        "preference",
                        split,
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
                    writer.write(
                        "kto",
                        split,
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
                    writer.write(
                        "sft",
                        split,
                        {
                            "id": row_id,
                            "messages": [*prompt, {"role": "assistant", "content": texts[t]}],
                            "source": "correction",
                        },
                    )
                cursor["sft"] += 1
            if keep["prompt_only"][group_index]:
                writer.write("prompt_only", split, {"id": f"p{group['p']}", "prompt": prompt})
    Path(spill_path).unlink()
    done = writer.close()
    return {**done, "part_dir": part_dir, "groups": len(split_names), "index": index}


def process_chunk(records: list[LabelRecord], config: PipelineConfig) -> dict:
    """Clean, aggregate and hash a list of whole tasks.

    Returns picklable plain data: the spill lines, per-occurrence hashes and signatures,
    row references local to the chunk, and the counters of what happened.
    """
    cleaner = TextCleaner(config.cleaning)
    stats = AggregationStats()
    removed: Counter = Counter()
    spill: list[bytes] = []
    prompt_strings: list[str] = []
    text_strings: list[str] = []
    pref, kto, sft = [], [], []
    prompt_lengths, text_lengths = [], []
    groups = 0
    start = 0
    while start < len(records):
        end = start + 1
        while end < len(records) and records[end].task_id == records[start].task_id:
            end += 1
        labels = records[start:end]
        start = end
        groups += 1
        for label in labels:
            if isinstance(label.payload, (str, bytes)):
                label.payload = orjson.loads(label.payload)
        first = labels[0]
        messages = (
            orjson.loads(first.prompt) if isinstance(first.prompt, (str, bytes)) else first.prompt
        )
        prompt = [{"role": m["role"], "content": cleaner.clean(m["content"])} for m in messages]
        prompt_string = _prompt_text(prompt)
        response_ids = list(first.responses)
        texts = [cleaner.clean(first.responses[rid]) for rid in response_ids]
        keys = [f"r{rid}" for rid in response_ids]
        corrected_index = {}
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
        )
        prompt_reason = cleaner.verdict("\n".join(m["content"] for m in prompt))
        if prompt_reason:
            reason = f"prompt_{prompt_reason}"
            removed["prompt_only", reason] += 1
            for unit in units:
                removed["preference", reason] += len(unit.pairs)
                removed["kto", reason] += len(unit.kto)
                removed["sft", reason] += len(unit.sft)
            continue
        verdicts = [cleaner.verdict(text) for text in texts]
        # task text index -> its index among the texts this task spills (first use first)
        used: dict[int, int] = {}

        prompt_local = len(prompt_strings)
        prompt_strings.append(prompt_string)
        prompt_lengths.append(len(prompt_string))
        group_pref, group_kto, group_sft = [], [], []
        for unit in units:
            for pair in unit.pairs:
                bad = verdicts[pair.chosen] or verdicts[pair.rejected]
                if bad:
                    removed["preference", f"answer_{bad}"] += 1
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
                }
            )
        )

    out = {
        "labels": len(records),
        "groups": groups,
        "spill": b"\n".join(spill) + b"\n" if spill else b"",
        "prompt_hashes": np.fromiter(map(_normalised_hash, prompt_strings), np.uint64),
        "text_hashes": np.fromiter(map(_normalised_hash, text_strings), np.uint64),
        "pref": np.asarray(pref, dtype=np.int64).reshape(-1, 3),
        "kto": np.asarray(kto, dtype=np.int64).reshape(-1, 3),
        "sft": np.asarray(sft, dtype=np.int64).reshape(-1, 2),
        "removed": removed,
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


@dataclass
class _Plan:
    prompt_split: np.ndarray  # split index per prompt occurrence (= per spilled task)
    keep: dict[str, np.ndarray]  # per shape, a keep flag per row (prompt_only: per prompt)
    dedup: dict
    leakage: dict


class _StreamState:
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
        self.cleaning = {"texts": 0, "changed": Counter(), "pii": Counter(), "dropped": Counter()}
        self.stats = AggregationStats()
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
        self.cleaning["texts"] += out["cleaning"]["texts"]
        for key in ("changed", "pii", "dropped"):
            self.cleaning[key] += out["cleaning"][key]
        self.stats.merge(out["stats"])
        self.prompt_hist += out["prompt_length_hist"]
        self.text_hist += out["text_length_hist"]

    def rows_total(self) -> int:
        return sum(sum(len(a) for a in arrays) for arrays in self.rows.values()) + self.groups

    def plan(self) -> _Plan:
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
        # cluster's earliest prompt: stable when later data joins the cluster.
        cluster_split = assign_splits(ph[pc.representative], self.config.split)
        prompt_split = cluster_split[pc.labels]

        keep, removed = {}, Counter()
        p_exact, p_near = ph, pc.labels.astype(np.uint64)
        t_exact, t_near = th, tc.labels.astype(np.uint64)
        pref = self.rows["preference"][0]
        kto = self.rows["kto"][0]
        sft = self.rows["sft"][0]
        same_text = t_exact[pref[:, 1]] == t_exact[pref[:, 2]]
        same_cluster = t_near[pref[:, 1]] == t_near[pref[:, 2]] if dedup.near else same_text
        keep["preference"] = _dedup(
            "preference",
            _key(p_exact[pref[:, 0]], t_exact[pref[:, 1]], t_exact[pref[:, 2]]),
            _key(p_near[pref[:, 0]], t_near[pref[:, 1]], t_near[pref[:, 2]]),
            dedup,
            removed,
            drop=[("identical_answers", same_text), ("near_identical_answers", same_cluster)],
        )
        label = kto[:, 2].astype(np.uint64)
        keep["kto"] = _dedup(
            "kto",
            _key(p_exact[kto[:, 0]], t_exact[kto[:, 1]], label),
            _key(p_near[kto[:, 0]], t_near[kto[:, 1]], label),
            dedup,
            removed,
        )
        keep["sft"] = _dedup(
            "sft",
            _key(p_exact[sft[:, 0]], t_exact[sft[:, 1]]),
            _key(p_near[sft[:, 0]], t_near[sft[:, 1]]),
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
        leakage = _leakage(ph, prompt_split, pc)
        return _Plan(prompt_split=prompt_split, keep=keep, dedup=dedup_report, leakage=leakage)

    def write_jobs(self, plan: _Plan, truncation: TruncationConfig | None) -> Iterator[tuple]:
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

    def report(self, plan: _Plan, split_counts: dict, seconds: float) -> dict:
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
            "dedup": plan.dedup,
            "removed": removed,
            "splits": split_counts,
            "leakage": plan.leakage,
            "lengths": {
                "bins": list(LENGTH_BINS),
                "prompt_chars": self.prompt_hist.tolist(),
                "answer_chars": self.text_hist.tolist(),
            },
            "seconds": round(seconds, 3),
        }

    def cleanup(self) -> None:
        self.prompts.cleanup()
        self.texts.cleanup()


_KEY_SALTS = (
    np.uint64(0x9E3779B97F4A7C15),
    np.uint64(0xC2B2AE3D27D4EB4F),
    np.uint64(0x165667B19E3779F9),
)


def _key(*columns: np.ndarray) -> np.ndarray:
    key = np.zeros(len(columns[0]), dtype=np.uint64)
    for salt, column in zip(_KEY_SALTS, columns, strict=False):
        key = _mix64(key ^ (column.astype(np.uint64) * salt))
    return key


def _first_occurrence(keys: np.ndarray) -> np.ndarray:
    mask = np.zeros(len(keys), dtype=bool)
    if len(keys):
        _, first = np.unique(keys, return_index=True)
        mask[first] = True
    return mask


def _dedup(shape, exact_keys, near_keys, config: DedupConfig, removed: Counter, drop=()):
    keep = np.ones(len(exact_keys), dtype=bool)
    for reason, mask in drop:
        if reason.startswith("near_") and not config.near:
            continue
        hit = keep & mask
        removed[shape, reason] += int(hit.sum())
        keep &= ~mask
    for reason, keys, enabled in (
        ("exact_duplicate", exact_keys, config.exact),
        ("near_duplicate", near_keys, config.near),
    ):
        if not enabled:
            continue
        candidates = np.flatnonzero(keep)
        first = _first_occurrence(keys[candidates])
        removed[shape, reason] += int((~first).sum())
        keep[candidates[~first]] = False
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


def _leakage(prompt_hashes: np.ndarray, prompt_split: np.ndarray, clusters) -> dict:
    """Verify, independently of how splits were assigned, that no prompt and no pair of
    near-duplicate prompts is on two sides."""
    order = np.argsort(prompt_hashes, kind="stable")
    same_prompt = prompt_hashes[order][1:] == prompt_hashes[order][:-1]
    other_split = prompt_split[order][1:] != prompt_split[order][:-1]
    exact_crossing = len(np.unique(prompt_hashes[order][1:][same_prompt & other_split]))
    a, b = clusters.near_edges
    crossing = int((prompt_split[a] != prompt_split[b]).sum())
    return {
        "prompts_in_two_splits": exact_crossing,
        "near_duplicate_prompt_pairs_checked": len(a),
        "near_duplicate_pairs_across_splits": crossing,
        "ok": exact_crossing == 0 and crossing == 0,
    }


def _summary(report: dict) -> dict:
    return {
        "labels": report["input"]["labels"],
        "tasks": report["input"]["tasks"],
        "near_dup_pairs_found": report["dedup"]["near_dup_pairs_found"],
        "leakage_ok": report["leakage"]["ok"],
    }
