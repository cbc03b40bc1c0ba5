"""The platform's worker: django-tasks' ``db_worker`` plus the periodic-job scheduler."""

import os

from django.utils.autoreload import DJANGO_AUTORELOAD_ENV
from django_tasks_db.management.commands.db_worker import Command as DbWorkerCommand

from annotation.periodic import periodic_scheduler_start


class Command(DbWorkerCommand):
    help = (
        "Run queued jobs (every option of db_worker) and enqueue the periodic ones when they "
        "are due (annotation.periodic: retention daily); several workers enqueue each once."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--no-periodic",
            action="store_true",
            help="Do not enqueue periodic jobs from this worker.",
        )

    def handle(self, *args, no_periodic=False, **options):
        # With --reload the parent only watches files: the scheduler runs where the jobs do.
        runs_jobs = not options.get("reload") or os.environ.get(DJANGO_AUTORELOAD_ENV) == "true"
        if not no_periodic and runs_jobs:
            periodic_scheduler_start()
        return super().handle(*args, **options)
