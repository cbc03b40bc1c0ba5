"""Training runs from the command line (an operator's tool: no per-user access gate).

python manage.py train reward --project harmless --snapshot 3 --set max_steps=50 --follow
python manage.py train dpo --project 1 --snapshot 3 --config run.json --base-model-version 7
python manage.py train list --project harmless
python manage.py train show 12 [--log]
python manage.py train cancel 12 | retry 12
python manage.py train reap              # re-queue runs whose worker stopped heartbeating
python manage.py train schema reward     # every config field with its default and meaning
python manage.py train execute 12        # run the queued attempt here instead of in a worker

A launched run is executed by a worker (``manage.py db_worker --queue-name training``).
``--follow`` and ``follow`` print the run's log and show its steps on stderr: a bar on a
terminal, plain lines in a log.
"""

import json
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from annotation.selectors import project_by_ref
from config.errors import DomainError
from config.progress import CommandProgress
from rlhf.models import DatasetSnapshot, RunStatus, TrainingRun
from rlhf.runs import services as run_services
from rlhf.runs import versions as run_versions
from rlhf.training.config import METHODS, config_schema

FOLLOW_POLL_S = 2.0


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


class Command(BaseCommand):
    help = "Launch, list, show, cancel, retry and reap training runs."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        for method in METHODS:
            launch = sub.add_parser(method, help=f"Launch a {method} run.")
            launch.add_argument("--project", required=True, help="Project id or slug.")
            launch.add_argument("--snapshot", required=True, type=int, help="A ready snapshot.")
            launch.add_argument("--config", type=Path, help="Config fields as a JSON object.")
            launch.add_argument(
                "--set",
                action="append",
                default=[],
                metavar="FIELD=VALUE",
                help="One config field (VALUE as JSON, else text); repeatable.",
            )
            launch.add_argument("--name", default="")
            launch.add_argument("--base-model-version", type=int, help="A registered version.")
            launch.add_argument("--base-model-run", type=int, help="A succeeded run's model.")
            launch.add_argument("--reward-model-version", type=int)
            launch.add_argument("--reward-model-run", type=int)
            launch.add_argument("--max-attempts", type=int, default=3)
            launch.add_argument("--as-user", help="Recorded as the launcher.")
            launch.add_argument("--follow", action="store_true", help="Print the log until done.")

        listing = sub.add_parser("list", help="A project's runs.")
        listing.add_argument("--project", required=True)
        show = sub.add_parser("show", help="A run's record as JSON.")
        show.add_argument("run", type=int)
        show.add_argument("--log", action="store_true", help="The log tail instead.")
        for action in ("cancel", "retry", "follow", "execute"):
            sub.add_parser(action).add_argument("run", type=int)
        sub.add_parser("reap", help="Re-queue runs whose worker stopped heartbeating.")
        schema = sub.add_parser("schema", help="A method's config fields.")
        schema.add_argument("method", choices=METHODS)

    def handle(self, *args, action, **options):
        try:
            if action in METHODS:
                self._launch(action, **options)
            else:
                getattr(self, f"_{action}")(**options)
        except DomainError as exc:
            fields = exc.extra.get("fields")
            detail = "".join(f"\n  {k}: {v}" for k, v in (fields or {}).items())
            raise CommandError(exc.message + detail) from None

    def _project(self, ref: str) -> Project:
        project = project_by_ref(ref)
        if project is None:
            raise CommandError(f"no project {ref!r}")
        return project

    def _run(self, pk: int) -> TrainingRun:
        run = TrainingRun.objects.filter(pk=pk).first()
        if run is None:
            raise CommandError(f"no run {pk}")
        return run

    def _version(self, pk: int | None):
        if pk is None:
            return None
        version = run_versions.version_get(version_id=pk)
        if version is None:
            raise CommandError(f"no model version {pk}")
        return version

    def _launch(self, method, *, project, snapshot, config, name, max_attempts, **options):
        project = self._project(project)
        found = DatasetSnapshot.objects.filter(pk=snapshot).first()
        if found is None:
            raise CommandError(f"no snapshot {snapshot}")
        values = json.loads(config.read_text()) if config else {}
        for item in options["set"]:
            key, sep, text = item.partition("=")
            if not sep:
                raise CommandError(f"--set {item!r}: expected FIELD=VALUE")
            values[key.strip()] = _value(text)
        user = None
        if options["as_user"]:
            user = get_user_model().objects.filter(username=options["as_user"]).first()
            if user is None:
                raise CommandError(f"no user {options['as_user']!r}")
        run = run_services.training_run_launch(
            project=project,
            created_by=user,
            method=method,
            snapshot=found,
            config=values,
            name=name,
            base_model_version=self._version(options["base_model_version"]),
            base_model_run=options["base_model_run"] and self._run(options["base_model_run"]),
            reward_model_version=self._version(options["reward_model_version"]),
            reward_model_run=options["reward_model_run"] and self._run(options["reward_model_run"]),
            max_attempts=max_attempts,
        )
        self.stdout.write(f"queued run {run.pk} ({run.method_title})")
        if options["follow"]:
            self._follow(run=run.pk)

    def _list(self, *, project, **_):
        for run in TrainingRun.objects.filter(project=self._project(project)).defer("log_tail"):
            step = run.progress.get("step", 0)
            total = run.progress.get("total_steps") or "?"
            self.stdout.write(
                f"{run.pk:>5}  {run.method:<6} {run.status:<9} attempt {run.attempt}  "
                f"step {step}/{total}  {run.name}"
            )

    def _show(self, *, run, log, **_):
        found = self._run(run)
        if log:
            self.stdout.write(found.log_tail)
            return
        from rlhf.runs.api.serializers import TrainingRunDetailSerializer

        data = TrainingRunDetailSerializer(found).data
        data.pop("log_tail")
        self.stdout.write(json.dumps(data, indent=2, default=str))

    def _cancel(self, *, run, **_):
        found = run_services.training_run_cancel(run=self._run(run), cancelled_by=None)
        self.stdout.write(f"run {found.pk}: {found.status}" + (" (stopping)" * found.is_active))

    def _retry(self, *, run, **_):
        found = run_services.training_run_retry(run=self._run(run), retried_by=None)
        self.stdout.write(f"run {found.pk} queued again as attempt {found.attempt}")

    def _reap(self, **_):
        released = run_services.training_run_requeue_stale()
        self.stdout.write(f"released {len(released)} run(s): {released}")

    def _schema(self, *, method, **_):
        for field in config_schema(method):
            extra = {k: field[k] for k in ("choices", "min", "max") if k in field}
            self.stdout.write(f"{field['name']} = {json.dumps(field['default'])}  {extra or ''}")
            self.stdout.write(f"    {field['help']}")

    def _execute(self, *, run, **_):
        from rlhf.runs.execution import training_run_execute

        found = self._run(run)
        outcome = training_run_execute(run_id=found.pk, attempt=found.attempt)
        self.stdout.write(f"run {found.pk} attempt {found.attempt}: {outcome}")

    def _follow(self, *, run, **_):
        last = None
        with CommandProgress(self.stderr, desc=f"run {run}", unit="step", out=self.stdout) as bar:
            while True:
                found = self._run(run)
                lines = found.log_tail.splitlines()
                # The tail is cut from the front as it grows: print what follows the last
                # line shown.
                start = len(lines) - lines[::-1].index(last) if last in lines else 0
                for line in lines[start:]:
                    bar.write(line)
                last = lines[-1] if lines else last
                progress = found.progress or {}
                bar.update(
                    int(progress.get("step") or 0),
                    progress.get("total_steps") or None,
                    stage=f"{found.status} attempt {found.attempt}",
                )
                if found.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
                    bar.close()
                    self.stdout.write(f"run {found.pk}: {found.status}")
                    return
                time.sleep(FOLLOW_POLL_S)
