"""``python manage.py serve``: an OpenAI-compatible engine for a version or an alias.

    serve --project demo --alias champion      # follows the alias: approve or roll back, and
                                               # the next engine loads, then takes over
    serve --project demo --version 7           # one pinned version
    serve ... --engine transformers|vllm|auto  # default auto: vLLM on a GPU where installed
    serve --project demo --configure --canary-version 8 --canary-mode split --canary-share 0.1
          [--learn-from-traffic on|off] [--requests-per-minute 600]
    serve --watch                              # serve what the projects' Serving pages ask
                                               # for (``ServingTarget``), start and stop as
                                               # they change; one per host (./scripts/run);
                                               # several hosts share the targets (a lease)
    serve ... --host 0.0.0.0 --advertise-host gpu-7.internal
                                               # engines the web hosts reach from elsewhere

The engine is ``transformers serve`` (continuous batching, SSE streaming) or vLLM's OpenAI
server; Tandem does not serve tokens itself. Clients call the gateway,
``/gateway/<project_id>/v1/chat/completions``, with a ``serve`` API key (see README, Serving).
Engines and what they serve are recorded (``ServingEngine``); Ctrl+C stops them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.selectors import project_by_ref
from config.errors import DomainError
from models_registry.models import ModelVersion
from models_registry.serving import services
from models_registry.serving.supervisor import ServeConfig, Supervisor
from models_registry.serving.watcher import AlreadyWatching, WatchConfig, Watcher, watch_lock


class Command(BaseCommand):
    help = "Serve a version or an alias on an OpenAI-compatible engine (behind the gateway)."

    def create_parser(self, prog_name, subcommand, **kwargs):
        # ``--version N`` names a model version here, not Django's version (which it replaces).
        kwargs.setdefault("conflict_handler", "resolve")
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--project", default=None, help="project slug or id")
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--alias", default=None, help="follow this alias (e.g. champion)")
        which.add_argument("--version", type=int, default=None, help="a version id")
        which.add_argument(
            "--configure", action="store_true", help="change the serving settings and exit"
        )
        which.add_argument(
            "--watch",
            action="store_true",
            help="serve every enabled serving target (the projects' Serving pages)",
        )
        parser.add_argument(
            "--watch-poll", type=float, default=3.0, help="--watch: seconds between reads"
        )
        parser.add_argument(
            "--watch-lease",
            type=float,
            default=30.0,
            help="--watch: seconds a target stays this host's without renewal (at least two "
            "polls); how long a dead host's targets wait for another host",
        )
        parser.add_argument("--engine", default="auto", choices=["auto", "transformers", "vllm"])
        parser.add_argument("--host", default="127.0.0.1", help="the address engines bind to")
        parser.add_argument(
            "--advertise-host",
            default="",
            help="the name the web hosts reach this host's engines by, written in their URL "
            "(default: --host; engines on 127.0.0.1 are reachable from this host only)",
        )
        parser.add_argument("--device", default="auto")
        parser.add_argument("--drain-timeout", type=float, default=600.0)
        parser.add_argument(
            "--kv-cache-tokens", type=int, default=16384, help="the engine's KV cache (tokens)"
        )
        parser.add_argument("--max-batch-tokens", type=int, default=2048)
        parser.add_argument("--log-dir", default="var/serving", help="the engines' logs")
        parser.add_argument("--canary-version", type=int, default=None)
        parser.add_argument("--canary-mode", choices=["off", "split", "shadow"], default=None)
        parser.add_argument("--canary-share", type=float, default=None)
        parser.add_argument("--requests-per-minute", type=int, default=None)
        parser.add_argument("--learn-from-traffic", choices=["on", "off"], default=None)

    def handle(self, *args, **options):
        logging.getLogger("models_registry.serving").setLevel(logging.INFO)
        if options["watch"]:
            return self._watch(options)
        if not options["project"]:
            raise CommandError("--project is required (or --watch)")
        project = project_by_ref(options["project"])
        if project is None:
            raise CommandError(f"no project {options['project']!r}")
        if options["configure"]:
            return self._settings(project, options)
        if options["version"] is None and not options["alias"]:
            options["alias"] = "champion"
        version = options["version"]
        if version is not None and not project.model_versions.filter(pk=version).exists():
            raise CommandError(f"no version {version} in {project.slug}")
        config = ServeConfig(
            project_id=project.pk, alias=options["alias"] or "", version_id=options["version"],
            engine=options["engine"], host=options["host"],
            advertise_host=options["advertise_host"], device=options["device"],
            drain_timeout_s=options["drain_timeout"], log_dir=Path(options["log_dir"]),
            kv_cache_tokens=options["kv_cache_tokens"],
            max_batch_tokens=options["max_batch_tokens"],
        )  # fmt: skip
        self.stdout.write(
            f"Serving {options['alias'] or 'version ' + str(options['version'])} of "
            f"{project.slug}; clients call /gateway/{project.pk}/v1/chat/completions"
        )
        Supervisor(config).run()

    def _watch(self, options):
        if options["watch_lease"] < 2 * options["watch_poll"]:
            raise CommandError("--watch-lease must be at least two --watch-poll long")
        log_dir = Path(options["log_dir"])
        try:
            lock = watch_lock(log_dir / "watch.lock")
        except AlreadyWatching as exc:
            raise CommandError(str(exc)) from exc
        serve = ServeConfig(
            project_id=0, host=options["host"], advertise_host=options["advertise_host"],
            drain_timeout_s=options["drain_timeout"], log_dir=log_dir,
            kv_cache_tokens=options["kv_cache_tokens"],
            max_batch_tokens=options["max_batch_tokens"],
        )  # fmt: skip
        self.stdout.write(
            "Serving every enabled serving target (the projects' Serving pages); Ctrl+C stops"
        )
        try:
            config = WatchConfig(
                poll_s=options["watch_poll"], lease_s=options["watch_lease"], serve=serve
            )
            Watcher(config).run()
        finally:
            lock.close()

    def _settings(self, project, options):
        canary = None
        if options["canary_version"] is not None:
            canary = ModelVersion.objects.filter(pk=options["canary_version"]).first()
            if canary is None:
                raise CommandError(f"no version {options['canary_version']}")
        learn = options["learn_from_traffic"]
        try:
            settings = services.serving_settings_update(
                project=project, canary_version=canary, canary_mode=options["canary_mode"],
                canary_share=options["canary_share"],
                requests_per_minute=options["requests_per_minute"],
                learn_from_traffic=None if learn is None else learn == "on",
            )  # fmt: skip
        except DomainError as exc:
            raise CommandError(f"{exc.message}: {getattr(exc, 'extra', {})}") from exc
        self.stdout.write(
            f"canary: {settings.canary_mode} {settings.canary_version_id} "
            f"share {settings.canary_share}; {settings.requests_per_minute} requests/min per key; "
            f"learn from traffic: {'on' if settings.learn_from_traffic else 'off'}"
        )
