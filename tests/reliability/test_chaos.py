"""The chaos bench, short: 50 annotators for a few seconds, 30% of submit responses dropped.

A real server process (gunicorn) on the test database, a dropping proxy, clients that retry
with their idempotency keys: 0 duplicate labels, 0 lost acknowledged labels, no task over its
overlap. The PostgreSQL restart is bench-only (``python bench/chaos.py --restart-postgres``):
restarting the shared server would break every other test run on the machine.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

REPO = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_dropped_responses_and_retries_lose_and_duplicate_nothing():
    run = subprocess.run(
        [sys.executable, "bench/chaos.py", "--annotators", "50", "--seconds", "4",
         "--drop-rate", "0.3", "--tasks", "300", "--workers", "2", "--threads", "8",
         "--database-url", _database_url()],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["acked_labels"] > 0
    assert "responses dropped 0," not in run.stderr  # the fault was really injected
    assert result["duplicates"] == 0
    assert result["lost"] == 0
    assert result["overlap_violations"] == 0
    assert result["db_labels"] >= result["acked_labels"]
    assert result["error_seconds_after_restart"] is None
