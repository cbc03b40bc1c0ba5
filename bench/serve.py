"""Serving through the gateway: concurrent streaming clients vs the same requests one at a time,
and an alias swap under load.

    python bench/serve.py --model smollm2-135m --clients 16 --requests 64 --max-new-tokens 64

What it does:

1. creates its own PostgreSQL database next to ``DATABASE_URL``'s (``<name>_serve<pid>``,
   dropped at the end), registers the model twice (the same weights as two versions of the
   project: the champion and a second version to swap to) and issues a ``serve`` API key;
2. starts the serving path as ``manage.py serve --alias champion`` does (that command, as a
   process: it starts ``transformers serve --continuous-batching`` for the champion) and the
   platform under daphne, as ``scripts/run`` does; every request goes through the gateway
   (``/gateway/<project>/v1/chat/completions``, ``stream: true``);
3. concurrent phase: ``--clients`` client threads share ``--requests`` requests (MT-Bench
   first turns, ``--max-new-tokens``, greedy); then the sequential phase: the same requests
   one at a time. Tokens are the engine's own count (``usage.completion_tokens`` of the last
   chunk); TTFT is from sending the request to the first content chunk, at the client;
4. swap phase: the clients stream again while the champion moves to the second version: the
   supervisor loads it, switches when it is healthy, and stops the first once its streams
   finished. ``swap_failed_requests`` counts requests that failed from the move until the
   first engine stopped (and the phase ran until then). Measured apart from the two timed
   phases, so that loading a second engine on the same CPU does not distort their figures.

A request fails when its status is not 200 or its stream ends without a finish reason.
The last line printed is one JSON object; lines before it are details (to stderr).
Rerun: ``DATABASE_URL=postgres://postgres@127.0.0.1:5432/tandem python bench/serve.py ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.annotation_load import (  # noqa: E402
    BENCH_FIELD_KEYS,
    _with_dbname,
    database_drop,
    template_migrate,
)
from bench.shared_data import shared_data  # noqa: E402

PROMPTS = shared_data("mt_bench_questions.jsonl")


def _say(message: str) -> None:
    print(f"[serve bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def prompts(count: int) -> list[str]:
    turns = [json.loads(line)["turns"][0] for line in PROMPTS.read_text().splitlines() if line]
    return [turns[i % len(turns)] for i in range(count)]


def stream_one(client: httpx.Client, url: str, key: str, prompt: str, max_tokens: int) -> dict:
    """One streamed chat completion: ok, ttft_ms, tokens, version."""
    body = {
        "model": "champion",
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    started = time.perf_counter()
    ttft, tokens, finished, version = None, 0, False, ""
    try:
        with client.stream(
            "POST", url, json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response:
            version = response.headers.get("X-Tandem-Version", "")
            if response.status_code != 200:
                response.read()
                return {"ok": False, "status": response.status_code, "version": version}
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                for choice in chunk.get("choices") or []:
                    if (choice.get("delta") or {}).get("content") and ttft is None:
                        ttft = (time.perf_counter() - started) * 1000
                    if choice.get("finish_reason"):
                        finished = True
    except httpx.HTTPError as exc:
        return {"ok": False, "status": type(exc).__name__, "version": version}
    return {
        "ok": finished,
        "status": 200,
        "ttft_ms": ttft,
        "tokens": tokens,
        "version": version,
        "seconds": time.perf_counter() - started,
    }


def run_clients(url, key, work: list[str], clients: int, max_tokens: int, until=None) -> list:
    """``clients`` threads take requests from ``work`` (or loop over it until ``until()``)."""
    results, lock = [], threading.Lock()
    queue = list(enumerate(work))

    def client_loop():
        with httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0)) as client:
            while True:
                with lock:
                    if until is None and not queue:
                        return
                    if until is not None and until():
                        return
                    index, prompt = queue.pop(0) if queue else (len(results), work[0])
                    if until is not None:
                        queue.append((index, prompt))
                result = stream_one(client, url, key, prompt, max_tokens)
                result["at"] = time.monotonic()
                with lock:
                    results.append(result)

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def model_folder(name: str, cache: Path) -> Path:
    from rlhf.training.base_models import SMOLLM2_NAME, build_tiny_causal_lm, ensure_smollm2

    if name == SMOLLM2_NAME:
        return ensure_smollm2(cache)
    if name == "tiny":
        return build_tiny_causal_lm(cache / "bench-tiny")
    return Path(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m, tiny or a folder")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(os.environ.get("TANDEM_MODEL_CACHE", "var/models"))
    )
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tandem")
    run_name = f"tandem_serve{os.getpid()}"
    run_url = _with_dbname(base_url, run_name)
    workdir = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    _say(f"migrating {run_name}")
    template_migrate(base_url, run_name)
    env = {
        **os.environ,
        "DATABASE_URL": run_url,
        "DJANGO_DEBUG": "0",
        "TANDEM_FIELD_KEYS": BENCH_FIELD_KEYS,
        "TANDEM_DB_CONN_MAX_AGE": "0",
        "TANDEM_BUNDLE_ROOT": str(workdir / "bundles"),
    }
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from annotation import services as annotation_services
    from models_registry import services as registry
    from models_registry.serving.models import EngineStatus, ServingEngine
    from models_registry.serving.services import serving_settings_update

    processes: list[subprocess.Popen] = []
    try:
        folder = model_folder(args.model, args.cache_dir)
        second = workdir / "second-registration"
        shutil.copytree(folder, second, copy_function=os.link)  # same weights, hard links
        admin = get_user_model().objects.create_user("bench-admin", is_staff=True)
        project = annotation_services.project_create(name="Serving bench", created_by=admin)
        first = registry.model_version_register_base(
            project=project, registered_by=admin, folder=folder, name="smollm2"
        )
        again = registry.model_version_register_base(
            project=project, registered_by=admin, folder=second, name="smollm2-again",
            make_champion=False,
        )  # fmt: skip
        key = annotation_services.api_token_create(user=admin, name="bench", scope="serve").secret
        # The bench measures serving, not the per-key limit (600 a minute by default).
        serving_settings_update(project=project, requests_per_minute=1_000_000)
        logs = ROOT / "var" / f"serve-bench-{os.getpid()}"  # kept: the engines' logs too
        logs.mkdir(parents=True)
        serve_log = open(logs / "serve.log", "wb")  # noqa: SIM115
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "serve",
                    "--project",
                    str(project.pk),
                    "--alias",
                    "champion",
                    "--engine",
                    "transformers",
                    "--drain-timeout",
                    "300",
                    "--log-dir",
                    str(logs),
                ],
                cwd=ROOT,
                env=env,
                stdout=serve_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        web_log = open(logs / "daphne.log", "wb")  # noqa: SIM115
        processes.append(
            subprocess.Popen(
                ["daphne", "-b", "127.0.0.1", "-p", str(args.port), "config.asgi:application"],
                cwd=ROOT,
                env=env,
                stdout=web_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        url = f"http://127.0.0.1:{args.port}/gateway/{project.pk}/v1/chat/completions"

        def ready(version_id: int) -> bool:
            return ServingEngine.objects.filter(
                version_id=version_id, status=EngineStatus.READY
            ).exists()

        started = time.monotonic()
        while not ready(first.pk):
            if time.monotonic() - started > 900 or any(p.poll() is not None for p in processes):
                raise SystemExit(f"the engine did not start; logs in {logs}")
            time.sleep(1)
        _say(f"engine ready after {time.monotonic() - started:.0f} s; warming up")
        work = prompts(args.requests)
        run_clients(url, key, work[:2], 2, args.max_new_tokens)

        _say(f"concurrent: {args.clients} clients, {args.requests} requests")
        t0 = time.perf_counter()
        concurrent = run_clients(url, key, work, args.clients, args.max_new_tokens)
        concurrent_s = time.perf_counter() - t0
        _say("sequential: the same requests one at a time")
        t0 = time.perf_counter()
        sequential = run_clients(url, key, work, 1, args.max_new_tokens)
        sequential_s = time.perf_counter() - t0

        _say("swap: the champion moves to the second version under load")
        old_engine = ServingEngine.objects.get(version=first, status=EngineStatus.READY)
        stopped = threading.Event()
        moved_at = [0.0]

        def move_then_watch():
            time.sleep(2)
            moved_at[0] = time.monotonic()
            registry.alias_set(
                project=project, name="champion", version=again, actor=admin, reason="bench swap"
            )
            gone = [EngineStatus.STOPPED, EngineStatus.FAILED]
            deadline = time.monotonic() + 900
            while (
                time.monotonic() < deadline
                and not ServingEngine.objects.filter(pk=old_engine.pk, status__in=gone).exists()
            ):
                time.sleep(0.5)
            stopped.set()

        mover = threading.Thread(target=move_then_watch, daemon=True)
        mover.start()
        swap = run_clients(url, key, work, args.clients, args.max_new_tokens, until=stopped.is_set)
        mover.join()
        during = [r for r in swap if r["at"] >= moved_at[0]]
        old_engine.refresh_from_db()
        _say(f"the first engine ended {old_engine.status} {old_engine.error}".rstrip())
        new_label = again.label.replace(" ", "-")

        ok = [r for r in concurrent if r["ok"]]
        ttfts = [r["ttft_ms"] for r in ok if r["ttft_ms"] is not None]
        served_tokens = sum(r["tokens"] for r in ok)
        sequential_tokens = sum(r["tokens"] for r in sequential if r["ok"])
        served_tps = served_tokens / concurrent_s
        sequential_tps = sequential_tokens / sequential_s
        _say(
            f"concurrent {concurrent_s:.1f} s, {served_tokens} tokens; sequential "
            f"{sequential_s:.1f} s, {sequential_tokens} tokens; swap phase: {len(swap)} requests "
            f"({len(during)} after the move, "
            f"{sum(r['version'] == new_label for r in swap)} answered by {new_label})"
        )
        failures = Counter(str(r["status"]) for r in concurrent + sequential + swap if not r["ok"])
        if failures:
            _say(f"failed requests by status (all phases): {dict(failures)}")
        _say(f"load average: {os.getloadavg()}")
        result = {
            "clients": args.clients,
            "requests": args.requests,
            "ttft_p50_ms": round(statistics.median(ttfts), 1),
            "ttft_p95_ms": round(percentile(ttfts, 95), 1),
            "served_tokens_per_s": round(served_tps, 1),
            "sequential_tokens_per_s": round(sequential_tps, 1),
            "ratio": round(served_tps / sequential_tps, 2),
            "failed_requests": sum(not r["ok"] for r in concurrent + sequential),
            "swap_failed_requests": sum(not r["ok"] for r in during),
        }
        print(json.dumps(result), flush=True)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        from django.db import connections

        connections.close_all()
        database_drop(base_url, run_name)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
