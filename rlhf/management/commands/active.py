"""Rank a project's open pairs for the next annotation round (an operator's tool, like ``loop``).

python manage.py active --project harmless --strategy uncertainty --reward-model DIR
python manage.py active --project 3 --strategy mix --random-share 0.3 --reward-model DIR
python manage.py active --project 3 --strategy random      # no model needed
"""

from django.core.management.base import BaseCommand, CommandError

from annotation.selectors import project_by_ref
from rlhf.active_selection import task_priorities_assign
from rlhf.training.active import STRATEGIES, SelectionConfig


class Command(BaseCommand):
    help = "Score open, unlabelled pairwise tasks with the reward model and set their priority."

    def add_arguments(self, parser):
        defaults = SelectionConfig()
        parser.add_argument("--project", required=True, help="project id or slug")
        parser.add_argument("--strategy", choices=STRATEGIES, default=defaults.strategy)
        parser.add_argument("--reward-model", default="", help="reward model folder")
        parser.add_argument("--random-share", type=float, default=defaults.random_share)
        parser.add_argument("--ensemble-size", type=int, default=defaults.ensemble_size)
        parser.add_argument("--seed", type=int, default=defaults.seed)
        parser.add_argument("--device", default="cpu")

    def handle(self, *args, project, strategy, reward_model, **options):
        found = project_by_ref(project)
        if found is None:
            raise CommandError(f"no project {project!r}")
        try:
            result = task_priorities_assign(
                project=found,
                strategy=strategy,
                reward_model_folder=reward_model,
                random_share=options["random_share"],
                ensemble_size=options["ensemble_size"],
                seed=options["seed"],
                device=options["device"],
            )
        except ValueError as error:
            raise CommandError(str(error)) from error
        model = f" with {result.reward_model}" if result.reward_model else ""
        self.stdout.write(f"{result.tasks} open pairs ranked by {result.strategy}{model}")
