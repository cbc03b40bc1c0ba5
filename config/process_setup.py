"""Set-up for worker processes that the platform starts itself (``spawn`` pools).

A spawned process starts clean: it has the parent's environment but not Django's app registry.
The snapshot pipeline's workers unpickle label shards from ``rlhf.snapshots.readers``, which imports
Django models, so their pool runs this first. This module imports nothing from Django at the
top, so unpickling the initializer itself needs no set-up.
"""

import os


def django_worker_setup() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
