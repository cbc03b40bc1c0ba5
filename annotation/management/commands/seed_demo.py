"""Create the demo project, one user per role, and tasks from the bundled demo prompts.

Safe to run again: existing users keep their (printed) passwords and imports deduplicate.
"""

import json
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from annotation import importers, services
from annotation.models import Project
from annotation.roles import Role

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"
USERS = [
    ("admin", Role.ADMIN),
    ("annotator1", Role.ANNOTATOR),
    ("annotator2", Role.ANNOTATOR),
    ("reviewer", Role.REVIEWER),
    ("engineer", Role.ENGINEER),
]


class Command(BaseCommand):
    help = "Create (or refresh) the demo project with users for each role and tasks to label."

    def add_arguments(self, parser):
        parser.add_argument("--slug", default="demo")
        parser.add_argument(
            "--credentials",
            default=str(settings.VAR_DIR / "demo-credentials.json"),
            help="Where the generated demo passwords are kept (readable by you only).",
        )

    def handle(self, *args, slug, credentials, **options):
        path = Path(credentials)
        stored = json.loads(path.read_text()) if path.exists() else {}
        User = get_user_model()
        with transaction.atomic():
            users = {}
            for username, _role in USERS:
                user = User.objects.filter(username=username).first()
                if user is None or username not in stored:
                    password = secrets.token_urlsafe(12)
                    if user is None:
                        user = User.objects.create_user(username, password=password)
                    else:
                        user.set_password(password)
                        user.save(update_fields=["password"])
                    stored[username] = password
                if username == "admin" and not user.is_staff:
                    user.is_staff = user.is_superuser = True
                    user.save(update_fields=["is_staff", "is_superuser"])
                users[username] = user
            project = Project.objects.filter(slug=slug).first()
            if project is None:
                project = services.project_create(
                    name="Demo: helpful and harmless answers",
                    slug=slug,
                    created_by=users["admin"],
                    guidelines=(DEMO_DIR / "guidelines.md").read_text(),
                    overlap=2,
                )
            for username, role in USERS:
                services.membership_set(project=project, user=users[username], role=role)
            data = (DEMO_DIR / "demo_tasks.jsonl").read_bytes()
            batch = importers.import_file(
                project=project,
                data=data,
                filename="demo_tasks.jsonl",
                kind="responses",
                created_by=users["admin"],
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2))
        os.chmod(path, 0o600)
        self.stdout.write(
            f"Demo project '{project.name}' (slug {project.slug}): "
            f"{project.tasks.count()} tasks ({batch.counts['tasks_created']} new)."
        )
        self.stdout.write("Log in with one of these demo accounts:")
        for username, role in USERS:
            self.stdout.write(f"  {role:<10} {username:<11} password: {stored[username]}")
