"""What ``manage.py serve --watch`` runs: one ``Supervisor`` per enabled serving target.

Serving is desired state: the Serving page (or ``POST/DELETE /api/projects/<id>/serving/
target/``) sets a project's ``ServingTarget``; the watcher reads the table every ``poll_s`` and

1. starts a supervisor for a target that is enabled and has none;
2. retires the supervisor of a target that was stopped (or changed: the new one starts beside
   it): it drains its engines, requests in flight finish, then stops them;
3. steps every supervisor, running and retiring, in one loop (one thread: the supervisors'
   own steps are short, their engines are separate processes).

One watcher runs per host (``watch_lock``): two would start two engines per target, and each
one's switch would drain the other's. ``manage.py serve --project P --alias A`` still runs one
supervisor by hand; do not point it at a project the watcher serves.
"""

from __future__ import annotations

import fcntl
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from django.db import close_old_connections

from models_registry.serving import selectors, services
from models_registry.serving.models import ServingTarget
from models_registry.serving.supervisor import ServeConfig, Supervisor, run_until_stopped

logger = logging.getLogger(__name__)


@dataclass
class WatchConfig:
    """How ``manage.py serve --watch`` runs (the command's flags)."""

    poll_s: float = 3.0  # how often the targets table is read
    step_s: float = 0.5  # how often each supervisor steps
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


def target_key(target: ServingTarget) -> tuple:
    """What a running supervisor was started for: a change starts a new one."""
    options = target.options or {}
    return (target.alias, target.version_id, options.get("engine"), options.get("device"))


class Watcher:
    def __init__(self, config: WatchConfig):
        self.config = config
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
        )

    def sync(self) -> None:
        """Match the supervisors to the enabled targets."""
        wanted = {t.project_id: t for t in selectors.serving_targets_enabled()}
        for project_id, (key, supervisor) in list(self.running.items()):
            target = wanted.get(project_id)
            if target is None or target_key(target) != key:
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

    def step(self) -> None:
        if time.monotonic() - self.last_sync >= self.config.poll_s:
            try:
                close_old_connections()
                self.sync()
                self.last_sync = time.monotonic()
            except Exception:
                logger.exception("reading the serving targets failed; retrying")
                close_old_connections()
        for project_id, (_, supervisor) in list(self.running.items()):
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
            services.serving_target_report(project_id=project_id, error=error)
            self.reported[project_id] = error
        except Exception:
            logger.exception("could not report on the serving target of project %s", project_id)
            close_old_connections()

    def stop_all(self) -> None:
        for _, supervisor in self.running.values():
            supervisor.stop_all()
        for supervisor in self.retiring:
            supervisor.stop_all()
        self.running.clear()
        self.retiring.clear()

    def run(self, *, until=None) -> None:
        """Steps until SIGTERM/SIGINT (or ``until()``), then stops every engine."""
        run_until_stopped(self, self.step, self.config.step_s, until=until)
