"""A snapshot's preference pairs in a peer tool's shape (``formats.peers``): Label Studio
tasks or Argilla records, one JSON array per split, so a team can open a snapshot's decisions
in the tool it already uses (to audit them, or to label them again).

Each pair is one comparison judged by ``tandem-snapshot`` (the snapshot's aggregated
decision, not a person). Which side is shown first is decided by the row id's hash, so the
chosen answer is not always on the left."""

from __future__ import annotations

import hashlib
from pathlib import Path

from formats.peers import WRITERS, PeerJudgement, PeerRecord, peer_json_array
from rlhf.data.export import iter_export_rows
from rlhf.data.records import SPLITS

SNAPSHOT_JUDGE = "tandem-snapshot"


def preference_as_peer_record(row: dict) -> PeerRecord:
    chosen, rejected = row["chosen"][-1]["content"], row["rejected"][-1]["content"]
    swap = hashlib.sha256(str(row["id"]).encode()).digest()[0] & 1
    responses, tiers = (
        ([rejected, chosen], [[1], [0]]) if swap else ([chosen, rejected], [[0], [1]])
    )
    return PeerRecord(
        prompt=row["prompt"],
        responses=responses,
        judgements=[PeerJudgement(SNAPSHOT_JUDGE, tiers)],
        external_id=str(row["id"]),
    )


def write_peer_exports(export_dir: Path, tools: list[str]) -> dict[str, dict[str, str]]:
    """Write ``<tool>/<split>.json`` for each tool; return {tool: {split: relative path}}."""
    written: dict[str, dict[str, str]] = {}
    for tool in tools:
        if tool not in WRITERS:
            raise ValueError(f"unknown tool {tool!r}; expected one of {list(WRITERS)}")
        folder = Path(export_dir) / tool
        folder.mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            records = (
                preference_as_peer_record(row)
                for row in iter_export_rows(export_dir, "preference", split)
            )
            path = folder / f"{split}.json"
            with open(path, "w", encoding="utf-8") as f:
                for chunk in peer_json_array(records, tool):
                    f.write(chunk)
            written.setdefault(tool, {})[split] = f"{tool}/{split}.json"
    return written
