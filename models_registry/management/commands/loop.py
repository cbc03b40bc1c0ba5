"""One whole round of the human-feedback loop: ``python manage.py loop --project demo [--tiny]``.

snapshot → reward model → DPO from the champion → candidate → responses → blind review tasks,
then prints what the round bought so far (``round_report``) and where the reviewer goes next.
See ``models_registry.loop``.
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from annotation.selectors import project_by_ref
from config.errors import DomainError
from models_registry.loop import loop_run
from models_registry.round_report import loop_round_lines, loop_round_report


class Command(BaseCommand):
    help = "Run one round of the loop: labels → reward model → DPO → candidate → review tasks."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project slug or id.")
        parser.add_argument(
            "--tiny",
            action="store_true",
            help="Tiny random models built from a config: seconds on a CPU (tests, smoke runs).",
        )
        parser.add_argument("--as", dest="actor", help="Recorded as the runs' launcher.")
        parser.add_argument(
            "--pin-test-prompts",
            type=int,
            default=0,
            metavar="N",
            help="Pin N prompts of the new snapshot's test split as the evaluation prompts "
            "(replacing earlier pins), so both versions answer prompts neither trained on.",
        )
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="Where the site is served."
        )

    def handle(self, *args, project, tiny, actor, base_url, pin_test_prompts, **options):
        found = project_by_ref(project)
        if found is None:
            raise CommandError(f"no project {project!r} (python manage.py seed_demo makes 'demo')")
        user = None
        if actor:
            user = get_user_model().objects.filter(username=actor).first()
            if user is None:
                raise CommandError(f"no user {actor!r}")
        try:
            outcome = loop_run(
                project=found,
                launched_by=user,
                tiny=tiny,
                say=self.stdout.write,
                pin_test_prompts=pin_test_prompts,
            )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        base = base_url.rstrip("/")
        candidate = outcome.candidate
        report = loop_round_report(outcome.review_round)
        self.stdout.write("\n".join(["", *loop_round_lines(report)]))
        self.stdout.write(
            f"\n{candidate.label} is in review: {len(outcome.review_round.task_ids)} blind "
            "pairwise tasks wait in the annotation queue.\n"
            f"  annotators label them at {base}{reverse('frontend:annotate', args=[found.pk])}\n"
            f"  the reviewer decides at {base}{reverse('models:decide', args=[candidate.pk])}\n"
            f"  lineage: {base}{reverse('models:version', args=[candidate.pk])}\n"
            f"  this round's report: "
            f"{base}{reverse('models:report', args=[candidate.pk])}"
        )
