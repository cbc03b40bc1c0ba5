"""Live updates of one training run over a websocket: ``/ws/runs/<id>/``.

Only members of the run's project with the ``data`` capability may subscribe (the access
gate decides; anyone else is refused before the handshake completes, and the gate is asked
again before every push). Messages are hints: each carries the run's live fields and the metric
points added since the previous message, all read from the database, and a client that
reconnects resyncs from the API first.

Two triggers, one path: the worker's ``group_send`` after each committed write (instant when
the channel layer is shared, e.g. Redis), and a poll of the run's ``revision`` every
TANDEM_RUN_POLL_SECONDS, which keeps the page live with the in-process channel layer too,
where the worker's messages cannot reach this process.
"""

from __future__ import annotations

import asyncio
import contextlib

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404

from rlhf.runs import selectors
from rlhf.runs.access import access_training_run
from rlhf.runs.services import run_group

CLOSE_NOT_FOUND = 4404
CLOSE_FORBIDDEN = 4403


def _allowed(user, run_id) -> int | None:
    """The close code refusing ``user``, or None when they may watch the run."""
    try:
        access_training_run(user, run_id)
    except Http404:
        return CLOSE_NOT_FOUND
    except PermissionDenied:
        return CLOSE_FORBIDDEN
    return None


def _update(run_id: int, after_id: int, log_tail: str | None) -> dict | None:
    state = selectors.training_run_state(run_id=run_id)
    if state is None:
        return None
    tail = state.pop("log_tail")
    points = selectors.training_run_points_after(run_id=run_id, after_id=after_id)
    message = {"type": "run.update", "run": state, "points": points}
    if tail != log_tail:
        message["log_tail"] = tail
    return message


class TrainingRunConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        self.user = self.scope.get("user")
        refused = await database_sync_to_async(_allowed)(self.user, self.run_id)
        if refused is not None:
            await self.close(code=refused)
            return
        self.group = run_group(self.run_id)
        self.lock = asyncio.Lock()
        self.cursor = await database_sync_to_async(selectors.training_run_last_point_id)(
            run_id=self.run_id
        )
        self.revision = None
        self.log_tail = None
        self.poller = None
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.push()
        if settings.TANDEM_RUN_POLL_SECONDS > 0:
            self.poller = asyncio.ensure_future(self.poll(settings.TANDEM_RUN_POLL_SECONDS))

    async def disconnect(self, code):
        poller = getattr(self, "poller", None)
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        # The client may ask for an update at any time (e.g. after its own resync).
        if isinstance(content, dict) and content.get("type") == "sync":
            await self.push()

    async def run_changed(self, event):
        await self.push()

    async def poll(self, seconds: float):
        while True:
            await asyncio.sleep(seconds)
            revision = await database_sync_to_async(selectors.training_run_revision)(
                run_id=self.run_id
            )
            if revision != self.revision:
                await self.push()

    async def push(self):
        async with self.lock:
            refused = await database_sync_to_async(_allowed)(self.user, self.run_id)
            if refused is not None:
                await self.close(code=refused)
                return
            message = await database_sync_to_async(_update)(self.run_id, self.cursor, self.log_tail)
            if message is None:
                await self.close(code=CLOSE_NOT_FOUND)
                return
            if message["points"]:
                self.cursor = message["points"][-1][0]
            if "log_tail" in message:
                self.log_tail = message["log_tail"]
            if message["run"]["revision"] == self.revision and not message["points"]:
                return
            self.revision = message["run"]["revision"]
            await self.send_json(message)
