"""Websocket routes of every app, in one list (consumers check access themselves)."""

websocket_urlpatterns: list = []
