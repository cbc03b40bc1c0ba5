"""The Tandem API from Python, named like the command line.

    from tandem_client import Tandem

    tandem = Tandem("https://tandem.example.org", token="tdm_...")
    tandem.project.import_file(3, "pairs.jsonl", kind="preferences")   # manage.py project import
    task = tandem.tasks.next(3)                                          # claim
    tandem.labels.submit(task["task_id"], {"choice": "left"})            # submit
    snap = tandem.snapshot.create(3, wait=True)                          # snapshot create
    tandem.snapshot.download(snap["id"], "preference/hf.tar", "data/")   # resumable, checked
    run = tandem.train.launch("reward", project=3, snapshot=snap["id"])  # train reward
    tandem.train.follow(run["id"], on_progress=print)                    # train follow
    tandem.models.export(7, "bundles/")                                  # models export
    tandem.gateway.chat(3, [{"role": "user", "content": "Hi"}])          # the served champion

Each namespace is a ``manage.py`` command (``project``, ``snapshot``, ``train``, ``models``)
and each method one of its sub-commands; ``tasks``, ``labels`` and ``gateway`` have no command.
Every call is one or a few plain HTTP requests to the documented API (``/api/schema/``);
refusals raise ``errors.ApiError`` subclasses that name the fields at fault.

Only ``httpx`` is needed; this package imports nothing of the server.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from tandem_client.errors import ChecksumMismatch, RunFailed, TandemError, error_for
from tandem_client.errors import Conflict as ConflictError

Progress = Callable[[int, int | None], None]  # (done, total or None)
ACTIVE_RUN = ("queued", "running")
BUNDLE_MANIFEST = "MANIFEST.sha256"
CHUNK = 1 << 20


class Tandem:
    """A session with one Tandem server, authenticated by an API token.

    ``token``: an API token (``tdm_...``; create one on your account page or with
    ``manage.py api_token``); its scope limits which writes work. ``transport``/``http``: an
    ``httpx`` transport or a whole client (tests pass a WSGI transport or a mock gateway)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
    ):
        self.url = url.rstrip("/")
        self.token = token
        self.http = http or httpx.Client(
            base_url=self.url, timeout=timeout, transport=transport, follow_redirects=False
        )
        self.project = ProjectCommands(self)
        self.tasks = TaskCommands(self)
        self.labels = LabelCommands(self)
        self.snapshot = SnapshotCommands(self)
        self.train = TrainCommands(self)
        self.models = ModelCommands(self)
        self.gateway = GatewayCommands(self)

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _headers(self, extra: dict | None = None, *, scheme: str = "Token") -> dict:
        headers = {"Accept": "application/json"}
        if self.token:
            # The API reads ``Token``; OpenAI-compatible gateway clients send ``Bearer``.
            headers["Authorization"] = f"{scheme} {self.token}"
        headers.update(extra or {})
        return headers

    def request(self, method: str, path: str, *, scheme: str = "Token", **kwargs) -> httpx.Response:
        """One request; a 4xx or 5xx raises the matching ``ApiError``."""
        headers = self._headers(kwargs.pop("headers", None), scheme=scheme)
        response = self.http.request(method, path, headers=headers, **kwargs)
        if response.status_code >= 400:
            raise error_for(response.status_code, method, path, _body(response))
        return response

    def get(self, path: str, **kwargs):
        return _json(self.request("GET", path, **kwargs))

    def post(self, path: str, body: dict | None = None, **kwargs):
        return _json(self.request("POST", path, json=body if body is not None else {}, **kwargs))

    def download(
        self,
        path: str,
        dest: Path,
        *,
        params: dict | None = None,
        sha256: str | None = None,
        on_progress: Progress | None = None,
        retries: int = 3,
    ) -> Path:
        """Download ``path`` to the file ``dest``, resuming a ``dest.part`` left by an earlier
        try (``Range`` + ``If-Range`` on the ETag it recorded, so a changed body restarts
        rather than splices). A broken connection resumes up to ``retries`` times. With
        ``sha256`` the finished file must hash to it (``ChecksumMismatch``, file removed)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        etag_file = dest.with_name(dest.name + ".part.etag")
        for attempt in range(retries + 1):
            try:
                self._download_once(path, params, part, etag_file, on_progress)
                break
            except (httpx.TransportError, httpx.StreamError):
                if attempt == retries:
                    raise
                time.sleep(min(2**attempt, 10) * 0.1)
        if sha256 is not None:
            actual = _file_sha256(part)
            if actual != sha256:
                part.unlink()
                etag_file.unlink(missing_ok=True)
                raise ChecksumMismatch(str(dest), sha256, actual)
        os.replace(part, dest)
        etag_file.unlink(missing_ok=True)
        return dest

    def _download_once(self, path, params, part: Path, etag_file: Path, on_progress) -> None:
        have = part.stat().st_size if part.is_file() else 0
        etag = etag_file.read_text().strip() if etag_file.is_file() else ""
        extra = {"Accept": "*/*"}
        if have and etag:
            extra.update({"Range": f"bytes={have}-", "If-Range": etag})
        elif have:
            have = 0  # bytes of unknown origin: start again
        headers = self._headers(extra)
        with self.http.stream("GET", path, params=params, headers=headers) as response:
            if response.status_code == 416 and have:
                part.unlink()  # what we hold is not a prefix of this body
                etag_file.unlink(missing_ok=True)
                raise httpx.StreamError("the partial file does not fit; downloading again")
            if response.status_code >= 400:
                response.read()
                raise error_for(response.status_code, "GET", path, _body(response))
            if response.status_code == 200:
                have = 0  # the whole body (no range asked, or the validator changed)
            total = _total_size(response)
            etag_file.write_text(response.headers.get("ETag", ""))
            with open(part, "ab" if have else "wb") as fh:
                done = have
                if on_progress:
                    on_progress(done, total)
                # Raw bytes as they arrive: ranges count the body's bytes, and what arrived
                # before a broken connection is on disk for the next try to resume from.
                for chunk in response.iter_raw():
                    fh.write(chunk)
                    done += len(chunk)
                    if on_progress:
                        on_progress(done, total)


def _body(response: httpx.Response):
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return response.text[:2000]


def _json(response: httpx.Response):
    if response.status_code == 204 or not response.content:
        return None
    return response.json()


def _total_size(response: httpx.Response) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range:
        tail = content_range.rsplit("/", 1)[1]
        return int(tail) if tail.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _extract(tar_path: Path, out: Path) -> list[str]:
    """Extract a tar under ``out`` (the ``data`` filter: no links out, no absolute paths)."""
    with tarfile.open(tar_path) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
        tar.extractall(out, filter="data")
    return names


def _mismatches(folder: Path, manifest: dict[str, str]) -> list[str]:
    """Paths under ``folder`` whose sha256 differs from ``manifest`` (missing or extra too)."""
    actual = {
        p.relative_to(folder).as_posix(): _file_sha256(p)
        for p in folder.rglob("*")
        if p.is_file() and p.name != BUNDLE_MANIFEST
    }
    return sorted(k for k in manifest.keys() | actual.keys() if manifest.get(k) != actual.get(k))


def _parse_manifest(text: str) -> dict[str, str]:
    return dict(reversed(line.split("  ", 1)) for line in text.splitlines() if line)


def _ref(value) -> int:
    """An object's id, from the id or a dict the API returned."""
    return int(value["id"]) if isinstance(value, dict) else int(value)


class _Commands:
    def __init__(self, client: Tandem):
        self.client = client


class ProjectCommands(_Commands):
    """``manage.py project``: import files, progress."""

    def import_file(
        self,
        project,
        file: str | Path,
        *,
        kind: str,
        annotator_name: str | None = None,
        task_kinds: list[str] | None = None,
    ) -> dict:
        """Import a JSONL/CSV file (``kind``: prompts, responses, preferences, ...; admins)."""
        file = Path(file)
        data = {"kind": kind}
        if annotator_name:
            data["annotator_name"] = annotator_name
        if task_kinds:
            data["task_kinds"] = task_kinds
        with open(file, "rb") as fh:
            return _json(
                self.client.request(
                    "POST",
                    f"/api/projects/{_ref(project)}/imports/",
                    data=data,
                    files={"file": (file.name, fh)},
                )
            )

    def progress(self, project) -> dict:
        return self.client.get(f"/api/projects/{_ref(project)}/progress/")


class TaskCommands(_Commands):
    """Claiming work as an annotator (``POST /tasks/next/``)."""

    def next(self, project, *, exclude: list | tuple = ()) -> dict | None:
        """Claim the next task (a lease); None when nothing is left for you."""
        return self.client.post(
            f"/api/projects/{_ref(project)}/tasks/next/", {"exclude": list(exclude)}
        )

    def skip(self, task, *, reason: str = "") -> dict:
        return self.client.post(f"/api/tasks/{_task(task)}/skip/", {"reason": reason})

    def heartbeat(self, task) -> dict:
        return self.client.post(f"/api/tasks/{_task(task)}/heartbeat/")


def _task(task) -> int:
    return int(task["task_id"]) if isinstance(task, dict) else int(task)


class LabelCommands(_Commands):
    """Submitting labels for claimed tasks."""

    def submit(
        self,
        task,
        payload: dict,
        *,
        flags: list[str] | None = None,
        duration_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> dict:
        """Submit one label. The request carries an ``Idempotency-Key`` (new unless given):
        sending the same key again returns the stored label instead of a second one, so a
        call that timed out can be repeated safely with the key it used."""
        body = {"payload": payload}
        if flags is not None:
            body["flags"] = flags
        if duration_ms is not None:
            body["duration_ms"] = duration_ms
        key = idempotency_key or uuid.uuid4().hex
        return self.client.post(
            f"/api/tasks/{_task(task)}/labels/", body, headers={"Idempotency-Key": key}
        )

    def list(self) -> list:
        return self.client.get("/api/labels/")


class SnapshotCommands(_Commands):
    """``manage.py snapshot``: create, list, show, export, and download."""

    def create(
        self,
        project,
        *,
        name: str = "",
        config: dict | None = None,
        kinds: list[str] | None = None,
        wait: bool = False,
        on_progress: Callable[[dict], None] | None = None,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
    ) -> dict:
        """Request a snapshot (built by a worker); with ``wait`` return it once ready."""
        body: dict = {"name": name}
        if config is not None:
            body["config"] = config
        if kinds is not None:
            body["kinds"] = kinds
        snapshot = self.client.post(f"/api/projects/{_ref(project)}/snapshots/", body)
        if wait:
            return self.wait(snapshot, on_progress=on_progress, poll_s=poll_s, timeout_s=timeout_s)
        return snapshot

    def wait(self, snapshot, *, on_progress=None, poll_s: float = 1.0, timeout_s=None) -> dict:
        """Poll until the snapshot is ready (returned) or failed (``TandemError``).
        ``on_progress`` gets its ``progress`` (``{stage, done, total}``) as it changes."""
        started, last = time.monotonic(), None
        while True:
            current = self.show(snapshot)
            if on_progress and current.get("progress") != last:
                last = current.get("progress")
                on_progress(last)
            if current["status"] == "ready":
                return current
            if current["status"] == "failed":
                raise TandemError(f"snapshot {current['id']} failed: {current.get('error')}")
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise TimeoutError(f"snapshot {current['id']} is still {current['status']}")
            time.sleep(poll_s)

    def list(self, project) -> list:
        return self.client.get(f"/api/projects/{_ref(project)}/snapshots/")

    def show(self, snapshot) -> dict:
        return self.client.get(f"/api/snapshots/{_ref(snapshot)}/")

    def card(self, snapshot) -> str:
        return self.client.request("GET", f"/api/snapshots/{_ref(snapshot)}/data-card/").text

    def export(
        self, snapshot, *, name: str, max_prompt_chars: int | None = None, tools=None
    ) -> dict:
        """A named export on the server (truncated prompts, peer-tool shapes), written by a
        worker; ``exports(snapshot)`` lists it once written."""
        body: dict = {"name": name}
        if max_prompt_chars is not None:
            body["max_prompt_chars"] = max_prompt_chars
        if tools:
            body["tools"] = list(tools)
        return self.client.post(f"/api/snapshots/{_ref(snapshot)}/exports/", body)

    def exports(self, snapshot) -> list:
        return self.client.get(f"/api/snapshots/{_ref(snapshot)}/exports/")

    def files(self, snapshot) -> dict:
        """What ``download`` can fetch: ``files`` (path, size, sha256) and ``archives``."""
        return self.client.get(f"/api/snapshots/{_ref(snapshot)}/files/")

    def download(
        self,
        snapshot,
        file: str,
        out: str | Path,
        *,
        extract: bool = True,
        on_progress: Progress | None = None,
    ) -> Path:
        """Download one ``file`` of a ready snapshot into the folder ``out`` and check it
        against the snapshot's sha256 manifest; resumes an interrupted download.

        ``file``: a path such as ``preference/train.jsonl`` or ``preference/train.parquet``,
        ``<shape>/hf.tar`` (that shape's ``datasets`` folder) or ``export.tar`` (everything).
        A tar is extracted (unless ``extract=False``) and each member checked; the return is
        the extracted folder (``datasets.load_from_disk`` reads a ``<shape>/hf.tar`` one)."""
        snapshot_id = _ref(snapshot)
        listing = self.files(snapshot_id)
        manifest = {f["path"]: f["sha256"] for f in listing["files"]}
        archives = {a["file"]: a for a in listing["archives"]}
        out = Path(out)
        path = f"/api/snapshots/{snapshot_id}/download/"
        if file in archives:
            archive = archives[file]
            tar_path = out / f"{archive['top']}.tar"
            self.client.download(path, tar_path, params={"file": file}, on_progress=on_progress)
            if not extract:
                return tar_path
            _extract(tar_path, out)
            folder = out / archive["top"]
            inside = f"{archive['folder']}/" if archive["folder"] else ""
            expected = {
                p[len(inside) :]: digest for p, digest in manifest.items() if p.startswith(inside)
            }
            bad = _mismatches(folder, expected)
            if bad:
                raise ChecksumMismatch(f"{folder}: {', '.join(bad[:5])}", "manifest", "differs")
            tar_path.unlink()
            return folder
        dest = out / f"snapshot-{snapshot_id}" / file
        return self.client.download(
            path,
            dest,
            params={"file": file},
            sha256=manifest.get(file),
            on_progress=on_progress,
        )


class TrainCommands(_Commands):
    """``manage.py train``: launch (``train <method>``), list, show, cancel, retry, follow."""

    def launch(
        self,
        method: str,
        *,
        project,
        snapshot,
        config: dict | None = None,
        preset: str | None = None,
        name: str = "",
        base_model_version=None,
        base_model_run=None,
        reward_model_version=None,
        reward_model_run=None,
        max_attempts: int | None = None,
    ) -> dict:
        body: dict = {"method": method, "snapshot": _ref(snapshot), "name": name}
        for key, value in (
            ("config", config),
            ("preset", preset),
            ("base_model_version", base_model_version),
            ("base_model_run", base_model_run),
            ("reward_model_version", reward_model_version),
            ("reward_model_run", reward_model_run),
            ("max_attempts", max_attempts),
        ):
            if value is not None:
                body[key] = value if key in ("config", "preset", "max_attempts") else _ref(value)
        return self.client.post(f"/api/projects/{_ref(project)}/runs/", body)

    def methods(self) -> list:
        return self.client.get("/api/training/methods/")

    def list(self, project) -> list:
        return self.client.get(f"/api/projects/{_ref(project)}/runs/")

    def show(self, run) -> dict:
        return self.client.get(f"/api/runs/{_ref(run)}/")

    def cancel(self, run) -> dict:
        return self.client.post(f"/api/runs/{_ref(run)}/cancel/")

    def retry(self, run) -> dict:
        return self.client.post(f"/api/runs/{_ref(run)}/retry/")

    def metrics(self, run, *, after: int | None = None) -> dict:
        params = {"after": after} if after is not None else None
        return self.client.get(f"/api/runs/{_ref(run)}/metrics/", params=params)

    def follow(
        self,
        run,
        *,
        on_progress: Callable[[dict], None] | None = None,
        on_log: Callable[[str], None] | None = None,
        poll_s: float = 2.0,
        timeout_s: float | None = None,
        raise_on_failure: bool = False,
    ) -> dict:
        """Poll the run until it ends; return its final record. ``on_progress`` gets the
        run's ``progress`` (``step``, ``total_steps``, ...) and ``status`` when either changes,
        ``on_log`` each new
        log line. ``raise_on_failure``: a run that did not succeed raises ``RunFailed``."""
        started, last_progress, last_line = time.monotonic(), None, None
        while True:
            current = self.show(run)
            state = {**(current.get("progress") or {}), "status": current["status"]}
            if on_progress and state != last_progress:
                last_progress = state
                on_progress(state)
            if on_log:
                lines = (current.get("log_tail") or "").splitlines()
                start = len(lines) - lines[::-1].index(last_line) if last_line in lines else 0
                for line in lines[start:]:
                    on_log(line)
                last_line = lines[-1] if lines else last_line
            if current["status"] not in ACTIVE_RUN:
                if raise_on_failure and current["status"] != "succeeded":
                    raise RunFailed(current)
                return current
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise TimeoutError(f"run {current['id']} is still {current['status']}")
            time.sleep(poll_s)


class ModelCommands(_Commands):
    """``manage.py models``: list, show, export (bundles)."""

    def list(self, project) -> list:
        return self.client.get(f"/api/projects/{_ref(project)}/models/")

    def show(self, version) -> dict:
        return self.client.get(f"/api/models/{_ref(version)}/")

    def bundle(self, version, *, adapter_only: bool = False) -> dict:
        """Ask for the version's bundle: ``status`` ready (200) or queued (a worker builds it)."""
        return self.client.post(
            f"/api/models/{_ref(version)}/bundle/", {"adapter_only": adapter_only}
        )

    def export(
        self,
        version,
        out: str | Path,
        *,
        adapter_only: bool = False,
        poll_s: float = 2.0,
        timeout_s: float | None = None,
        on_progress: Progress | None = None,
    ) -> Path:
        """Build (if needed), download (resuming), extract and check a version's export bundle
        into ``out/<name>-v<n>[-adapter]``; every file is checked against ``MANIFEST.sha256``."""
        started = time.monotonic()
        current = self.bundle(version, adapter_only=adapter_only)
        out = Path(out)
        while True:
            if current["status"] == "failed":
                raise TandemError(f"the bundle's build failed: {current.get('error')}")
            try:
                # 409 bundle_not_ready until a worker has built it; then the tar (resumable).
                tar_path = self.client.download(
                    f"/api/models/{_ref(version)}/bundle/",
                    out / f"{current['name']}.tar",
                    params={"adapter_only": "true" if adapter_only else "false"},
                    on_progress=on_progress,
                )
                break
            except ConflictError as exc:
                if exc.code != "bundle_not_ready":
                    raise
                status = exc.body.get("status") if isinstance(exc.body, dict) else None
                if status == "failed":
                    raise TandemError(exc.detail) from None
                if status == "missing":  # an older bundle was superseded: ask again
                    current = self.bundle(version, adapter_only=adapter_only)
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise TimeoutError(f"the bundle of version {_ref(version)} is still building")
            time.sleep(poll_s)
        _extract(tar_path, out)
        folder = out / current["name"]
        manifest = _parse_manifest((folder / BUNDLE_MANIFEST).read_text(encoding="utf-8"))
        bad = _mismatches(folder, manifest)
        if bad:
            raise ChecksumMismatch(f"{folder}: {', '.join(bad[:5])}", "manifest", "differs")
        tar_path.unlink()
        return folder


class GatewayCommands(_Commands):
    """The project's OpenAI-compatible gateway (``/gateway/<project>/v1/...``): the served
    champion (or any alias or version the gateway knows), and feedback on its answers."""

    def _path(self, project, tail: str) -> str:
        return f"/gateway/{_ref(project)}/v1/{tail}"

    def models(self, project) -> dict:
        return _json(self.client.request("GET", self._path(project, "models"), scheme="Bearer"))

    def chat(
        self, project, messages: list[dict], *, model: str = "champion", stream: bool = False, **p
    ):
        """One chat completion. ``stream=True`` yields the server-sent chunks (dicts) as they
        arrive; otherwise the whole completion (a dict, OpenAI's shape) is returned."""
        body = {"model": model, "messages": messages, "stream": stream, **p}
        path = self._path(project, "chat/completions")
        if not stream:
            return _json(self.client.request("POST", path, json=body, scheme="Bearer"))
        return self._stream(path, body)

    def _stream(self, path: str, body: dict) -> Iterator[dict]:
        headers = self.client._headers({"Accept": "text/event-stream"}, scheme="Bearer")
        with self.client.http.stream("POST", path, json=body, headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                raise error_for(response.status_code, "POST", path, _body(response))
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    return
                yield json.loads(data)

    def feedback(self, project, **body) -> dict:
        """Feedback on a served answer: e.g. ``response_id=..., rating="up"`` or a preference
        between two answers the gateway returned side by side (the gateway documents fields)."""
        return _json(
            self.client.request("POST", self._path(project, "feedback"), json=body, scheme="Bearer")
        )
