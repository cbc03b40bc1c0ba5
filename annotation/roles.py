"""Project roles and what each may do. One table, read by every access gate."""

from django.db import models


class Role(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"
    REVIEWER = "reviewer", "Reviewer"
    ENGINEER = "engineer", "ML engineer"
    ADMIN = "admin", "Admin"


class Capability(models.TextChoices):
    VIEW = "view"  # see the project, its guidelines and own progress
    ANNOTATE = "annotate"  # claim tasks and submit labels
    REVIEW = "review"  # adjudicate labels, review and approve model versions
    DATA = "data"  # read all labels, snapshots and exports
    TRAIN = "train"  # launch training runs, register and generate with models
    MANAGE = "manage"  # settings, members, imports


ROLE_CAPABILITIES: dict[str, frozenset[str]] = {
    Role.ANNOTATOR: frozenset({Capability.VIEW, Capability.ANNOTATE}),
    Role.REVIEWER: frozenset(
        {Capability.VIEW, Capability.ANNOTATE, Capability.REVIEW, Capability.DATA}
    ),
    Role.ENGINEER: frozenset({Capability.VIEW, Capability.DATA, Capability.TRAIN}),
    Role.ADMIN: frozenset(c.value for c in Capability),
}


def role_can(role: str, capability: str) -> bool:
    return capability in ROLE_CAPABILITIES.get(role, frozenset())


# The plain values, as API fields list them (named once in the OpenAPI schema: settings).
ROLE_VALUES = tuple(Role.values)
