"""Writing the export: JSONL, Parquet and a Hugging Face ``datasets`` folder per shape.

Layout (``tandem-export/1``; the training engine reads exactly this)::

    <export_dir>/manifest.json
    <export_dir>/<shape>/{train,validation,test}.jsonl
    <export_dir>/<shape>/{train,validation,test}.parquet
    <export_dir>/<shape>/hf/            DatasetDict.save_to_disk

Rows are streamed: worker processes each write a part (JSONL, then Arrow), and the parts
are joined in order, batch by batch, so no split is ever held in memory whole. A split's
sha256 is that of its JSONL file: one row per line, compact JSON with keys in schema order.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from rlhf.data.records import EXPORT_FORMAT, SHAPES, SPLITS
from rlhf.data.truncation import TruncationConfig, truncate_row

_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
SCHEMAS = {
    "preference": pa.schema(
        [
            ("id", pa.string()),
            ("prompt", _MESSAGES),
            ("chosen", _MESSAGES),
            ("rejected", _MESSAGES),
            ("margin", pa.float64()),
            # How far the decision can be trusted (``rlhf.data.aggregate``): the agreeing share
            # of the votes, a posterior, a weighted share; 1.0 for an adjudication, null for a
            # correction. The reward trainer weighs each pair's loss by it (``use_weights``).
            ("weight", pa.float64()),
            ("source", pa.string()),
        ]
    ),
    "sft": pa.schema([("id", pa.string()), ("messages", _MESSAGES), ("source", pa.string())]),
    "kto": pa.schema(
        [
            ("id", pa.string()),
            ("prompt", _MESSAGES),
            ("completion", _MESSAGES),
            ("label", pa.bool_()),
        ]
    ),
    "prompt_only": pa.schema([("id", pa.string()), ("prompt", _MESSAGES)]),
    # One row per flagged response and flag (``rlhf.data.flags``): flagged_by labels of the
    # task's ``labels`` attributed the flag to this answer; agreement = flagged_by / labels.
    "flags": pa.schema(
        [
            ("id", pa.string()),
            ("prompt", _MESSAGES),
            ("completion", _MESSAGES),
            ("flag", pa.string()),
            ("flagged_by", pa.int64()),
            ("labels", pa.int64()),
            ("agreement", pa.float64()),
        ]
    ),
    # Rubric labels (``rlhf.data.aggregate``): per dimension, a pair where two answers of a
    # task have different mean scores (margin: the difference), and each answer's mean score.
    "rubric_preference": pa.schema(
        [
            ("id", pa.string()),
            ("prompt", _MESSAGES),
            ("chosen", _MESSAGES),
            ("rejected", _MESSAGES),
            ("dimension", pa.string()),
            ("margin", pa.float64()),
        ]
    ),
    "score": pa.schema(
        [
            ("id", pa.string()),
            ("prompt", _MESSAGES),
            ("completion", _MESSAGES),
            ("dimension", pa.string()),
            ("score", pa.float64()),
            ("labels", pa.int64()),
        ]
    ),
}


class _Columns:
    """Column buffers for one shape and split, turned into an Arrow batch every so often.

    Building the columns directly (message lists as offsets plus role and content arrays)
    costs a few list appends per row; parsing the JSONL back or ``Table.from_pylist`` cost
    several times more.
    """

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self.message_fields = [f.name for f in schema if f.type == _MESSAGES]
        self.reset()

    def reset(self) -> None:
        self.rows = 0
        self.values = {f.name: [] for f in self.schema if f.type != _MESSAGES}
        self.messages = {name: ([0], [], []) for name in self.message_fields}

    def add(self, row: dict) -> None:
        self.rows += 1
        for name, values in self.values.items():
            values.append(row[name])
        for name, (offsets, roles, contents) in self.messages.items():
            for message in row[name]:
                roles.append(message["role"])
                contents.append(message["content"])
            offsets.append(len(roles))

    def batch(self) -> pa.RecordBatch:
        arrays = []
        for field in self.schema:
            if field.type == _MESSAGES:
                offsets, roles, contents = self.messages[field.name]
                items = pa.StructArray.from_arrays(
                    [pa.array(roles, pa.string()), pa.array(contents, pa.string())],
                    fields=list(_MESSAGES.value_type),
                )
                arrays.append(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), items))
            else:
                arrays.append(pa.array(self.values[field.name], type=field.type))
        self.reset()
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


class PartWriter:
    """One part of an export (a worker's share of the rows), for every shape and split.

    Rows go to a JSONL file per shape and split as they come (orjson, keys in schema order:
    the canonical form the content hash is taken over) and, in batches, to an Arrow stream
    that ``assemble_export`` turns into Parquet and the ``hf/`` folder.
    """

    BATCH_ROWS = 8192

    def __init__(self, part_dir: Path, *, truncation: TruncationConfig | None = None):
        self.dir = Path(part_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.truncation = truncation or TruncationConfig()
        self.truncated = dict.fromkeys(SHAPES, 0)
        self.counts = {shape: dict.fromkeys(SPLITS, 0) for shape in SHAPES}
        self._files: dict[tuple[str, str], object] = {}
        self._lines: dict[tuple[str, str], list[bytes]] = {}
        self._columns: dict[tuple[str, str], _Columns] = {}
        self._arrow: dict[tuple[str, str], pa.ipc.RecordBatchStreamWriter] = {}

    def write(self, shape: str, split: str, row: dict) -> None:
        if self.truncation.active and truncate_row(row, shape, self.truncation):
            self.truncated[shape] += 1
        key = (shape, split)
        lines = self._lines.get(key)
        if lines is None:
            lines = self._lines[key] = []
            self._files[key] = open(self.dir / f"{shape}.{split}.jsonl", "wb")  # noqa: SIM115
            self._columns[key] = _Columns(SCHEMAS[shape])
            self._arrow[key] = pa.ipc.new_stream(
                str(self.dir / f"{shape}.{split}.arrow"), SCHEMAS[shape]
            )
        lines.append(orjson.dumps(row))
        columns = self._columns[key]
        columns.add(row)
        if columns.rows >= self.BATCH_ROWS:
            self._flush(key)
        self.counts[shape][split] += 1

    def _flush(self, key: tuple[str, str]) -> None:
        lines = self._lines[key]
        if lines:
            self._files[key].write(b"\n".join(lines) + b"\n")
            lines.clear()
        if self._columns[key].rows:
            self._arrow[key].write_batch(self._columns[key].batch())

    def close(self) -> dict:
        for key, f in self._files.items():
            self._flush(key)
            f.close()
            self._arrow[key].close()
        return {"counts": self.counts, "truncated": self.truncated}


def assemble_export(
    export_dir: Path,
    part_dirs: list[Path],
    *,
    truncation: TruncationConfig | None = None,
    truncated: dict[str, int] | None = None,
    extra: dict | None = None,
    map_fn=None,
) -> dict:
    """Join the parts, in order, into the export layout and write ``manifest.json``.

    ``map_fn(fn, jobs)`` runs the twelve (shape, split) joins, in worker processes if given.

    A split's JSONL is the concatenation of its parts, hashed as it is copied; its Parquet
    file and its ``hf/`` Arrow file are written from the parts' Arrow streams batch by batch.
    The ``hf/`` metadata (``dataset_dict.json``, ``state.json``, ``dataset_info.json``) is
    written by ``datasets`` itself, from an empty ``DatasetDict`` with the same schema, so
    ``datasets.load_from_disk`` reads the folder as it reads any ``save_to_disk`` output.
    """
    export_dir = Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    truncation = truncation or TruncationConfig()
    for shape in SHAPES:
        hf_dir = export_dir / shape / "hf"
        if hf_dir.exists():
            shutil.rmtree(hf_dir)
        (export_dir / shape).mkdir(parents=True, exist_ok=True)
        _write_hf_metadata(hf_dir, SCHEMAS[shape])
    jobs = [
        (str(export_dir), [str(p) for p in part_dirs], shape, split)
        for shape in SHAPES
        for split in SPLITS
    ]
    shapes, files_sha = {}, {}
    for shape, split, rows, digest in (map_fn or _starmap)(assemble_split, jobs):
        shapes.setdefault(shape, {})[split] = rows
        files_sha[f"{shape}/{split}"] = digest
    manifest = {
        "format": EXPORT_FORMAT,
        "shapes": shapes,
        "rows_sha256": files_sha,
        "rows_sha256_all": combined_sha256(files_sha),
        "truncation": {
            **truncation.describe(),
            "rows_truncated": truncated or dict.fromkeys(SHAPES, 0),
        },
        **(extra or {}),
    }
    (export_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def _starmap(fn, jobs):
    return (fn(*job) for job in jobs)


def assemble_split(export_dir: str, part_dirs: list[str], shape: str, split: str):
    """Join one split's parts: JSONL (hashed while copied), Parquet and the hf/ Arrow file."""
    shape_dir = Path(export_dir) / shape
    rows, digest = 0, hashlib.sha256()
    with open(shape_dir / f"{split}.jsonl", "wb") as out:
        for part in part_dirs:
            path = Path(part) / f"{shape}.{split}.jsonl"
            if path.exists():
                with open(path, "rb") as f:
                    while block := f.read(1 << 22):
                        out.write(block)
                        digest.update(block)
                        rows += block.count(b"\n")
    split_dir = shape_dir / "hf" / split
    with (
        # Plain encoding for free text: dictionary attempts on it cost time and save nothing.
        pq.ParquetWriter(
            shape_dir / f"{split}.parquet",
            SCHEMAS[shape],
            use_dictionary=["source", "flag", "dimension"],
            write_statistics=False,  # min/max of long free text: costly and never queried
        ) as parquet,
        pa.ipc.new_stream(str(split_dir / ".data.arrow"), _hf_schema(split_dir)) as arrow,
    ):
        for part in part_dirs:
            path = Path(part) / f"{shape}.{split}.arrow"
            if path.exists():
                with pa.ipc.open_stream(pa.OSFile(str(path))) as reader:
                    for batch in reader:
                        parquet.write_batch(batch)
                        arrow.write_batch(batch)
    (split_dir / ".data.arrow").replace(split_dir / "data-00000-of-00001.arrow")
    return shape, split, rows, digest.hexdigest()


def _write_hf_metadata(hf_dir: Path, schema: pa.Schema) -> None:
    import datasets

    bars_were_on = not datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        empty = datasets.Dataset(pa.Table.from_batches([], schema=schema))
        datasets.DatasetDict({split: empty for split in SPLITS}).save_to_disk(
            str(hf_dir), num_shards=dict.fromkeys(SPLITS, 1)
        )
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


def _hf_schema(split_dir: Path) -> pa.Schema:
    """The schema (with datasets' feature metadata) of the empty data file just written."""
    with pa.ipc.open_stream(pa.OSFile(str(split_dir / "data-00000-of-00001.arrow"))) as reader:
        return reader.schema


class ExportWriter:
    """A single-process export: one part, assembled on ``close()`` (tests, re-exports)."""

    def __init__(self, export_dir: Path, *, truncation: TruncationConfig | None = None):
        self.dir = Path(export_dir)
        self.truncation = truncation
        self._tmp = tempfile.TemporaryDirectory(prefix="tandem-export-")
        self._part = PartWriter(Path(self._tmp.name) / "part", truncation=truncation)

    def write(self, shape: str, split: str, row: dict) -> None:
        self._part.write(shape, split, row)

    def close(self, extra: dict | None = None) -> dict:
        try:
            done = self._part.close()
            return assemble_export(
                self.dir,
                [self._part.dir],
                truncation=self.truncation,
                truncated=done["truncated"],
                extra=extra,
            )
        finally:
            self._tmp.cleanup()


def combined_sha256(per_split: dict[str, str]) -> str:
    """One digest over the per-split digests, in a fixed order."""
    lines = "".join(f"{key} {per_split[key]}\n" for key in sorted(per_split))
    return hashlib.sha256(lines.encode()).hexdigest()


def iter_export_rows(export_dir: Path, shape: str, split: str):
    """Rows of one split of an export, streamed from its JSONL."""
    with open(Path(export_dir) / shape / f"{split}.jsonl", "rb") as f:
        for line in f:
            yield orjson.loads(line)


REEXPORT_PROGRESS_ROWS = 5000  # rows between two on_progress calls


def reexport(
    source_dir: Path,
    export_dir: Path,
    *,
    truncation: TruncationConfig | None = None,
    on_progress=None,
) -> dict:
    """Copy an export to ``export_dir`` (e.g. with prompt truncation), streaming every row.

    ``on_progress(stage, done, total)``: rows copied of the source's rows (stage ``rows``),
    then ``assemble`` while Parquet and the ``hf/`` folders are written."""
    source = json.loads((Path(source_dir) / "manifest.json").read_text())
    if source.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{source_dir} is not a {EXPORT_FORMAT} export")
    total = sum(sum(splits.values()) for splits in source.get("shapes", {}).values())
    progress = on_progress or (lambda stage, done, total: None)
    done = 0
    progress("rows", done, total)
    writer = ExportWriter(export_dir, truncation=truncation)
    for shape in SHAPES:
        for split in SPLITS:
            for row in iter_export_rows(source_dir, shape, split):
                writer.write(shape, split, row)
                done += 1
                if done % REEXPORT_PROGRESS_ROWS == 0:
                    progress("rows", done, total)
    progress("assemble", done, total)
    keep = {k: v for k, v in source.items() if k not in {"shapes", "rows_sha256", "truncation"}}
    keep.pop("rows_sha256_all", None)
    keep["source_rows_sha256_all"] = source["rows_sha256_all"]
    return writer.close(keep)
