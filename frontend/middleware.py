"""Security headers for every response, and the page shown to a throttled login."""

from django.contrib.auth.forms import AuthenticationForm
from django.template.response import TemplateResponse

from config.errors import TooManyAttempts

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    """An enforcing CSP: no inline scripts or styles, nothing from other origins.

    Untrusted text is escaped or sanitised before it reaches a page; the policy is the second
    wall, so a sanitiser bug still cannot run a script.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.setdefault("Referrer-Policy", "same-origin")
        response.setdefault("X-Content-Type-Options", "nosniff")
        response.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        return response


class LoginThrottleMiddleware:
    """A throttled login on any page (ours or the admin's) is a 429 with a clear message."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, TooManyAttempts):
            return None
        response = TemplateResponse(
            request,
            "frontend/login.html",
            {"form": AuthenticationForm(request), "throttled": exception.message},
            status=429,
        )
        response["Retry-After"] = str(exception.extra.get("retry_after", 900))
        return response
