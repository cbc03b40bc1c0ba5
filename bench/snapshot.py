"""Snapshot throughput: seed N synthetic labels in PostgreSQL, then run the whole pipeline.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tandem_bench \\
        python bench/snapshot.py --labels 1000000

Seeding (not timed) writes a project with one pairwise task per label (overlap 1: every
label brings its own prompt and two answers, the most text per label), through COPY. About
2% of prompts are near duplicates of an earlier prompt (one word changed), 1% of answers
repeat an earlier answer exactly, and 1% of texts carry an e-mail, a phone number or stray
HTML. Lengths follow HH-RLHF's harmless split (prompts ~400 characters, answers ~200).

Timed: the snapshot build exactly as the background job runs it (freeze the label ids, stream
them out of PostgreSQL, clean, scrub, aggregate, MinHash/LSH near-dup on, split, export
JSONL + Parquet + ``datasets``). RSS is printed every 100,000 labels read. The last line is
one JSON object: labels, seconds, labels_per_s, peak_rss_mb, near_dup_pairs_found.
The seeded project is deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_vocab(rng: np.random.Generator, size: int = 6000) -> np.ndarray:
    syllables = np.array(
        [
            "ka",
            "lo",
            "mi",
            "ne",
            "ra",
            "to",
            "su",
            "pe",
            "li",
            "an",
            "or",
            "en",
            "ti",
            "ma",
            "de",
            "sa",
            "vo",
            "ru",
            "ze",
            "bi",
            "ho",
            "fa",
            "gu",
        ]
    )
    lengths = rng.integers(1, 4, size=size)
    words = {"".join(rng.choice(syllables, size=n)) for n in lengths} | set(
        [
            "the",
            "a",
            "of",
            "and",
            "to",
            "in",
            "is",
            "it",
            "you",
            "that",
            "for",
            "on",
            "with",
            "as",
            "are",
            "this",
            "be",
        ]
    )
    return np.array(sorted(words))


class TextMaker:
    """Random word sequences, vectorised: one numpy draw per batch of texts."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.vocab = make_vocab(rng)
        # Zipf-like: common words are drawn far more often.
        weights = 1.0 / np.arange(1, len(self.vocab) + 1)
        self.p = weights / weights.sum()

    def batch(self, n: int, mean_words: int) -> list[str]:
        lengths = np.clip(self.rng.poisson(mean_words, size=n), 3, None)
        words = self.rng.choice(len(self.vocab), size=int(lengths.sum()), p=self.p)
        tokens = self.vocab[words].tolist()
        out, start = [], 0
        for length in lengths.tolist():
            out.append(" ".join(tokens[start : start + length]))
            start += length
        return out


def seed(n_labels: int, *, seed_value: int = 0) -> tuple[int, float]:
    """Create a project with ``n_labels`` pairwise labels; returns (project id, seconds)."""
    import psycopg
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotation import services
    from annotation.roles import Role

    started = time.monotonic()
    rng = np.random.default_rng(seed_value)
    maker = TextMaker(rng)
    user_model = get_user_model()
    owner, _ = user_model.objects.get_or_create(username="bench-owner")
    project = services.project_create(
        name=f"bench {n_labels} {int(time.time())}", created_by=owner, overlap=1
    )
    annotators = [
        user_model.objects.get_or_create(username=f"bench-annotator-{i}")[0] for i in range(20)
    ]
    for user in annotators:
        services.membership_set(project=project, user=user, role=Role.ANNOTATOR)

    ids = {}
    with connection.cursor() as cur:
        for table in ("prompt", "response", "task", "taskitem", "label"):
            cur.execute(f"SELECT coalesce(max(id), 0) FROM annotation_{table}")  # noqa: S608
            ids[table] = cur.fetchone()[0] + 1

    now = "2026-01-01 00:00:00+00"
    params = connection.get_connection_params()
    batch = 50_000
    with psycopg.connect(**params) as conn:
        for start in range(0, n_labels, batch):
            n = min(batch, n_labels - start)
            prompts = maker.batch(n, 70)
            answers = maker.batch(2 * n, 35)
            # ~2% near-duplicate prompts: copy an earlier prompt of this batch, one word changed.
            for i in np.flatnonzero(rng.random(n) < 0.02).tolist():
                if i:
                    words = prompts[int(rng.integers(0, i))].split()
                    words[len(words) // 2] = "changed"
                    prompts[i] = " ".join(words)
            for i in np.flatnonzero(rng.random(2 * n) < 0.01).tolist():
                if i > 2:
                    answers[i] = answers[int(rng.integers(0, i - 1))]
            for i in np.flatnonzero(rng.random(n) < 0.01).tolist():
                prompts[i] += [
                    " write to jo.doe@example.org",
                    " call +1 (555) 123-4567",
                    " <div><b>see</b> &amp; tell</div>",
                ][i % 3]
            _copy_batch(conn, ids, start, n, project.pk, prompts, answers, annotators, now, rng)
        conn.commit()
    with connection.cursor() as cur:
        for table in ("prompt", "response", "task", "taskitem", "label"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('annotation_{table}', 'id'), "  # noqa: S608
                f"(SELECT max(id) FROM annotation_{table}))"
            )
        cur.execute("ANALYZE annotation_label, annotation_task, annotation_taskitem")
    return project.pk, time.monotonic() - started


def _copy_batch(conn, ids, start, n, project_id, prompts, answers, annotators, now, rng):
    p0 = ids["prompt"] + start
    r0 = ids["response"] + 2 * start
    t0 = ids["task"] + start
    i0 = ids["taskitem"] + 2 * start
    l0 = ids["label"] + start
    outcomes = rng.random(n) < 0.5
    who = rng.integers(0, len(annotators), size=n)
    with conn.cursor() as cur:
        with cur.copy(
            "COPY annotation_prompt (id, project_id, messages, content_hash, source, metadata, "
            "created_at) FROM STDIN"
        ) as copy:
            for i, text in enumerate(prompts):
                messages = json.dumps([{"role": "user", "content": text}])
                copy.write_row((p0 + i, project_id, messages, f"p{p0 + i}", "bench", "{}", now))
        with cur.copy(
            "COPY annotation_response (id, prompt_id, text, content_hash, origin, model_name, "
            "generation, created_at) FROM STDIN"
        ) as copy:
            for j, text in enumerate(answers):
                copy.write_row((r0 + j, p0 + j // 2, text, f"r{r0 + j}", "model", "m", "{}", now))
        with cur.copy(
            "COPY annotation_task (id, project_id, prompt_id, kind, required_labels, label_count, "
            "status, priority, content_hash, source, metadata, created_at) FROM STDIN"
        ) as copy:
            for i in range(n):
                copy.write_row(
                    (t0 + i, project_id, p0 + i, "pairwise", 1, 1, "done", 0, f"t{t0 + i}",
                     "bench", "{}", now)
                )  # fmt: skip
        with cur.copy(
            "COPY annotation_taskitem (id, task_id, response_id, position) FROM STDIN"
        ) as copy:
            for j in range(2 * n):
                copy.write_row((i0 + j, t0 + j // 2, r0 + j, j % 2))
        with cur.copy(
            "COPY annotation_label (id, task_id, annotator_id, kind, payload, flags, source, "
            "version, created_at, updated_at) FROM STDIN"
        ) as copy:
            for i in range(n):
                outcome = "A" if outcomes[i] else "B"
                winner = r0 + 2 * i + (0 if outcomes[i] else 1)
                payload = (
                    f'{{"outcome": "{outcome}", "strength": "clear", "winner": {winner}, '
                    f'"chosen_side": null, "rationale": ""}}'
                )
                copy.write_row(
                    (l0 + i, t0 + i, annotators[who[i]].pk, "pairwise", payload, "[]", "import",
                     1, now, now)
                )  # fmt: skip


def delete_project(project_id: int) -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "DELETE FROM annotation_label WHERE task_id IN "
            "(SELECT id FROM annotation_task WHERE project_id = %s)",
            [project_id],
        )
    from annotation.models import Project

    Project.objects.filter(pk=project_id).delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=None, help="Default: settings.")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--keep", action="store_true", help="Keep the seeded project.")
    parser.add_argument("--project", type=int, help="Reuse an already seeded project.")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from rlhf.snapshots import services

    if args.project:
        project_id = args.project
    else:
        project_id, seconds = seed(args.labels)
        print(f"seeded {args.labels:,} labels in {seconds:.1f}s (project {project_id})", flush=True)

    from annotation.models import Project

    project = Project.objects.get(pk=project_id)
    with tempfile.TemporaryDirectory(prefix="tandem-bench-") as tmp:
        settings.TANDEM_ARTIFACT_ROOT = Path(tmp)
        snapshot = services.snapshot_create(
            project=project,
            created_by=None,
            name="bench",
            config={"dedup": {"near": True, "threshold": args.threshold}},
            enqueue=False,
        )
        marks = {"next": 100_000}

        def report_rss(stage, done, total):
            if stage == "read" and done >= marks["next"]:
                print(f"rss at {done:,} labels read: {rss_mb():.0f} MB", flush=True)
                while marks["next"] <= done:
                    marks["next"] += 100_000
            elif stage != "read":
                print(f"stage {stage}: rss {rss_mb():.0f} MB", flush=True)

        cpu_before = sum(
            getattr(resource.getrusage(who), field)
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
            for field in ("ru_utime", "ru_stime")
        )
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        snapshot = services.snapshot_build(
            snapshot_id=snapshot.pk, workers=args.workers, on_progress=report_rss
        )
        seconds = time.monotonic() - started
        print(f"rss at the end ({snapshot.label_count:,} labels): {rss_mb():.0f} MB", flush=True)
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        cpu = (
            sum(
                getattr(resource.getrusage(who), field)
                for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                for field in ("ru_utime", "ru_stime")
            )
            - cpu_before
        )
        result = {
            "labels": snapshot.label_count,
            "seconds": round(seconds, 2),
            "labels_per_s": round(snapshot.label_count / seconds, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "peak_rss_worker_mb": round(children, 1),
            "near_dup_pairs_found": snapshot.report["dedup"]["near_dup_pairs_found"],
            "rows": {k: sum(v.values()) for k, v in snapshot.row_counts.items()},
            "timings_s": snapshot.report.get("timings_s"),
            "cpu_seconds_excluding_postgres": round(cpu, 1),
            "load_avg_1m_before": round(load_before, 1),
            "workers": settings.TANDEM_SNAPSHOT_WORKERS if args.workers is None else args.workers,
            "cpus": os.cpu_count(),
        }
    if not args.keep and not args.project:
        delete_project(project_id)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
