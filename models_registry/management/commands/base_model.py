"""Prepare the embedded base model: SmolLM2-135M-Instruct, converted once to safetensors."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from rlhf.training.base_models import BaseModelUnavailable, ensure_smollm2


class Command(BaseCommand):
    help = "Convert the packaged SmolLM2-135M-Instruct GGUF to safetensors (once) and show it."

    def add_arguments(self, parser):
        parser.add_argument("--ensure", action="store_true", help="convert if not done yet")

    def handle(self, *args, ensure, **options):
        target = settings.TANDEM_MODEL_CACHE / "smollm2-135m"
        if not ensure and not (target / "tandem-manifest.json").is_file():
            raise CommandError(f"{target} is not prepared yet: run with --ensure")
        try:
            path = ensure_smollm2(settings.TANDEM_MODEL_CACHE)
        except BaseModelUnavailable as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Base model SmolLM2-135M-Instruct ready at {path}")
