"""Progress reporting and cancellation: the engine's only ways of talking to its caller.

The caller passes ``progress(event)``, which receives ``ProgressEvent``s, and
``should_stop() -> bool``, which is asked before every optimizer step and before anything is
written (checkpoint, final model). The platform's ``should_stop`` checks its run's fencing
token, so a stale attempt stops before it can write. Either callback may also raise
``TrainingStopped`` itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

EVENT_KINDS = ("start", "step", "eval", "checkpoint", "log", "end")


class TrainingStopped(Exception):
    """The caller asked the run to stop; nothing was written after the request was seen."""

    def __init__(self, reason: str = "stop requested", *, global_step: int | None = None):
        super().__init__(reason)
        self.global_step = global_step


@dataclass
class ProgressEvent:
    """One report. ``kind``: start, step, eval, checkpoint, log (a message) or end."""

    kind: str
    step: int = 0  # optimizer steps done (global: continues across resumes)
    total_steps: int = 0
    loss: float | None = None
    metrics: dict = field(default_factory=dict)
    tokens_per_s: float | None = None  # real (non-padding) tokens per second since the start
    tokens: int = 0  # real tokens processed by this attempt so far
    elapsed_s: float = 0.0  # seconds since this attempt started
    eta_s: float | None = None
    message: str = ""
    checkpoint: dict | None = None  # {"path", "global_step", "manifest_sha256"} for checkpoints

    def to_dict(self) -> dict:
        return asdict(self)


class Reporter:
    """Turns step counts and token counts into events with rates and an ETA."""

    def __init__(
        self,
        progress: Callable[[ProgressEvent], None] | None,
        should_stop: Callable[[], bool] | None,
    ):
        self._progress = progress
        self._should_stop = should_stop
        self.started = time.monotonic()
        self.tokens = 0
        self.first_step: int | None = None
        self.first_step_time: float | None = None
        self.total_steps = 0

    def check_stop(self, global_step: int | None = None) -> None:
        if self._should_stop is not None and self._should_stop():
            raise TrainingStopped(global_step=global_step)

    def emit(self, kind: str, **values) -> None:
        if self._progress is None:
            return
        values.setdefault("total_steps", self.total_steps)
        values.setdefault("tokens", self.tokens)
        values.setdefault("elapsed_s", time.monotonic() - self.started)
        self._progress(ProgressEvent(kind=kind, **values))

    def add_tokens(self, count: int) -> None:
        self.tokens += int(count)

    def step(self, step: int, *, loss: float | None = None, metrics: dict | None = None) -> None:
        now = time.monotonic()
        if self.first_step is None:
            # Rates start after the first step: it includes warm-up (allocations, kernel
            # selection) that later steps do not pay.
            self.first_step, self.first_step_time, self.first_tokens = step, now, self.tokens
            rate = eta = None
        else:
            seconds = now - self.first_step_time
            done = step - self.first_step
            rate = (self.tokens - self.first_tokens) / seconds if seconds > 0 else None
            eta = (self.total_steps - step) * seconds / done if done > 0 else None
        self.emit("step", step=step, loss=loss, metrics=metrics or {}, tokens_per_s=rate, eta_s=eta)
