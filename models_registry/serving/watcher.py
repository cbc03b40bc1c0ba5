"""What ``manage.py serve --watch`` runs: one ``Supervisor`` per serving target it holds.

Serving is desired state: the Serving page (or ``POST/DELETE /api/projects/<id>/serving/
target/``) sets a project's ``ServingTarget``; the watcher, every ``poll_s``,

1. claims targets and renews its leases (``serving_targets_claim``: one conditional UPDATE);
2. starts a supervisor for a target it holds that is enabled and has none;
3. retires the supervisor of a target that was stopped, changed (the new one starts beside
   it) or is no longer its own (another watcher holds it): it drains its engines, requests in
   flight finish, then stops them;
4. hands back (``serving_targets_release``) a stopped target once nothing of its runs here;
and steps every supervisor, running and retiring, in one loop (one thread: the supervisors'
own steps are short, their engines are separate processes).

Several hosts: each runs one watcher (``watch_lock`` keeps a second off the same host; its
id is ``<hostname>:<pid>:<random>``, see ``watcher_id_new``) and a target is held by at most
one watcher at a time, through a lease in the target's row (``holder``, ``lease_expires_at``,
on the database's clock). A watcher claims enabled targets that are free or whose lease has
expired, renews its own at every poll (``lease_s``, several polls long), and serves only what
it holds. A clean stop (SIGTERM, ``stop_all``) stops its engines and then releases its leases:
another host takes the targets over at its next poll. A host that dies, or stalls past its
lease, loses its targets once the lease expires: the next claimer marks the engines the lost
holder started ``failed`` (so the gateway stops routing to them) and starts its own. A
watcher that dies takes its engine processes with it (``engines.engine_process_start``: the
kernel ends them with it); a stalled host that wakes finds the target held by another and
retires its supervisor, whose processes drain and stop.

``manage.py serve --project P --alias A`` still runs one supervisor by hand, outside the
leases; do not point it at a project the watchers serve.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from django.db import close_old_connections

from models_registry.serving import services
from models_registry.serving.models import ServingTarget
from models_registry.serving.supervisor import ServeConfig, Supervisor, run_until_stopped

logger = logging.getLogger(__name__)


@dataclass
class WatchConfig:
    """How ``manage.py serve --watch`` runs (the command's flags)."""

    poll_s: float = 3.0  # how often the targets table is read (and the leases renewed)
    step_s: float = 0.5  # how often each supervisor steps
    # How long a lease holds without renewal, in seconds. Several polls long, so a slow poll
    # does not lose a target; it is also how long a dead host's targets wait for another.
    lease_s: float = 30.0
    # Every supervisor's config but the target's own fields (project, alias, version, engine,
    # device), which come from the target row.
    serve: ServeConfig = field(default_factory=lambda: ServeConfig(project_id=0))


class AlreadyWatching(Exception):
    """Another ``serve --watch`` holds this host's lock."""


def watch_lock(path: Path):
    """Hold the host's watcher lock (an open file; released when the process ends)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a")  # noqa: SIM115 (held for the process's lifetime)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise AlreadyWatching(f"another `serve --watch` holds {path}") from None
    return handle


def watcher_id_new() -> str:
    """A watcher's lease id: its host (the Serving page shows it), its pid, and a random part
    (a restarted watcher with a reused pid is another holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def target_key(target: ServingTarget) -> tuple:
    """What a running supervisor was started for: a change starts a new one."""
    options = target.options or {}
    return (target.alias, target.version_id, options.get("engine"), options.get("device"))


class Watcher:
    def __init__(self, config: WatchConfig, *, watcher_id: str = ""):
        self.config = config
        self.id = watcher_id or watcher_id_new()
        self.running: dict[int, tuple[tuple, Supervisor]] = {}  # project id -> (key, supervisor)
        self.retiring: list[Supervisor] = []
        self.reported: dict[int, str] = {}  # project id -> the error last written on its target
        self.last_sync = float("-inf")
        self.stopping = False

    def serve_config(self, target: ServingTarget) -> ServeConfig:
        options = target.options or {}
        return replace(
            self.config.serve,
            project_id=target.project_id,
            alias=target.alias,
            version_id=target.version_id,
            engine=options.get("engine", "auto"),
            device=options.get("device", "auto"),
            watcher_id=self.id,
        )

    def sync(self) -> None:
        """Claim and renew the leases, match the supervisors to the enabled targets held, and
        hand back the stopped ones nothing runs for here any more."""
        held = services.serving_targets_claim(watcher=self.id, lease_s=self.config.lease_s)
        wanted = {t.project_id: t for t in held if t.enabled}
        for project_id, (key, supervisor) in list(self.running.items()):
            target = wanted.get(project_id)
            if target is None or target_key(target) != key:
                if not any(t.project_id == project_id for t in held):
                    logger.warning(
                        "the serving target of project %s is held by another watcher now "
                        "(this one's lease expired); retiring its engines", project_id
                    )  # fmt: skip
                else:
                    logger.info("serving target of project %s stopped or changed", project_id)
                supervisor.retire()
                self.retiring.append(supervisor)
                del self.running[project_id]
                self.reported.pop(project_id, None)
        for project_id, target in wanted.items():
            if project_id not in self.running:
                logger.info("serving %s for project %s", target, project_id)
                self.running[project_id] = (
                    target_key(target),
                    Supervisor(self.serve_config(target)),
                )
        busy = set(self.running) | {s.config.project_id for s in self.retiring}
        done = [t.project_id for t in held if not t.enabled and t.project_id not in busy]
        if done:
            services.serving_targets_release(watcher=self.id, project_ids=done)

    def step(self) -> None:
        if time.monotonic() - self.last_sync >= self.config.poll_s:
            try:
                close_old_connections()
                began = time.monotonic()  # the leases run from the claim, not its return
                self.sync()
                self.last_sync = began
            except Exception:
                logger.exception("reading the serving targets failed; retrying")
                close_old_connections()
        # Not renewed for a lease: another watcher may hold these targets now. Their engines
        # keep serving, but nothing starts or switches until a claim says whose they are (an
        # engine started now could be a second one for the target).
        renewed = time.monotonic() - self.last_sync < self.config.lease_s
        for project_id, (_, supervisor) in list(self.running.items() if renewed else ()):
            supervisor.step_logged()
            self.report(project_id, supervisor.last_error)
        still = []
        for supervisor in self.retiring:
            supervisor.step_logged()
            try:
                if not supervisor.idle():
                    still.append(supervisor)
            except Exception:
                logger.exception("reading a retiring supervisor's engines failed")
                still.append(supervisor)
        self.retiring = still

    def report(self, project_id: int, error: str) -> None:
        """Write a supervisor's failure (or its end) on its target, once per change."""
        if self.reported.get(project_id, "") == error:
            return
        try:
            services.serving_target_report(project_id=project_id, error=error, holder=self.id)
            self.reported[project_id] = error
        except Exception:
            logger.exception("could not report on the serving target of project %s", project_id)
            close_old_connections()

    def stop_all(self) -> None:
        """Stop every engine, then hand the leases back: another host's watcher takes the
        targets at its next poll rather than after the lease (a clean stop, SIGTERM)."""
        for _, supervisor in self.running.values():
            supervisor.stop_all()
        for supervisor in self.retiring:
            supervisor.stop_all()
        self.running.clear()
        self.retiring.clear()
        try:
            services.serving_targets_release(watcher=self.id)
        except Exception:  # the database away: the leases expire instead
            logger.exception("could not hand back the serving targets' leases")

    def run(self, *, until=None) -> None:
        """Steps until SIGTERM/SIGINT (or ``until()``), then stops every engine."""
        run_until_stopped(self, self.step, self.config.step_s, until=until)
