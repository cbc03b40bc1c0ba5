"""Progress of a long command: a bar on a terminal, plain lines in a log.

``CommandProgress(command.stderr, desc=..., out=command.stdout)`` is fed absolute positions
(``update(done, total, stage=...)``) by whatever callback the long work offers
(``snapshot_build``'s ``on_progress``, a run's ``progress`` record, a bundle's stages). On a
TTY it draws a ``tqdm`` bar (a new bar per stage); anywhere else (a pipe, a CI log, a file) it
writes one plain line when the stage changes and at most one every ``every_s`` seconds within a
stage, so a log stays readable and greppable.

Progress goes to ``stream`` (stderr, as ``tqdm`` and ``curl`` do), so what a command prints on
stdout (a summary, JSON) stays the same whether or not anyone watches; ``write`` sends a line
of that output to ``out`` without tearing the bar.
"""

from __future__ import annotations

import time


def _is_tty(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed stream
        return False


class CommandProgress:
    def __init__(
        self,
        stream,
        *,
        desc: str,
        unit: str = "it",
        every_s: float = 5.0,
        tty: bool | None = None,
        out=None,
    ):
        # Django's OutputWrapper ends every write with a newline; a bar needs the raw stream.
        self.stream = getattr(stream, "_out", stream)
        self.out = getattr(out, "_out", out) if out is not None else self.stream
        self.desc = desc
        self.unit = unit
        self.every_s = every_s
        self.tty = _is_tty(stream) if tty is None else tty
        self.bar = None
        self.stage: str | None = None
        self.last_line = 0.0
        self.last_done: int | None = None

    def update(self, done: int, total: int | None = None, *, stage: str | None = None) -> None:
        """The work is at ``done`` of ``total`` (None: unknown) in ``stage``."""
        new_stage = stage != self.stage
        self.stage = stage
        if self.tty:
            self._draw(done, total, new_stage)
            return
        now = time.monotonic()
        finished = total is not None and done >= total
        if new_stage or (
            done != self.last_done and (finished or now - self.last_line >= self.every_s)
        ):
            self.last_line = now
            self.last_done = done
            self.stream.write(self._line(done, total) + "\n")
            self.stream.flush()

    def write(self, line: str) -> None:
        """A line of the command's own output (to ``out``) that must not tear the bar."""
        if self.bar is not None:
            self.bar.write(line, file=self.out)
        else:
            self.out.write(line + "\n")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _label(self) -> str:
        return f"{self.desc} [{self.stage}]" if self.stage else self.desc

    def _line(self, done: int, total: int | None) -> str:
        if total:
            return f"{self._label()}: {done}/{total} {self.unit} ({100 * done / total:.0f}%)"
        return f"{self._label()}: {done} {self.unit}"

    def _draw(self, done: int, total: int | None, new_stage: bool) -> None:
        from tqdm import tqdm

        if self.bar is None or new_stage:
            self.close()
            self.bar = tqdm(
                total=total, desc=self._label(), unit=self.unit, file=self.stream, leave=True,
                dynamic_ncols=True,
            )  # fmt: skip
        if total is not None and self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()
