"""Websocket routes of every app, in one list (consumers check access themselves)."""

from django.urls import path

from rlhf.runs.consumers import TrainingRunConsumer

websocket_urlpatterns: list = [
    path("ws/runs/<int:run_id>/", TrainingRunConsumer.as_asgi()),
]
