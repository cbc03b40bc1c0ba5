"""The loop ``manage.py serve`` and ``serve --watch`` run: it steps until told to stop, then
stops every engine, and leaves the process's signal handlers as it found them."""

from __future__ import annotations

import os
import signal

import pytest

from models_registry.serving.supervisor import run_until_stopped


class Owner:
    def __init__(self):
        self.stopping = False
        self.steps = 0
        self.stopped = 0

    def stop_all(self):
        self.stopped += 1


def test_it_steps_until_asked_then_stops_everything():
    owner = Owner()

    def step():
        owner.steps += 1

    run_until_stopped(owner, step, 0, until=lambda: owner.steps >= 3)
    assert (owner.steps, owner.stopped) == (3, 1)


def test_a_sigterm_ends_it_and_the_previous_handler_is_put_back():
    owner = Owner()
    seen = []
    before = signal.signal(signal.SIGTERM, lambda *_: seen.append("mine"))
    try:

        def step():
            owner.steps += 1
            if owner.steps == 2:
                os.kill(os.getpid(), signal.SIGTERM)

        run_until_stopped(owner, step, 0, until=lambda: owner.steps >= 50)
        assert owner.stopping is True
        assert owner.steps == 2  # the signal ended the loop, not ``until``
        assert owner.stopped == 1
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == ["mine"]  # the handler from before is back
    finally:
        signal.signal(signal.SIGTERM, before)


def test_an_error_in_a_step_still_stops_every_engine():
    owner = Owner()

    def step():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_until_stopped(owner, step, 0)
    assert owner.stopped == 1
