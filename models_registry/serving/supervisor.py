"""What ``manage.py serve`` runs: keep one healthy engine per wanted version, switch on alias
moves without a failed request, stop replaced engines once drained.

Each ``step`` reads the database (the alias, the canary setting) and:
1. starts an engine for a wanted version that has none (status ``starting``);
2. marks a starting engine ``ready`` once ``/health`` answers; the engines it replaces (same
   alias and role) become ``draining`` in the same transaction, so the gateway's next request
   goes to the new one, and requests already on the old one carry on;
3. stops a draining engine when no usage record on it is ``in_flight`` (after a grace period
   that covers a request routed just before the switch), or after ``drain_timeout_s``.
A rollback is an alias move like any other. A version's LoRA adapter is served merged (the
export bundle's merge, ``model_version_bundle_build``). A retired supervisor (``retire``: its
serving target was stopped, see ``watcher``) wants nothing, so it drains and stops every engine
it runs the same way. An engine whose row another writer ended (the watcher that took the
target over when this one's lease expired marks it failed) is drained the same way, then its
process is stopped; the row keeps the other's word.

Engines bind to ``host``; their rows carry ``http://<advertise_host or host>:<port>``, the URL
the gateway calls (with web hosts elsewhere, bind to 0.0.0.0 and advertise a reachable name).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.db import close_old_connections

from annotation.models import Project
from models_registry.models import ModelAlias, ModelVersion
from models_registry.serving import engines, selectors, services
from models_registry.serving.models import (
    LIVE_ENGINE_STATUSES,
    CanaryMode,
    EngineStatus,
    ServingEngine,
)

logger = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    """How ``manage.py serve`` runs (the command's flags)."""

    project_id: int
    alias: str = ""  # serve what this alias names, following its moves
    version_id: int | None = None  # or one pinned version
    engine: str = engines.AUTO  # transformers | vllm | auto (vLLM on a GPU where installed)
    host: str = "127.0.0.1"  # the address engines bind to
    # The host name the gateway (the web hosts) reaches engines by, written in their URL; ''
    # means ``host``. Engines bound to 127.0.0.1 are reachable from this host only: with web
    # hosts elsewhere, bind to 0.0.0.0 (or this host's address) and advertise a reachable name.
    advertise_host: str = ""
    device: str = "auto"
    kv_cache_tokens: int = 16384  # the engine's KV cache, in tokens (all requests together)
    max_batch_tokens: int = 2048  # tokens one forward pass takes (prefill chunks)
    start_timeout_s: float = 600.0  # an engine not healthy by then is failed and retried
    drain_grace_s: float = 2.0  # covers a request routed just before the switch
    drain_timeout_s: float = 600.0  # a stream longer than this is cut when its engine stops
    poll_s: float = 0.5
    log_dir: Path = field(default_factory=lambda: Path("var/serving"))
    watcher_id: str = ""  # the ``serve --watch`` (lease holder) running this; '' by hand


def engine_url(host: str, port: int) -> str:
    """The base URL of an engine listening on ``host``:``port`` (an IPv6 address bracketed)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def version_folder(version: ModelVersion) -> str:
    """The weights an engine loads: the version's folder, or its merged bundle (LoRA)."""
    if not version.is_adapter:
        return version.artifact_dir
    from models_registry.bundles import model_version_bundle_build

    return str(model_version_bundle_build(version_id=version.pk, adapter_only=False).folder)


class Supervisor:
    def __init__(self, config: ServeConfig):
        self.config = config
        self.processes: dict[int, subprocess.Popen] = {}
        self.started: dict[int, float] = {}
        self.draining_since: dict[int, float] = {}
        self.stopping = False
        self.retiring = False
        self.last_error = ""  # the last step's failure ('' when it worked)

    # ------------------------------------------------------------------ what is wanted
    def wanted(self) -> dict[str, ModelVersion]:
        """{role: version}: the alias's (or pinned) version, and the canary's."""
        config = self.config
        wanted = {}
        if self.retiring:
            return wanted
        if config.version_id is not None:
            wanted["primary"] = ModelVersion.objects.get(pk=config.version_id)
        else:
            alias = ModelAlias.objects.filter(project_id=config.project_id, name=config.alias)
            alias = alias.select_related("version").first()
            if alias is not None:
                wanted["primary"] = alias.version
        settings = selectors.serving_settings_of(Project(pk=config.project_id))
        if settings.canary_mode != CanaryMode.OFF and settings.canary_version_id:
            wanted["canary"] = settings.canary_version
        return wanted

    def mine(self):
        return ServingEngine.objects.filter(pk__in=list(self.processes)).select_related("version")

    def retire(self) -> None:
        """Want nothing from now on: the next steps drain and stop every engine (requests in
        flight finish first). The watcher calls this when the serving target is stopped."""
        self.retiring = True

    def idle(self) -> bool:
        """No engine of this supervisor is starting, ready or draining, and no process of its
        runs (one whose row another watcher ended may still be draining, see ``check``)."""
        if any(process.poll() is None for process in self.processes.values()):
            return False
        return not self.mine().filter(status__in=LIVE_ENGINE_STATUSES).exists()

    # ------------------------------------------------------------------ one step
    def step_logged(self) -> None:
        """A step whose failure (the database away for a moment) is logged, not fatal: the
        engines keep serving and the next step tries again."""
        try:
            self.step()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if error != self.last_error:  # the same failure again is not logged every step
                logger.exception("serving step failed; retrying")
            self.last_error = error
            close_old_connections()
        else:
            self.last_error = ""

    def step(self) -> None:
        close_old_connections()
        wanted = self.wanted()
        live = {
            (e.role, e.version_id): e
            for e in self.mine()
            if e.status in (EngineStatus.STARTING, EngineStatus.READY)
        }
        for role, version in wanted.items():
            if (role, version.pk) not in live:
                self.start(version, role)
        for engine in self.mine():
            self.check(engine, wanted)

    def start(self, version: ModelVersion, role: str) -> ServingEngine:
        config = self.config
        kind = engines.engine_choose(config.engine)
        why_not = engines.engine_available(kind)
        if why_not:
            raise RuntimeError(why_not)
        folder = version_folder(version)
        port = engines.free_port(config.host)
        argv, upstream_model = engines.engine_command(
            kind=kind, folder=folder, host=config.host, port=port,
            served_name=version.label.replace(" ", "-"), device=config.device,
            kv_cache_tokens=config.kv_cache_tokens, max_batch_tokens=config.max_batch_tokens,
        )  # fmt: skip
        engine = services.serving_engine_create(
            version=version, alias=config.alias if config.version_id is None else "",
            role=role, engine=kind, url=engine_url(config.advertise_host or config.host, port),
            upstream_model=upstream_model, folder=folder, host=socket.gethostname(),
            command=argv, watcher=config.watcher_id,
        )  # fmt: skip
        config.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(config.log_dir / f"engine-{engine.pk}.log", "ab")  # noqa: SIM115 (the child's)
        process = engines.engine_process_start(
            argv, env=engines.engine_environment(kind=kind, device=config.device), log=log
        )
        log.close()
        services.serving_engine_started(engine=engine, pid=process.pid)
        self.processes[engine.pk] = process
        self.started[engine.pk] = time.monotonic()
        logger.info(
            "engine %s (%s) starting for %s on %s", engine.pk, kind, version.label, engine.url
        )
        return engine

    def check(self, engine: ServingEngine, wanted: dict[str, ModelVersion]) -> None:
        process = self.processes[engine.pk]
        if engine.status in (EngineStatus.STOPPED, EngineStatus.FAILED):
            # Ended by another writer while its process runs: the watcher that took the
            # target over after this one's lease expired. No request routes to it any more;
            # the ones in flight finish (as in a drain), then the process ends. The row keeps
            # the other's word.
            if process.poll() is None and self.drained(engine):
                self._terminate(process)
                logger.info("engine %s (ended by another watcher) stopped", engine.pk)
            return
        if process.poll() is not None and engine.status != EngineStatus.DRAINING:
            self.stop(engine, error=f"the engine exited with code {process.returncode}")
            return
        if engine.status == EngineStatus.STARTING:
            if engine.role not in wanted:  # retired, or the canary turned off while it loads
                services.serving_engine_drain(engine=engine)
            elif engines.engine_healthy(engine.url):
                replaced = services.serving_engine_ready(engine=engine)
                logger.info("engine %s ready; draining %s", engine.pk, replaced)
            elif time.monotonic() - self.started[engine.pk] > self.config.start_timeout_s:
                self.stop(engine, error="not healthy before the start timeout")
            return
        if engine.status == EngineStatus.READY:
            replacement = wanted.get(engine.role)
            # Not wanted any more (canary off or moved): drain now. A primary engine is drained
            # by its replacement once that one is healthy (serving_engine_ready).
            if (replacement is None or replacement.pk != engine.version_id) and (
                engine.role == "canary" or replacement is None
            ):
                services.serving_engine_drain(engine=engine)
            return
        if engine.status == EngineStatus.DRAINING and self.drained(engine):
            self.stop(engine)

    def drained(self, engine: ServingEngine) -> bool:
        """No request routes to ``engine`` any more: may it stop? After the grace period, once
        no usage record on it is in flight, or after the drain timeout."""
        since = self.draining_since.setdefault(engine.pk, time.monotonic())
        waited = time.monotonic() - since
        if waited < self.config.drain_grace_s:
            return False
        return (
            selectors.engine_in_flight(engine=engine) == 0 or waited > self.config.drain_timeout_s
        )

    @staticmethod
    def _terminate(process: subprocess.Popen) -> None:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()

    def stop(self, engine: ServingEngine, *, error: str = "") -> None:
        self._terminate(self.processes[engine.pk])
        services.serving_engine_stopped(engine=engine, error=error)
        logger.info("engine %s stopped%s", engine.pk, f": {error}" if error else "")

    def stop_all(self) -> None:
        """Every process this supervisor started ends, whatever its row says (or if the row
        is gone): an engine is never left running behind a stopped ``serve``."""
        try:
            rows = {e.pk: e for e in self.mine()}
        except Exception:
            logger.exception("could not read the engines' rows; stopping the processes")
            rows = {}
        for pk, process in self.processes.items():
            engine = rows.get(pk)
            if engine is not None and engine.status not in (
                EngineStatus.STOPPED,
                EngineStatus.FAILED,
            ):
                self.stop(engine)
            else:
                self._terminate(process)

    def run(self, *, until=None) -> None:
        """Steps until SIGTERM/SIGINT (or ``until()`` is true), then stops every engine."""
        run_until_stopped(self, self.step_logged, self.config.poll_s, until=until)


def run_until_stopped(owner, step, poll_s: float, *, until=None) -> None:
    """Call ``step`` every ``poll_s`` seconds until SIGTERM or SIGINT (they set
    ``owner.stopping``) or ``until()`` is true, then ``owner.stop_all()``; the signal handlers
    that were there before are put back. The loop of ``serve`` and of ``serve --watch``."""

    def request_stop(*_):
        owner.stopping = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not owner.stopping and not (until and until()):
            step()
            time.sleep(poll_s)
    finally:
        owner.stop_all()
        for s, handler in previous.items():
            signal.signal(s, handler)
