"""Writing the export: JSONL, Parquet and a Hugging Face ``datasets`` folder per shape.

Layout (``tandem-export/1``; the training engine reads exactly this)::

    <export_dir>/manifest.json
    <export_dir>/<shape>/{train,validation,test}.jsonl
    <export_dir>/<shape>/{train,validation,test}.parquet
    <export_dir>/<shape>/hf/            DatasetDict.save_to_disk

Rows are streamed: JSONL and Parquet are written in batches, and each split is also written
as an Arrow stream that ``datasets`` memory-maps to build the ``hf/`` folder, so no split is
ever held in memory whole. Every split's canonical sha256 is taken over its rows serialised
with sorted keys, one per line, in file order.
"""

from __future__ import annotations

import hashlib
import json
import shutil
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
}
BATCH_ROWS = 4096


class _SplitWriter:
    def __init__(self, directory: Path, shape: str, split: str):
        self.schema = SCHEMAS[shape]
        self.jsonl = open(directory / f"{split}.jsonl", "wb")  # noqa: SIM115 (closed in close)
        self.parquet = pq.ParquetWriter(directory / f"{split}.parquet", self.schema)
        self.arrow_path = directory / f".{split}.arrow"
        self.arrow = pa.ipc.new_stream(str(self.arrow_path), self.schema)
        self.sha = hashlib.sha256()
        self.rows = 0
        self.pending: list[dict] = []

    def write(self, row: dict) -> None:
        self.jsonl.write(orjson.dumps(row) + b"\n")
        self.sha.update(orjson.dumps(row, option=orjson.OPT_SORT_KEYS) + b"\n")
        self.pending.append(row)
        self.rows += 1
        if len(self.pending) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            table = pa.Table.from_pylist(self.pending, schema=self.schema)
            self.parquet.write_table(table)
            self.arrow.write_table(table)
            self.pending = []

    def close(self) -> None:
        self.flush()
        self.jsonl.close()
        self.parquet.close()
        self.arrow.close()


class ExportWriter:
    """Receives rows shape by shape and split by split, in any interleaving.

    ``close()`` finishes every file, builds the ``hf/`` folders and returns the manifest
    (also written as ``manifest.json``); ``extra`` is merged into it.
    """

    def __init__(self, export_dir: Path, *, truncation: TruncationConfig | None = None):
        self.dir = Path(export_dir)
        self.truncation = truncation or TruncationConfig()
        self.truncated = dict.fromkeys(SHAPES, 0)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._writers: dict[tuple[str, str], _SplitWriter] = {}
        for shape in SHAPES:
            (self.dir / shape).mkdir(exist_ok=True)
            for split in SPLITS:
                self._writers[shape, split] = _SplitWriter(self.dir / shape, shape, split)

    def write(self, shape: str, split: str, row: dict) -> None:
        if self.truncation.active and truncate_row(row, shape, self.truncation):
            self.truncated[shape] += 1
        self._writers[shape, split].write(row)

    def close(self, extra: dict | None = None) -> dict:
        import datasets
        from datasets import Dataset, DatasetDict

        bars_were_on = not datasets.utils.are_progress_bars_disabled()
        datasets.disable_progress_bars()

        shapes, files_sha = {}, {}
        for (shape, split), writer in self._writers.items():
            writer.close()
            shapes.setdefault(shape, {})[split] = writer.rows
            files_sha[f"{shape}/{split}"] = writer.sha.hexdigest()
        for shape in SHAPES:
            hf_dir = self.dir / shape / "hf"
            if hf_dir.exists():
                shutil.rmtree(hf_dir)
            splits = {
                split: Dataset.from_file(str(self._writers[shape, split].arrow_path))
                for split in SPLITS
            }
            DatasetDict(splits).save_to_disk(str(hf_dir), num_shards=dict.fromkeys(SPLITS, 1))
            del splits
            for split in SPLITS:
                self._writers[shape, split].arrow_path.unlink()
        if bars_were_on:
            datasets.enable_progress_bars()
        manifest = {
            "format": EXPORT_FORMAT,
            "shapes": shapes,
            "rows_sha256": files_sha,
            "rows_sha256_all": combined_sha256(files_sha),
            "truncation": {**self.truncation.describe(), "rows_truncated": self.truncated},
            **(extra or {}),
        }
        (self.dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return manifest


def combined_sha256(per_split: dict[str, str]) -> str:
    """One digest over the per-split digests, in a fixed order."""
    lines = "".join(f"{key} {per_split[key]}\n" for key in sorted(per_split))
    return hashlib.sha256(lines.encode()).hexdigest()


def iter_export_rows(export_dir: Path, shape: str, split: str):
    """Rows of one split of an export, streamed from its JSONL."""
    with open(Path(export_dir) / shape / f"{split}.jsonl", "rb") as f:
        for line in f:
            yield orjson.loads(line)


def reexport(
    source_dir: Path, export_dir: Path, *, truncation: TruncationConfig | None = None
) -> dict:
    """Copy an export to ``export_dir`` (e.g. with prompt truncation), streaming every row."""
    source = json.loads((Path(source_dir) / "manifest.json").read_text())
    if source.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{source_dir} is not a {EXPORT_FORMAT} export")
    writer = ExportWriter(export_dir, truncation=truncation)
    for shape in SHAPES:
        for split in SPLITS:
            for row in iter_export_rows(source_dir, shape, split):
                writer.write(shape, split, row)
    keep = {k: v for k, v in source.items() if k not in {"shapes", "rows_sha256", "truncation"}}
    keep.pop("rows_sha256_all", None)
    keep["source_rows_sha256_all"] = source["rows_sha256_all"]
    return writer.close(keep)
