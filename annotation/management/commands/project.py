"""Manage projects from the command line: create, add members, import files, show progress."""

import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation import importers, selectors, services
from annotation.models import Project
from annotation.roles import Role
from config.errors import DomainError


class Command(BaseCommand):
    help = "Projects: create, member, import, progress."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create")
        create.add_argument("name")
        create.add_argument("--slug")
        create.add_argument("--owner", required=True, help="username of the first admin")
        create.add_argument("--overlap", type=int, default=1)
        member = sub.add_parser("member")
        member.add_argument("slug")
        member.add_argument("username")
        member.add_argument("role", choices=Role.values)
        imp = sub.add_parser("import")
        imp.add_argument("slug")
        imp.add_argument("file")
        imp.add_argument("--kind", choices=importers.IMPORT_KINDS, required=True)
        imp.add_argument("--annotator-name", help="who labelled an imported preference file")
        imp.add_argument("--as-user", help="recorded as the importer (default: first admin)")
        progress = sub.add_parser("progress")
        progress.add_argument("slug")

    def _project(self, slug) -> Project:
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"no project with slug {slug!r}")
        return project

    def _user(self, username):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        return user

    def handle(self, *args, action, **opts):
        try:
            getattr(self, f"handle_{action}")(**opts)
        except DomainError as exc:
            raise CommandError(exc.message) from None

    def handle_create(self, name, slug, owner, overlap, **_):
        project = services.project_create(
            name=name, slug=slug, created_by=self._user(owner), overlap=overlap
        )
        self.stdout.write(f"created project {project.slug} (id {project.pk})")

    def handle_member(self, slug, username, role, **_):
        services.membership_set(project=self._project(slug), user=self._user(username), role=role)
        self.stdout.write(f"{username} is {role} in {slug}")

    def handle_import(self, slug, file, kind, annotator_name, as_user, **_):
        project = self._project(slug)
        user = self._user(as_user) if as_user else (
            project.memberships.filter(role=Role.ADMIN).order_by("id").first().user
        )  # fmt: skip
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"{file} is not a file")
        batch = importers.import_file(
            project=project, data=path.read_bytes(), filename=path.name, kind=kind,
            created_by=user, annotator_name=annotator_name,
        )  # fmt: skip
        self.stdout.write(json.dumps({"import": batch.pk, **batch.counts}))

    def handle_progress(self, slug, **_):
        self.stdout.write(json.dumps(selectors.project_progress(self._project(slug))))
