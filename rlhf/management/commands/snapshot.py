"""Dataset snapshots from the command line (an operator's tool: no per-user access gate).

python manage.py snapshot create --project harmless --policy majority --threshold 0.8
python manage.py snapshot create --project 3 --config pipeline.json --inline
python manage.py snapshot list --project harmless
python manage.py snapshot show 12 [--card]
python manage.py snapshot export 12 --name short --max-prompt-chars 4000
python manage.py snapshot export 12 --out /data/hh --max-prompt-tokens 1024 --tokenizer DIR

``create --inline`` and ``export`` show their progress on stderr: a bar on a terminal, plain
lines in a log.
"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotation.models import Project
from annotation.selectors import project_by_ref
from config.errors import DomainError
from config.progress import CommandProgress
from rlhf.models import DatasetSnapshot
from rlhf.snapshots import services


class Command(BaseCommand):
    help = "Create, list, show and export dataset snapshots."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Snapshot a project's labels.")
        create.add_argument("--project", required=True, help="Project id or slug.")
        create.add_argument("--name", default="")
        create.add_argument("--config", type=Path, help="PipelineConfig as JSON.")
        create.add_argument("--kinds", default="", help="Comma-separated label kinds.")
        create.add_argument(
            "--policy", help="all | majority | unanimous | min_agreement | dawid_skene"
        )
        create.add_argument("--min-agreement", type=float)
        create.add_argument("--exclude-annotators", default="", help="Comma-separated ids.")
        create.add_argument("--threshold", type=float, help="Near-duplicate Jaccard threshold.")
        create.add_argument("--no-near-dup", action="store_true")
        create.add_argument("--seed", type=int, help="Split seed.")
        create.add_argument(
            "--inline", action="store_true", help="Build now in this process (no worker)."
        )
        create.add_argument("--workers", type=int, help="Worker processes for --inline.")

        listing = sub.add_parser("list", help="A project's snapshots.")
        listing.add_argument("--project", required=True)

        show = sub.add_parser("show", help="A snapshot's summary, report or data card.")
        show.add_argument("snapshot", type=int)
        show.add_argument("--card", action="store_true")
        show.add_argument("--report", action="store_true")

        export = sub.add_parser("export", help="Write an export of a ready snapshot.")
        export.add_argument("snapshot", type=int)
        export.add_argument("--name", help="Under the snapshot's exports/ folder.")
        export.add_argument("--out", type=Path, help="Or any folder.")
        export.add_argument("--max-prompt-chars", type=int)
        export.add_argument("--max-prompt-tokens", type=int)
        export.add_argument("--tokenizer", help="Tokenizer folder for --max-prompt-tokens.")

    def handle(self, *args, action, **options):
        try:
            getattr(self, f"_{action}")(**options)
        except DomainError as exc:
            raise CommandError(exc.message) from None

    def _project(self, ref: str) -> Project:
        project = project_by_ref(ref)
        if project is None:
            raise CommandError(f"no project {ref!r}")
        return project

    def _snapshot(self, pk: int) -> DatasetSnapshot:
        snapshot = DatasetSnapshot.objects.filter(pk=pk).first()
        if snapshot is None:
            raise CommandError(f"no snapshot {pk}")
        return snapshot

    def _create(self, *, project, name, config, kinds, inline, workers, **options):
        data = json.loads(config.read_text()) if config else {}
        for section, key, value in (
            ("aggregation", "policy", options["policy"]),
            ("aggregation", "min_agreement", options["min_agreement"]),
            ("dedup", "threshold", options["threshold"]),
            ("dedup", "near", False if options["no_near_dup"] else None),
            ("split", "seed", options["seed"]),
        ):
            if value is not None:
                data.setdefault(section, {})[key] = value
        if options["exclude_annotators"]:
            data.setdefault("aggregation", {})["exclude_annotators"] = [
                int(x) for x in options["exclude_annotators"].split(",")
            ]
        kinds = [k for k in kinds.split(",") if k]
        project = self._project(project)
        if inline:
            # Build here rather than in a worker: create without the enqueue hook firing
            # (the transaction is rolled back only on error) and run the job body.
            with transaction.atomic():
                snapshot = services.snapshot_create(
                    project=project, created_by=None, name=name, config=data, kinds=kinds,
                    enqueue=False,
                )  # fmt: skip
            with CommandProgress(self.stderr, desc=f"snapshot {snapshot.pk}", unit="label") as bar:
                snapshot = services.snapshot_build(
                    snapshot_id=snapshot.pk,
                    workers=workers,
                    on_progress=lambda stage, done, total: bar.update(done, total, stage=stage),
                )
            self.stdout.write(self._summary(snapshot))
            return
        with transaction.atomic():
            snapshot = services.snapshot_create(
                project=project, created_by=None, name=name, config=data, kinds=kinds
            )
        self.stdout.write(f"snapshot {snapshot.pk} queued (run `manage.py db_worker` to build)")

    def _list(self, *, project, **options):
        for snapshot in DatasetSnapshot.objects.filter(project=self._project(project)):
            self.stdout.write(self._summary(snapshot))

    def _show(self, *, snapshot, card, report, **options):
        snapshot = self._snapshot(snapshot)
        if card:
            self.stdout.write(snapshot.data_card)
        elif report:
            self.stdout.write(json.dumps(snapshot.report, indent=2))
        else:
            self.stdout.write(self._summary(snapshot))

    def _export(self, *, snapshot, name, out, max_prompt_chars, max_prompt_tokens, tokenizer, **o):
        count_tokens = None
        if max_prompt_tokens:
            if not tokenizer:
                raise CommandError("--max-prompt-tokens needs --tokenizer")
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(tokenizer)
            count_tokens = lambda text: len(tok(text, add_special_tokens=False).input_ids)  # noqa: E731
        snapshot = self._snapshot(snapshot)
        with CommandProgress(self.stderr, desc=f"export {snapshot.pk}", unit="row") as bar:
            manifest = services.snapshot_export(
                snapshot=snapshot,
                name=name,
                export_dir=out,
                max_prompt_chars=max_prompt_chars,
                max_prompt_tokens=max_prompt_tokens,
                count_tokens=count_tokens,
                on_progress=lambda stage, done, total: bar.update(done, total, stage=stage),
            )
        services.snapshot_export_audit(
            snapshot=snapshot,
            actor=None,
            details={"via": "command", "name": name, "export_dir": str(out) if out else None},
        )
        self.stdout.write(json.dumps({k: manifest[k] for k in ("shapes", "truncation")}))

    @staticmethod
    def _summary(snapshot: DatasetSnapshot) -> str:
        rows = {shape: sum(splits.values()) for shape, splits in snapshot.row_counts.items()}
        return (
            f"snapshot {snapshot.pk} [{snapshot.status}] project={snapshot.project_id} "
            f"labels={snapshot.label_count} rows={json.dumps(rows)} "
            f"sha256={snapshot.content_sha256 or '-'}"
        )
