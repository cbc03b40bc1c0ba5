"""State the browser-facing layer keeps: login throttling counters."""

from django.db import models


class LoginThrottle(models.Model):
    """Login attempts in the current window, per account or per client address.

    ``key`` is a sha256 (``user:<name>`` or ``ip:<address>``), so typed user names, which
    are sometimes passwords typed in the wrong box, are never stored. ``attempts`` counts
    attempts that failed or are in flight; see ``frontend.login_throttle``.
    """

    key = models.CharField(max_length=64, unique=True)
    attempts = models.PositiveIntegerField(default=0)
    window_start = models.DateTimeField()
