"""Runs an engine's command so that it ends with the process that started it.

    python -m models_registry.serving.engine_launch <parent pid> -- <engine argv...>

``manage.py serve`` (and ``serve --watch``) stops its engines itself on a clean stop. Killed
or crashed, it could not: its engines ran on, holding their port, memory and CPU, while
another host's watcher took the target over. On Linux the kernel now ends them:
``prctl(PR_SET_PDEATHSIG, SIGTERM)``, kept across the ``exec`` into the engine (the same
process: the supervisor's process group and signals reach it as before). An engine whose
parent died before the setting took hold exits at once. Elsewhere the engine starts as it is.
Nothing here imports Django: it runs in the engine's process, before the engine.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(args: list[str]) -> None:
    if len(args) < 3 or args[1] != "--":
        raise SystemExit("usage: engine_launch <parent pid> -- <engine argv...>")
    parent, argv = int(args[0]), args[2:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # it died between our fork and the prctl
            raise SystemExit("the serving process that started this engine is gone")
    os.execv(argv[0], argv)  # noqa: S606 (the engine command the supervisor built)


if __name__ == "__main__":
    main(sys.argv[1:])
