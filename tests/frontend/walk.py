"""A first-day walk through the app by clicking only: every page it arrives on is checked by
axe, and every console error and failed request along the way is kept for the end."""

from urllib.parse import urlsplit

from .axe import assert_no_serious_axe_violations

# A request refused because the test took the browser offline (and the browser's console line
# for it) is expected, and kept apart: the browser reports it only while it is offline, and
# its events may reach the test after it went back online.
OFFLINE_FAILURE = "ERR_INTERNET_DISCONNECTED"


class Walk:
    def __init__(self, page):
        self.page = page
        self.failed_requests: list[str] = []
        self.console_errors: list[str] = []
        self.visited: list[str] = []
        self.offline_failures: list[str] = []
        page.on("requestfailed", self._on_request_failed)
        page.on("response", self._on_response)
        page.on("console", self._on_console)
        # The test server (pytest-django's live_server) is WSGI and has no websocket routes;
        # the walk stands in for the channel: the socket opens and stays quiet, as it does
        # between updates, and the pages read their state from the API as they do on connect.
        page.route_web_socket("**/ws/**", lambda socket: None)

    def _on_request_failed(self, request):
        failure = request.failure or ""
        # A request the browser itself aborted because the page moved on (the favicon's,
        # during a navigation) is not a failure of the app.
        if "ERR_ABORTED" in failure:
            return
        if OFFLINE_FAILURE in failure:
            self.offline_failures.append(request.url)
            return
        self.failed_requests.append(f"failed {request.method} {request.url} ({failure})")

    def _on_response(self, response):
        if response.status >= 400:
            self.failed_requests.append(
                f"{response.status} {response.request.method} {response.url}"
            )

    def _on_console(self, message):
        if message.type != "error":
            return
        if OFFLINE_FAILURE in message.text:
            return
        self.console_errors.append(f"{message.text} at {self.page.url}")

    def arrive(self, url_glob: str, ready: str | None = None) -> None:
        """Wait for the page the last click led to (and its first rendered element, when
        its content comes from a script), then run axe on it."""
        self.page.wait_for_url(url_glob)
        self.page.wait_for_load_state("load")
        if ready:
            self.page.wait_for_selector(ready)
        self.check()
        self.visited.append(urlsplit(self.page.url).path)

    def check(self, where: str = "") -> None:
        """axe on the page as it is now (a dialog opened, a form answered...)."""
        assert_no_serious_axe_violations(self.page, where)

    def click(self, selector: str, url_glob: str, ready: str | None = None) -> None:
        # Waiting for the navigation itself, not only for the address: a form that answers
        # with the page it was on (a redirect back) would otherwise match at once, and the
        # checks would run on the old page.
        with self.page.expect_navigation(url=url_glob):
            self.page.locator(selector).first.click()
        self.arrive(url_glob, ready)

    def home(self) -> None:
        self.click("header a.brand", "**/", "h1")

    def set_offline(self, offline: bool) -> None:
        self.page.context.set_offline(offline)

    def assert_clean(self) -> None:
        problems = {
            "script errors": self.page.watch.page_errors,
            "console errors": self.console_errors,
            "failed requests": self.failed_requests,
        }
        assert not any(problems.values()), f"along the walk: {problems}"
