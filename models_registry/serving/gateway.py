"""The gateway: OpenAI-compatible routes in front of the engines ``manage.py serve`` runs.

    POST /gateway/<project_id>/v1/chat/completions   (stream: SSE passed through)
    GET  /gateway/<project_id>/v1/models
    POST /gateway/<project_id>/v1/feedback

Order of checks, the same on every route: the API key (``Authorization: Bearer tdm_...`` as
OpenAI clients send it, or ``Token tdm_...``; 401), its scope (``serve`` or ``admin``; 403),
the project gate (``access_project``: 404 for a project the key's owner is not in), the
key's rate limit (429 with ``Retry-After``), and only then the body (400 naming the field).
The rate limit is counted again, exactly, when the usage record is written (under the key's
row lock, ``served_response_start``): requests in flight together cannot pass it all at once.
A session is not enough (403): a browser's cookies must not call the gateway.

The upstream client is httpx's async client, streaming: a chunk is forwarded as the engine
writes it, rewritten only to carry the gateway's response id and the version's name. Each
answer has a usage record (``ServedResponse``) written ``in_flight`` before the upstream call
and closed after its last byte, which is what lets the supervisor stop a replaced engine
only once its streams have finished. A request whose engine refuses the connection (stopped
between routing and connecting, or a pooled connection it closed) is routed again, before any
byte reached the client (at most three more tries).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import threading
import time

import httpx
from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf_exceptions

from annotation.access import access_project
from annotation.authentication import token_check
from annotation.tokens import scope_allows
from config.errors import DomainError
from models_registry.models import ModelAlias
from models_registry.serving import selectors, services
from models_registry.serving.models import EngineStatus, ServingEngine

logger = logging.getLogger(__name__)
UPSTREAM_TIMEOUT = httpx.Timeout(connect=5.0, read=600.0, write=30.0, pool=None)
_clients: dict[int, httpx.AsyncClient] = {}
_background: set = set()


class GatewayError(Exception):
    def __init__(self, status: int, code: str, detail: str, **extra):
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra

    def response(self) -> JsonResponse:
        response = JsonResponse(
            {"error": self.code, "detail": self.detail, **self.extra}, status=self.status
        )
        if "retry_after" in self.extra:
            response["Retry-After"] = str(self.extra["retry_after"])
        if self.status == 401:
            response["WWW-Authenticate"] = "Bearer"
        return response


def _client() -> httpx.AsyncClient:
    """One pooled client per event loop (daphne runs one; tests may run several)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(id(loop))
    if client is None or client.is_closed:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        client = _clients[id(loop)] = httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT, limits=limits)
    return client


def _gate(request, project_id: int, route_name: str, *, rate_limited: bool):
    """(token, project, settings), or GatewayError: key, scope, project, rate limit."""
    parts = request.headers.get("Authorization", "").split()
    if not parts:
        if getattr(request.user, "is_authenticated", False):
            raise GatewayError(
                403, "api_key_required", "The gateway takes an API key, not a session."
            )
        raise GatewayError(401, "not_authenticated", "Send Authorization: Bearer <API key>.")
    if len(parts) != 2 or parts[0].lower() not in ("bearer", "token"):
        raise GatewayError(401, "not_authenticated", "Send Authorization: Bearer <API key>.")
    try:
        token = token_check(parts[1])
    except drf_exceptions.AuthenticationFailed as exc:
        raise GatewayError(401, "authentication_failed", str(exc.detail)) from exc
    if not scope_allows(token.scope, route_name, request.method):
        raise GatewayError(
            403,
            "permission_denied",
            f"This token's scope ({token.scope}) does not allow this call.",
        )
    try:
        project = access_project(token.user, project_id)
    except Http404 as exc:
        raise GatewayError(404, "not_found", "Not found.") from exc
    except PermissionDenied as exc:
        raise GatewayError(403, "permission_denied", str(exc)) from exc
    settings = selectors.serving_settings_of(project)
    if rate_limited:
        retry = selectors.rate_limit_retry_after(token=token, limit=settings.requests_per_minute)
        if retry is not None:
            raise GatewayError(
                429, "rate_limited",
                f"This key may make {settings.requests_per_minute} requests a minute.",
                retry_after=retry,
            )  # fmt: skip
    return token, project, settings


def _json_body(request) -> dict:
    try:
        body = json.loads(request.body or b"null")
    except RequestDataTooBig as exc:
        raise GatewayError(413, "too_large", "The request body is too large.") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise GatewayError(400, "invalid", "The body must be a JSON object.") from exc
    if not isinstance(body, dict):
        raise GatewayError(400, "invalid", "The body must be a JSON object.")
    return body


def _chat_body(request) -> tuple[dict, str, list[dict], bool]:
    body = _json_body(request)
    model, messages, stream = body.get("model"), body.get("messages"), body.get("stream", False)
    fields = {}
    if not isinstance(model, str) or not model.strip():
        fields["model"] = "an alias (e.g. champion) or a version (<name>-v<n>)"
    if (
        not isinstance(messages, list)
        or not messages
        or not all(
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)
            for m in messages
        )
    ):
        fields["messages"] = "a non-empty list of {role, content} with text content"
    if not isinstance(stream, bool):
        fields["stream"] = "true or false"
    if fields:
        raise GatewayError(400, "invalid", "Invalid chat completion request.", fields=fields)
    return body, model.strip(), messages, stream


def _route(project, model: str, exclude: set[int]):
    try:
        route = selectors.gateway_route(project=project, model=model)
    except selectors.UnknownModel as exc:
        raise GatewayError(
            404, "unknown_model", f"No alias or version {model!r} in this project.",
            fields={"model": "an alias or a version of this project"},
        ) from exc  # fmt: skip
    except selectors.NoEngine as exc:
        raise GatewayError(
            503, "no_engine", f"No engine serves {model!r} now (manage.py serve starts one).",
            retry_after=5,
        ) from exc  # fmt: skip
    if route.engine.pk in exclude:
        raise GatewayError(503, "no_engine", f"The engine for {model!r} stopped.", retry_after=5)
    return route


def _rewrite(chunk: dict, response_id: str, model_name: str) -> dict:
    chunk["id"] = response_id
    if "model" in chunk:
        chunk["model"] = model_name
    return chunk


@csrf_exempt
async def chat_completions(request, project_id: int):
    if request.method != "POST":
        return JsonResponse({"error": "method_not_allowed", "detail": "POST only."}, status=405)
    started = time.perf_counter()
    try:
        token, project, serve_settings = await sync_to_async(_gate)(
            request, project_id, "gateway-chat-completions", rate_limited=True
        )
        body, model, messages, stream = _chat_body(request)
        tried: set[int] = set()
        failures: dict[int, int] = {}
        attempts = 0
        while True:
            route = await sync_to_async(_route)(project, model, tried)
            try:
                served = await sync_to_async(services.served_response_start)(
                    project=project, token=token, user=token.user, route=route,
                    requested_model=model, messages=messages, streamed=stream,
                    # the first try counts against the key's limit; a re-route does not
                    rate_limit=serve_settings.requests_per_minute if attempts == 0 else None,
                )  # fmt: skip
            except services.RateLimited as exc:
                raise GatewayError(429, exc.code, exc.message, **exc.extra) from None
            upstream = {**body, "model": route.engine.upstream_model}
            if stream:
                upstream["stream_options"] = {"include_usage": True}
            try:
                response = await _client().send(
                    _client().build_request(
                        "POST", route.engine.url + "/v1/chat/completions", json=upstream
                    ),
                    stream=True,
                )
            except (httpx.ConnectError, httpx.RemoteProtocolError):
                # Nothing reached the client yet: a pooled connection the engine had closed, or
                # an engine stopped between routing and connecting. Route again (the alias may
                # have moved); an engine that fails twice is skipped. The supervisor, not the
                # gateway, decides whether an engine is dead.
                await _finish(served, started, ok=False, http_status=502)
                failures[route.engine.pk] = failures.get(route.engine.pk, 0) + 1
                if failures[route.engine.pk] >= 2:
                    tried.add(route.engine.pk)
                attempts += 1
                if attempts <= 3:
                    continue
                raise GatewayError(
                    502, "upstream_unreachable", "The engine did not answer."
                ) from None
            break
    except GatewayError as error:
        return error.response()
    if route.shadow is not None:
        _spawn(_shadow(project, token, route, body, messages, served))
    label = route.version.label.replace(" ", "-")
    if response.status_code != 200 or not stream:
        return await _whole(response, served, started, label, messages)
    want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    events = _events(response, served, started, label, messages, want_usage)
    out = StreamingHttpResponse(events, content_type="text/event-stream")
    out["Cache-Control"] = "no-cache"
    out["X-Accel-Buffering"] = "no"
    out["X-Tandem-Response-Id"] = served.response_id
    out["X-Tandem-Version"] = label
    return out


async def _finish(
    served, started, *, ok, http_status, usage=None, ttft=None, messages=(), answer=""
):
    usage = usage or {}
    await sync_to_async(services.served_response_finish)(
        served=served, ok=ok, http_status=http_status,
        prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"),
        ttft_ms=ttft, latency_ms=(time.perf_counter() - started) * 1000,
        messages=list(messages), answer=answer,
    )  # fmt: skip


async def _whole(response, served, started, label, messages) -> JsonResponse:
    """A non-streamed answer (or an engine's error, passed on with its status)."""
    try:
        raw = await response.aread()
    finally:
        await response.aclose()
    try:
        data = json.loads(raw)
    except ValueError:
        data = {"error": "upstream_error", "detail": raw[:2000].decode("utf-8", "replace")}
    ok = response.status_code == 200 and isinstance(data, dict)
    answer = ""
    if ok:
        _rewrite(data, served.response_id, label)
        choices = data.get("choices") or [{}]
        answer = ((choices[0] or {}).get("message") or {}).get("content") or ""
    await _finish(
        served, started, ok=ok, http_status=response.status_code,
        usage=data.get("usage") if ok else None, messages=messages, answer=answer,
    )  # fmt: skip
    status = response.status_code if response.status_code < 500 else 502
    return JsonResponse(data, status=status if not ok else 200, safe=False)


async def _events(response, served, started, label, messages, want_usage):
    """The engine's SSE events, one by one, as they arrive."""
    parts, usage, ttft, ok = [], None, None, False
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                ok = True
                yield b"data: [DONE]\n\n"
                continue
            chunk = json.loads(data)
            if chunk.get("usage") and not chunk.get("choices"):
                usage = chunk["usage"]
                ok = True
                if not want_usage:
                    continue
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    parts.append(content)
                    if ttft is None:
                        ttft = (time.perf_counter() - started) * 1000
                if choice.get("finish_reason"):
                    ok = True
            _rewrite(chunk, served.response_id, label)
            yield b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
    finally:
        await response.aclose()
        await _finish(
            served, started, ok=ok, http_status=200 if ok else 502, usage=usage, ttft=ttft,
            messages=messages, answer="".join(parts),
        )  # fmt: skip


_shadow_loop: asyncio.AbstractEventLoop | None = None
_shadow_lock = threading.Lock()


def _spawn(coroutine) -> None:
    """Run a shadow call on the gateway's own background loop: it outlives the request (a
    test client's or WSGI's loop ends with its response) and never delays the answer."""
    global _shadow_loop
    with _shadow_lock:
        if _shadow_loop is None:
            _shadow_loop = asyncio.new_event_loop()
            threading.Thread(
                target=_shadow_loop.run_forever, name="gateway-shadow", daemon=True
            ).start()
    # In a fresh context: the request's (asgiref's executor for this request) ends with it.
    future = contextvars.Context().run(asyncio.run_coroutine_threadsafe, coroutine, _shadow_loop)
    _background.add(future)

    def done(finished) -> None:
        _background.discard(finished)
        if not finished.cancelled() and finished.exception() is not None:
            logger.error("shadow call failed", exc_info=finished.exception())

    future.add_done_callback(done)


async def _shadow(project, token, route, body, messages, primary) -> None:
    """The candidate answers the same request; recorded, never returned."""
    started = time.perf_counter()
    served = await sync_to_async(services.served_response_start)(
        project=project, token=token, user=token.user, route=route,
        requested_model=body.get("model", ""), messages=messages, streamed=False,
        shadow_of=primary,
    )  # fmt: skip
    upstream = {**body, "model": route.shadow.upstream_model, "stream": False}
    upstream.pop("stream_options", None)
    try:
        response = await _client().send(
            _client().build_request(
                "POST", route.shadow.url + "/v1/chat/completions", json=upstream
            ),
            stream=True,
        )
    except httpx.HTTPError:
        await _finish(served, started, ok=False, http_status=502)
        return
    await _whole(response, served, started, route.shadow.version.label.replace(" ", "-"), messages)


@csrf_exempt
async def models(request, project_id: int):
    if request.method != "GET":
        return JsonResponse({"error": "method_not_allowed", "detail": "GET only."}, status=405)
    try:
        _token, project, _settings = await sync_to_async(_gate)(
            request, project_id, "gateway-models", rate_limited=False
        )
    except GatewayError as error:
        return error.response()
    return JsonResponse({"object": "list", "data": await sync_to_async(_model_list)(project)})


def _model_list(project) -> list[dict]:
    ready = {
        e.version_id: e
        for e in ServingEngine.objects.filter(project=project, status=EngineStatus.READY)
    }
    listed = []
    for alias in ModelAlias.objects.select_related("version").filter(project=project):
        listed.append(
            {"id": alias.name, "object": "model", "owned_by": project.slug,
             "version": alias.version.label, "ready": alias.version_id in ready}
        )  # fmt: skip
    for engine in ready.values():
        listed.append(
            {"id": engine.version.label.replace(" ", "-"), "object": "model",
             "owned_by": project.slug, "version": engine.version.label, "ready": True}
        )  # fmt: skip
    return listed


@csrf_exempt
async def feedback(request, project_id: int):
    if request.method != "POST":
        return JsonResponse({"error": "method_not_allowed", "detail": "POST only."}, status=405)
    try:
        token, project, _settings = await sync_to_async(_gate)(
            request, project_id, "gateway-feedback", rate_limited=False
        )
        body = _json_body(request)
        recorded = await sync_to_async(services.served_feedback_record)(
            project=project, token=token, body=body
        )
    except GatewayError as error:
        return error.response()
    except DomainError as error:
        return JsonResponse(
            {"error": error.code, "detail": error.message, **error.extra}, status=error.http_status
        )
    return JsonResponse(
        {
            "id": recorded.pk,
            "kind": recorded.kind,
            "learned": recorded.learned_label_id is not None,
        },
        status=201,
    )
