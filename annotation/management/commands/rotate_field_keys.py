"""Re-encrypt every field encrypted at rest under the first key of TANDEM_FIELD_KEYS."""

import json

from django.core.management.base import BaseCommand, CommandError

from annotation.services.field_keys import field_keys_rotate
from config.fieldcrypt import FieldKeyError


class Command(BaseCommand):
    help = (
        "Key rotation: with the new key first in TANDEM_FIELD_KEYS and the old ones after it, "
        "re-encrypt every stored value under the new key; then the old keys can be dropped "
        "(docs/security.md). Prints the rows rewritten per table as JSON."
    )

    def handle(self, **_):
        try:
            counts = field_keys_rotate()
        except FieldKeyError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(counts))
