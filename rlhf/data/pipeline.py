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

import ctypes
import multiprocessing
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from rlhf.data.aggregate import fit_pooled
from rlhf.data.config import DedupConfig, PipelineConfig
from rlhf.data.export import assemble_export
from rlhf.data.plan import StreamState
from rlhf.data.records import SHAPES, SPLITS, LabelRecord
from rlhf.data.shards import collect_votes, process_shard, write_shard
from rlhf.data.truncation import TruncationConfig

__all__ = ["BuildResult", "DedupConfig", "PipelineConfig", "build_dataset"]
Progress = Callable[[str, int, int | None], None]


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
    worker_setup: Callable[[], None] | None = None,
) -> BuildResult:
    """Run the whole pipeline and write the export; returns the report and the manifest.

    Give either ``records`` (grouped by task; cut into chunks of about ``chunk_labels``) or
    ``shards``: picklable callables, each returning the records of a disjoint, ordered
    range of tasks, which worker processes call themselves so that the records never pass
    through this process (``rlhf.snapshots.readers.label_shards`` makes them for a database).
    ``workers`` > 0 runs both passes in that many processes; 0 runs everything here.
    ``worker_setup`` runs first in each worker process (a picklable module-level function; a
    caller whose shards import a framework sets the framework up there).
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
        _worker_pool(workers, worker_setup) as pool,
    ):
        state = StreamState(Path(tmp), config)
        sources = shards if shards is not None else _chunks(records, chunk_labels)
        pooled: list[dict | None] = []
        if config.aggregation.pooled:
            # A pooled policy learns from every comparison before deciding any: one more
            # read of the sources (records are held in memory for it), then one fit.
            sources = list(sources)
            progress("fit", 0, total_labels)
            jobs = ((index, source, config) for index, source in enumerate(sources))
            shard_votes = list(_map_ordered(pool, collect_votes, jobs, workers))
            decisions = fit_pooled(
                {k: v for votes in shard_votes for k, v in votes.items()},
                config=config.aggregation,
            )
            pooled = [{k: decisions[k] for k in votes} for votes in shard_votes]
            del shard_votes, decisions
            lap("fit_pooled")
        jobs = (
            (index, source, config, tmp, pooled[index] if pooled else None)
            for index, source in enumerate(sources)
        )
        for out in _map_ordered(pool, process_shard, jobs, workers):
            state.absorb(out)
            progress("read", state.labels, total_labels)
        lap("read_clean_hash")
        progress("cluster", state.labels, total_labels)
        plan = state.plan()
        _release_free_memory()
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
        for done in written:
            for shape, n in done["augmented"].items():
                report["augmented"]["rows"][shape] += n
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


def _release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them after large numpy frees)."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextmanager
def _worker_pool(workers: int, setup: Callable[[], None] | None = None):
    if workers <= 0:
        yield None
        return
    # spawn: workers start clean (no inherited database connections or threads).
    with multiprocessing.get_context("spawn").Pool(workers, initializer=setup) as pool:
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


def _summary(report: dict) -> dict:
    return {
        "labels": report["input"]["labels"],
        "tasks": report["input"]["tasks"],
        "near_dup_pairs_found": report["dedup"]["near_dup_pairs_found"],
        "leakage_ok": report["leakage"]["ok"],
    }
