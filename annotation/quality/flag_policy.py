"""A project's flag policy: what a snapshot does with tasks whose labels carry content flags.

Declared here, low in the stack and free of Django, so the project's settings (annotation)
validate and store it and the snapshot pipeline (``rlhf.data.flags``, where the actions and
their defaults are explained) applies it: one declaration for both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

UNSAFE, PERSONAL_DATA, SPAM = "unsafe", "personal_data", "spam"
DROP, REJECT, SCRUB, KEEP = "drop", "reject", "scrub", "keep"
ACTIONS = {
    UNSAFE: (DROP, REJECT, KEEP),
    PERSONAL_DATA: (DROP, SCRUB, KEEP),
    SPAM: (DROP, KEEP),
    "other": (KEEP, DROP),
}
# Flags that remove the whole task when their action is ``drop`` (checked in this order).
TASK_DROPPING = (SPAM, PERSONAL_DATA)


@dataclass(frozen=True)
class FlagPolicy:
    """What a snapshot does with flagged tasks; stored in its config (``as_dict``).

    min_flags: labels of a task that must carry a flag for it to count (>= 1).
    unsafe / personal_data / spam: the action for that flag (see the module docstring).
    other: the action for any flag a project defines beyond those three.
    """

    min_flags: int = 1
    unsafe: str = DROP
    personal_data: str = DROP
    spam: str = DROP
    other: str = KEEP

    def __post_init__(self):
        if isinstance(self.min_flags, bool) or not isinstance(self.min_flags, int):
            raise ValueError("flags.min_flags must be a whole number")
        if self.min_flags < 1:
            raise ValueError("flags.min_flags must be at least 1")
        for flag, allowed in ACTIONS.items():
            if getattr(self, flag) not in allowed:
                raise ValueError(f"flags.{flag} must be one of {list(allowed)}")

    def action(self, flag: str) -> str:
        return getattr(self, flag) if flag in (UNSAFE, PERSONAL_DATA, SPAM) else self.other

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> FlagPolicy:
        """From ``as_dict`` output; a config recorded before flag policies (no ``flags``
        key, None here) built its snapshot ignoring flags, and keeps doing so."""
        if data is None:
            return cls.ignoring()
        return cls(**data)

    @classmethod
    def ignoring(cls) -> FlagPolicy:
        return cls(unsafe=KEEP, personal_data=KEEP, spam=KEEP, other=KEEP)
