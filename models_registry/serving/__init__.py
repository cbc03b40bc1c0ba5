"""Serving approved versions: an existing OpenAI-compatible engine behind a thin gateway.

- ``engines``: the engine's command line (``transformers serve`` by default, vLLM's OpenAI
  server on a GPU where it is installed), a free port, a health probe. Tandem does not serve
  tokens itself.
- ``supervisor``: what ``manage.py serve`` runs: it keeps one ready engine per wanted version
  (the alias's target, the canary), starts the next one when the alias moves, switches only
  once it is healthy, and stops the old one after its in-flight requests finished.
- ``watcher``: what ``manage.py serve --watch`` runs: a supervisor per enabled
  ``ServingTarget`` (what the project's Serving page asked to serve), retired when it stops.
- ``selectors`` / ``services``: routing (alias or version -> engine, canary split/shadow),
  rate limits, usage records, feedback and, with the project's consent, learning from it.
- ``gateway``: the async views ``/gateway/<project_id>/v1/...`` (chat completions with SSE
  passthrough, models, feedback), authenticated by ``serve`` (or ``admin``) API tokens.
"""
