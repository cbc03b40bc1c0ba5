"""Apply every project's retention settings once, now (the workers also do it daily)."""

import json

from django.core.management.base import BaseCommand

from annotation.services.retention import retention_apply_all


class Command(BaseCommand):
    help = (
        "Clear expired label rationales and delete expired raw texts that never became data, "
        "per each project's privacy settings; each change is recorded in the data audit log. "
        "Prints {project id: counts} as JSON."
    )

    def handle(self, **_):
        self.stdout.write(json.dumps(retention_apply_all()))
