"""Production settings: `check --deploy` is clean, and unsafe settings refuse to start.

Each case is a fresh interpreter (settings are read once per process), started all at once
so the cases cost one Django start-up between them.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GOOD_KEY = secrets.token_urlsafe(64)
GOOD = {
    "TANDEM_ENV": "production",
    "DJANGO_SECRET_KEY": GOOD_KEY,
    "DJANGO_ALLOWED_HOSTS": "tandem.example.org",
    "DJANGO_DEBUG": "0",
    "TANDEM_FIELD_KEYS": "7VjtR7Wc-PBDJ7fQ3vC4e3Gf2bgkkOmTGRlQ6uYCt1U=",
}
CHECK = [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
SETUP = [sys.executable, "-c", "import django; django.setup()"]

CASES = {
    "deploy-check": (CHECK, {}, 0, "System check identified no issues"),
    "missing-key": (SETUP, {"DJANGO_SECRET_KEY": None}, 1, "DJANGO_SECRET_KEY"),
    "dev-default-key": (
        SETUP,
        {"DJANGO_SECRET_KEY": "dev-insecure-tandem-key-change-me"},
        1,
        "DJANGO_SECRET_KEY",
    ),
    "short-key": (SETUP, {"DJANGO_SECRET_KEY": "s3cret"}, 1, "DJANGO_SECRET_KEY"),
    "repetitive-key": (SETUP, {"DJANGO_SECRET_KEY": "a" * 80}, 1, "DJANGO_SECRET_KEY"),
    "debug-on": (SETUP, {"DJANGO_DEBUG": "1"}, 1, "DJANGO_DEBUG"),
    "missing-field-keys": (SETUP, {"TANDEM_FIELD_KEYS": None}, 1, "TANDEM_FIELD_KEYS"),
    "bad-field-key": (SETUP, {"TANDEM_FIELD_KEYS": "not-a-key"}, 1, "TANDEM_FIELD_KEYS"),
    "wildcard-host": (SETUP, {"DJANGO_ALLOWED_HOSTS": "*"}, 1, "DJANGO_ALLOWED_HOSTS"),
    "wildcard-among-hosts": (
        SETUP,
        {"DJANGO_ALLOWED_HOSTS": "tandem.example.org,*"},
        1,
        "DJANGO_ALLOWED_HOSTS",
    ),
    "no-hosts": (SETUP, {"DJANGO_ALLOWED_HOSTS": None}, 1, "DJANGO_ALLOWED_HOSTS"),
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    var = tmp_path_factory.mktemp("var")
    running = {}
    for name, (argv, overrides, _, _) in CASES.items():
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TANDEM_"))}
        env.update(GOOD, TANDEM_VAR_DIR=str(var), DJANGO_SETTINGS_MODULE="config.settings")
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        running[name] = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    return {name: (p.wait(timeout=180), p.stdout.read()) for name, p in running.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_production_refuses_unsafe_settings_and_passes_the_deploy_check(outcomes, case):
    _, _, expected_rc, expected_text = CASES[case]
    rc, output = outcomes[case]
    assert (rc == 0) == (expected_rc == 0), output[-2000:]
    assert expected_text in output, output[-2000:]


def test_hard_coded_secret_key_is_refused_in_production(outcomes):
    """Label Studio shipped a hard-coded SECRET_KEY. Ours exists only for development, and
    production refuses it (and any key that is missing, short or repetitive)."""
    for case in ("missing-key", "dev-default-key", "short-key", "repetitive-key"):
        rc, output = outcomes[case]
        assert rc != 0
        assert "ImproperlyConfigured" in output
    from django.conf import settings

    assert settings.SECRET_KEY != GOOD_KEY  # the test process never sees production's key
