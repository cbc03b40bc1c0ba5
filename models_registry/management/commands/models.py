"""``python manage.py models ...``: the registry from a terminal.

    models list --project demo
    models register-base --project demo [--folder PATH] [--name NAME] [--kind reward] --as alice
    models register --project demo --folder PATH --name NAME [--parent ID] --as alice
    models show ID [--card]
    models transition ID in_review|approved|rejected|archived --reason "..." --as rita
    models alias --project demo [--name champion] --version ID --reason "..." --as rita
    models rollback --project demo [--name champion] --reason "..." --as rita
    models audit --project demo
    models leaderboard --project demo
    models generate ID --prompts all|N [--max-new-tokens 64 --temperature 0.7 --seed 0] [--now]
    models verify ID
    models export ID --out DIR [--adapter-only] [--as alice]   # an export bundle (see bundles)
    models pin-eval --project demo --from-file prompts.jsonl | --prompt-ids 3 4 | --first 20
    models review-start ID [--as rita]       # a candidate's blind review round, by hand

``register-base`` names a project admin (``--as``): a base model enters every lineage and may
become champion without review, so the access gate (``Capability.MANAGE``) decides as on the API.

Every change names a person (``--as``) because every change lands in the audit log. The
command calls the same services as the API; it does not check project roles (whoever runs it
already holds the server).
"""

from __future__ import annotations

import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError
from django.http import Http404

from annotation.access import access_project
from annotation.models import Project, Prompt
from annotation.roles import Capability
from annotation.selectors import project_by_ref
from config.errors import DomainError
from config.progress import CommandProgress
from models_registry import (
    bundles,
    generation,
    review_cycle,
    review_settings,
    selectors,
    services,
)
from models_registry.models import ModelVersion, VersionKind, VersionState


class Command(BaseCommand):
    help = "Model registry: register, review, promote, roll back, generate."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)

        def with_project(p):
            p.add_argument("--project", required=True, help="project slug or id")
            return p

        def with_actor(p):
            p.add_argument("--as", dest="actor", required=True, help="username doing this")
            return p

        with_project(sub.add_parser("list"))
        base = with_actor(with_project(sub.add_parser("register-base")))
        base.add_argument("--folder", type=Path, help="local HF folder (default: SmolLM2)")
        base.add_argument("--name")
        base.add_argument("--kind", choices=VersionKind.values, default=VersionKind.POLICY)
        reg = with_actor(with_project(sub.add_parser("register")))
        reg.add_argument("--folder", type=Path, required=True)
        reg.add_argument("--name", required=True)
        reg.add_argument("--kind", choices=VersionKind.values, default=VersionKind.POLICY)
        reg.add_argument("--parent", type=int)
        reg.add_argument("--launched-by", help="username who launched the training run")
        reg.add_argument("--config", type=Path, help="JSON file with the training config")
        show = sub.add_parser("show")
        show.add_argument("version", type=int)
        show.add_argument("--card", action="store_true", help="print the model card")
        tr = with_actor(sub.add_parser("transition"))
        tr.add_argument("version", type=int)
        tr.add_argument("state", choices=[s for s in VersionState.values if s != "candidate"])
        tr.add_argument("--reason", default="")
        tr.add_argument(
            "--without-evaluation",
            action="store_true",
            help="approved only: approve although the evaluation is not in (audited)",
        )
        alias = with_actor(with_project(sub.add_parser("alias")))
        alias.add_argument("--name", default=selectors.CHAMPION)
        alias.add_argument("--version", type=int, required=True)
        alias.add_argument("--reason", required=True)
        rb = with_actor(with_project(sub.add_parser("rollback")))
        rb.add_argument("--name", default=selectors.CHAMPION)
        rb.add_argument("--reason", required=True)
        with_project(sub.add_parser("audit"))
        with_project(sub.add_parser("leaderboard"))
        gen = sub.add_parser("generate")
        gen.add_argument("version", type=int)
        gen.add_argument("--prompts", default="all", help="'all' or the first N prompts")
        gen.add_argument("--max-new-tokens", type=int, default=128)
        gen.add_argument("--temperature", type=float, default=0.7)
        gen.add_argument("--top-p", type=float, default=0.95)
        gen.add_argument("--seed", type=int, default=0)
        gen.add_argument("--batch-size", type=int, default=16)
        gen.add_argument("--now", action="store_true", help="run here instead of in a worker")
        gen.add_argument("--as", dest="actor")
        pin = with_project(sub.add_parser("pin-eval", help="pin evaluation prompts"))
        pin.add_argument(
            "--from-file", type=Path, help='JSONL: {"prompt": "..."} or {"messages": [...]}'
        )
        pin.add_argument("--prompt-ids", type=int, nargs="*", default=[])
        pin.add_argument("--first", type=int, help="pin the project's first N prompts")
        pin.add_argument("--replace", action="store_true", help="drop the earlier pins")
        start = sub.add_parser("review-start", help="start a candidate's review round")
        start.add_argument("version", type=int)
        start.add_argument("--as", dest="actor")
        verify = sub.add_parser("verify")
        verify.add_argument("version", type=int)
        export = sub.add_parser("export", help="write a version's export bundle")
        export.add_argument("version", type=int)
        export.add_argument("--out", type=Path, required=True, help="a new or empty folder")
        export.add_argument(
            "--adapter-only", action="store_true", help="a LoRA version: the adapter, not merged"
        )
        export.add_argument("--as", dest="actor", help="who exports it (for the audit log)")

    def handle(self, *args, action, **options):
        try:
            getattr(self, "do_" + action.replace("-", "_"))(**options)
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc

    # ----------------------------------------------------------------------------- helpers

    def _project(self, ref: str) -> Project:
        project = project_by_ref(ref)
        if project is None:
            raise CommandError(f"no project {ref!r}")
        return project

    def _user(self, username: str | None):
        if username is None:
            return None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        return user

    def _version(self, version_id: int) -> ModelVersion:
        version = ModelVersion.objects.select_related("project").filter(pk=version_id).first()
        if version is None:
            raise CommandError(f"no model version {version_id}")
        return version

    def _line(self, version: ModelVersion) -> str:
        aliases = selectors.aliases_of(version)
        tag = f"  [{', '.join(aliases)}]" if aliases else ""
        parent = f"  parent={version.parent_id}" if version.parent_id else ""
        return (
            f"{version.pk:>5}  {version.label:<32} {version.kind:<7} {version.state:<10}"
            f"{parent}{tag}"
        )

    # ----------------------------------------------------------------------------- actions

    def do_list(self, project, **_):
        for version in selectors.model_version_list(project=self._project(project)):
            self.stdout.write(self._line(version))

    def do_register_base(self, project, actor, folder, name, kind, **_):
        project_obj, user = self._project(project), self._user(actor)
        try:
            access_project(user, project_obj.pk, capability=Capability.MANAGE)
        except (Http404, PermissionDenied):
            raise CommandError(
                f"{actor!r} is not an admin of project {project_obj.slug!r}: only project admins "
                "register base models"
            ) from None
        version = services.model_version_register_base(
            project=project_obj,
            registered_by=user,
            folder=folder,
            name=name,
            kind=kind,
        )
        self.stdout.write(self._line(version))

    def do_register(self, project, actor, folder, name, kind, parent, launched_by, config, **_):
        project_obj = self._project(project)
        parent_obj = self._version(parent) if parent else None
        version = services.model_version_register(
            project=project_obj,
            folder=folder,
            name=name,
            kind=kind,
            registered_by=self._user(actor),
            launched_by=self._user(launched_by),
            parent=parent_obj,
            config=json.loads(config.read_text()) if config else None,
        )
        self.stdout.write(self._line(version))

    def do_show(self, version, card, **_):
        v = self._version(version)
        if card:
            self.stdout.write(v.model_card)
            return
        self.stdout.write(self._line(v))
        self.stdout.write(f"       source {v.source}\n       folder {v.artifact_dir}")
        for artifact in v.artifacts.order_by("path"):
            self.stdout.write(f"       {artifact.sha256[:16]}  {artifact.path}")

    def do_transition(self, version, state, reason, actor, without_evaluation=False, **_):
        v, user = self._version(version), self._user(actor)
        if state == VersionState.APPROVED:
            v = services.model_version_approve(
                version=v, actor=user, reason=reason, without_evaluation=without_evaluation
            )
        else:
            v = services.model_version_transition(
                version=v, actor=user, to_state=state, reason=reason
            )
        self.stdout.write(self._line(v))

    def do_alias(self, project, name, version, reason, actor, **_):
        alias = services.alias_set(
            project=self._project(project),
            name=name,
            version=self._version(version),
            actor=self._user(actor),
            reason=reason,
        )
        self.stdout.write(f"{alias.name} -> {alias.version.label}")

    def do_rollback(self, project, name, reason, actor, **_):
        alias = services.alias_rollback(
            project=self._project(project), name=name, actor=self._user(actor), reason=reason
        )
        self.stdout.write(f"{alias.name} -> {alias.version.label}")

    def do_audit(self, project, **_):
        for e in selectors.audit_events(project=self._project(project)):
            change = f"{e.from_state or '-'}->{e.to_state}" if e.to_state else e.alias
            self.stdout.write(
                f"{e.pk:>5}  {e.created_at:%Y-%m-%d %H:%M:%S}  {e.actor_name:<16} "
                f"{e.action:<11} {e.version.label:<24} {change}  {e.reason}"
            )

    def do_leaderboard(self, project, **_):
        for item in selectors.leaderboard(project=self._project(project)):
            row = item["row"]
            self.stdout.write(
                f"{row.rank:>3}  {item['version'].label:<32} {row.rating:7.1f} "
                f"[{row.rating_ci_low:7.1f}, {row.rating_ci_high:7.1f}]  "
                f"{row.wins}W {row.losses}L {row.ties}T"
            )

    def do_generate(self, version, prompts, now, actor, **options):
        v = self._version(version)
        prompt_ids = list(
            Prompt.objects.filter(project=v.project).order_by("id").values_list("pk", flat=True)
        )
        if prompts != "all":
            prompt_ids = prompt_ids[: int(prompts)]
        config = {
            "max_new_tokens": options["max_new_tokens"],
            "temperature": options["temperature"],
            "top_p": options["top_p"],
            "seed": options["seed"],
            "batch_size": options["batch_size"],
        }
        job = generation.generation_job_create(
            version=v, prompt_ids=prompt_ids, config=config, created_by=self._user(actor)
        )
        if now:
            job = generation.generation_job_run(job_id=job.pk)
            self.stdout.write(
                f"job {job.pk}: {job.status}, {job.responses_created} new responses ({job.backend})"
            )
        else:
            self.stdout.write(f"job {job.pk} queued on 'generation' ({job.total} prompts)")

    def do_pin_eval(self, project, from_file, prompt_ids, first, replace, **_):
        project_obj = self._project(project)
        ids = list(prompt_ids)
        if first:
            ids += list(
                Prompt.objects.filter(project=project_obj)
                .order_by("id")
                .values_list("pk", flat=True)[:first]
            )
        conversations = []
        if from_file:
            for number, line in enumerate(from_file.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise CommandError(f"{from_file}:{number}: not JSON ({exc})") from None
                if isinstance(row, dict) and isinstance(row.get("prompt"), str):
                    conversations.append([{"role": "user", "content": row["prompt"]}])
                elif isinstance(row, dict) and "messages" in row:
                    conversations.append(row["messages"])
                else:
                    raise CommandError(f"{from_file}:{number}: expected prompt or messages")
        pinned = review_settings.eval_prompts_pin(
            project=project_obj, prompt_ids=ids, conversations=conversations, replace=replace
        )
        self.stdout.write(f"{len(pinned)} pinned evaluation prompts in {project_obj.slug}")

    def do_review_start(self, version, actor, **_):
        loop_round = review_cycle.loop_round_start_review(
            version=self._version(version), actor=self._user(actor)
        )
        self.stdout.write(
            f"review round {loop_round.pk} queued: {len(loop_round.prompt_ids)} prompts against "
            f"{loop_round.opponent.label}"
        )

    def do_verify(self, version, **_):
        mismatched = services.model_version_verify_artifacts(version=self._version(version))
        if mismatched:
            raise CommandError("changed since registration: " + ", ".join(mismatched))
        self.stdout.write("all artifacts match their recorded sha256")

    def do_export(self, version, out, adapter_only, actor, **_):
        v, user = self._version(version), self._user(actor)
        with CommandProgress(self.stderr, desc=f"export {v.label}", unit="step") as bar:
            folder = bundles.model_version_bundle(
                version=v,
                out_dir=out,
                adapter_only=adapter_only,
                on_progress=lambda stage, done, total: bar.update(done, total, stage=stage),
            )
        mode = bundles.bundle_mode(v, adapter_only=adapter_only)
        bundles.model_version_export_audit(version=v, mode=mode, actor=user, out=folder)
        files = (folder / bundles.MANIFEST).read_text().count("\n")
        self.stdout.write(
            f"{v.label}: {mode} bundle in {folder} ({files} files in {bundles.MANIFEST}; "
            f"check with: cd {folder} && sha256sum -c {bundles.MANIFEST})"
        )
