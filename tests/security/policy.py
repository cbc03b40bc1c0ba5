"""Who may call what: one line per (route, method), read by the authorisation matrix.

Values are the project roles allowed on their *own* project's objects, or one of
``PUBLIC`` (anyone, signed in or not), ``AUTHENTICATED`` (any signed-in user; the view itself
scopes what it shows) and ``STAFF`` (platform staff only; no project role suffices). For any
role, another project's objects are always 404/403 and anonymous callers are always refused:
the matrix checks those for every discovered route whether it is listed here or not.

A new route fails ``test_every_route_declares_a_policy`` until it has a line here: that line
is the reviewed statement of who may call it.
"""

ANNOTATING = frozenset({"annotator", "reviewer", "admin"})
DATA = frozenset({"reviewer", "engineer", "admin"})
REVIEW = frozenset({"reviewer", "admin"})
TRAIN = frozenset({"engineer", "admin"})
EVERY_ROLE = frozenset({"annotator", "reviewer", "engineer", "admin"})
ADMIN = frozenset({"admin"})
PUBLIC = "public"
AUTHENTICATED = "authenticated"
STAFF = "staff"

POLICY: dict[tuple[str, str], object] = {
    # annotation API
    ("api-token", "post"): PUBLIC,
    ("api-tokens", "get"): AUTHENTICATED,  # one's own tokens
    ("api-tokens", "post"): AUTHENTICATED,
    ("api-token-detail", "delete"): AUTHENTICATED,  # one's own token; another's is 404
    ("api-me", "get"): AUTHENTICATED,
    ("api-me-erase", "post"): AUTHENTICATED,  # one's own account, with password and "erase"
    ("api-user-erase", "post"): STAFF,
    ("api-invitations", "get"): AUTHENTICATED,  # one's own pending invitations
    ("api-project-invitations", "get"): ADMIN,  # the project's open invitations
    ("api-project-invitation", "delete"): ADMIN,  # revoke one
    ("api-invitation", "post"): AUTHENTICATED,  # answer one's own; another's is 404
    ("api-projects", "get"): AUTHENTICATED,
    ("api-projects", "post"): STAFF,
    ("api-project", "get"): EVERY_ROLE,
    ("api-project", "patch"): ADMIN,
    ("api-members", "get"): ADMIN,
    ("api-members", "post"): ADMIN,
    ("api-member", "delete"): ADMIN,
    ("api-member", "patch"): ADMIN,
    ("api-imports", "post"): ADMIN,
    ("api-labels-export", "get"): DATA,
    ("api-progress", "get"): EVERY_ROLE,
    ("api-project-settings", "get"): DATA,
    ("api-project-settings", "patch"): ADMIN,
    ("api-task-next", "post"): ANNOTATING,
    ("api-task", "get"): ANNOTATING,
    ("api-label-submit", "post"): ANNOTATING,
    ("api-task-skip", "post"): ANNOTATING,
    ("api-task-undo", "post"): ANNOTATING,  # one's own last submit or skip
    ("api-heartbeat", "post"): ANNOTATING,
    # the reward model's preference, after the annotator's own label only
    ("api-task-reward-preference", "get"): ANNOTATING,
    ("api-labels", "get"): AUTHENTICATED,
    ("api-label", "get"): ANNOTATING,  # own label; reviewers/admins also others' (read-only)
    ("api-label", "patch"): ANNOTATING,  # own label only
    ("api-label-revisions", "get"): ANNOTATING,
    ("api-schema", "get"): PUBLIC,
    # the model gateway (models_registry.serving): API keys only (serve or admin scope), any
    # member's key; a session alone is refused (403), as a token is on a page
    ("gateway-chat-completions", "post"): EVERY_ROLE,
    ("gateway-chat-completions", "get"): EVERY_ROLE,  # 405
    ("gateway-models", "get"): EVERY_ROLE,
    ("gateway-models", "post"): EVERY_ROLE,  # 405
    ("gateway-feedback", "post"): EVERY_ROLE,
    ("gateway-feedback", "get"): EVERY_ROLE,  # 405
    # pages
    ("frontend:home", "get"): AUTHENTICATED,
    ("frontend:home", "post"): AUTHENTICATED,  # 405
    ("frontend:login", "get"): PUBLIC,
    ("frontend:login", "post"): PUBLIC,
    ("frontend:login", "put"): PUBLIC,  # Django's FormView treats PUT as POST
    ("frontend:logout", "post"): AUTHENTICATED,
    ("frontend:my-labels", "get"): AUTHENTICATED,  # the user's own labels only
    ("frontend:my-labels", "post"): AUTHENTICATED,  # 405
    ("frontend:my-label", "get"): ANNOTATING,  # own label only (others' are 404)
    ("frontend:my-label", "post"): ANNOTATING,  # 405
    ("frontend:account", "get"): AUTHENTICATED,  # one's own tokens
    ("frontend:account", "post"): AUTHENTICATED,
    ("frontend:invitation", "post"): AUTHENTICATED,  # one's own invitation; another's is 404
    ("frontend:invitation", "get"): AUTHENTICATED,  # 405
    ("frontend:annotate", "get"): ANNOTATING,
    ("frontend:annotate", "post"): ANNOTATING,  # 405
    # the data explorer (annotation.explorer): reads need the data capability; a bulk action
    # needs its own (BULK_CAPABILITY: reviewers may send to adjudication, admins anything)
    ("api-explorer-tasks", "get"): DATA,
    ("api-explorer-count", "get"): DATA,
    ("api-explorer-task", "get"): DATA,
    ("api-explorer-export", "get"): DATA,
    ("api-explorer-bulk", "post"): REVIEW,
    # sealing a personal-data text (annotation.services.sealing): project admins only
    ("api-explorer-task-seal", "post"): ADMIN,
    ("api-explorer-task-unseal", "post"): ADMIN,
    ("frontend:explorer", "get"): DATA,
    ("frontend:explorer", "post"): DATA,  # 405
    # creating a project: platform staff unless TANDEM_PROJECT_CREATORS=everyone
    ("frontend:project-new", "get"): STAFF,
    ("frontend:project-new", "post"): STAFF,
    ("frontend:project-manage", "get"): ADMIN,
    ("frontend:project-manage", "post"): ADMIN,
    # label quality (annotation.quality)
    ("api-quality", "get"): DATA,
    ("api-quality-refresh", "get"): DATA,
    ("api-quality-refresh", "post"): ADMIN,
    ("api-quality-reinstate", "post"): ADMIN,
    ("api-review-queue", "get"): REVIEW,
    ("api-review-task", "get"): REVIEW,
    ("api-review-task", "post"): REVIEW,
    ("api-gold", "get"): ADMIN,
    ("api-gold-promote", "post"): ADMIN,
    ("api-task-gold", "post"): ADMIN,
    ("api-task-gold", "delete"): ADMIN,
    ("api-final-labels", "get"): DATA,
    ("frontend:quality-dashboard", "get"): DATA,
    ("frontend:quality-dashboard", "post"): DATA,  # renders like GET
    ("frontend:review-queue", "get"): REVIEW,
    ("frontend:review-queue", "post"): REVIEW,
    ("frontend:review-task", "get"): REVIEW,
    ("frontend:review-task", "post"): REVIEW,
    # dataset snapshots (rlhf)
    ("api-snapshots", "get"): DATA,
    ("api-snapshots", "post"): DATA,
    ("api-snapshot", "get"): DATA,
    ("api-snapshot-card", "get"): DATA,
    ("api-snapshot-exports", "get"): DATA,
    ("api-snapshot-exports", "post"): DATA,
    ("api-snapshot-files", "get"): DATA,
    ("api-snapshot-download", "get"): DATA,
    ("rlhf-pages:snapshots", "get"): DATA,
    ("rlhf-pages:snapshots", "post"): DATA,
    ("rlhf-pages:snapshot", "get"): DATA,
    ("rlhf-pages:snapshot", "post"): DATA,
    # model registry (models_registry)
    ("api-models", "get"): DATA,
    ("api-model", "get"): DATA,
    ("api-model-register", "post"): TRAIN,
    ("api-model-register-base", "post"): ADMIN,  # base models enter every lineage: admins only
    ("api-model-transition", "post"): REVIEW,  # to "rejected"; "in_review" needs TRAIN
    ("api-model-version-audit", "get"): DATA,
    ("api-model-audit", "get"): DATA,
    ("api-model-aliases", "get"): DATA,
    ("api-model-alias", "put"): REVIEW,
    ("api-model-alias-rollback", "post"): REVIEW,
    ("api-model-leaderboard", "get"): DATA,
    ("api-model-generate", "post"): TRAIN,
    # an approved version's bundle: DATA roles; any other state: TRAIN (the world's is approved)
    ("api-model-bundle", "get"): DATA,
    ("api-model-bundle", "post"): DATA,
    ("api-generation-job", "get"): DATA,
    ("api-proposals", "get"): DATA,
    ("api-proposals", "post"): TRAIN,  # the champion proposes data people confirm
    ("api-eval-prompts", "get"): DATA,
    ("api-eval-prompts", "post"): ADMIN,
    ("api-review-settings", "get"): DATA,
    ("api-review-settings", "patch"): ADMIN,
    ("models:list", "get"): DATA,
    ("models:list", "post"): DATA,  # renders like GET
    ("models:version", "get"): DATA,
    ("models:version", "post"): DATA,  # renders like GET
    ("models:decide", "get"): REVIEW,
    ("models:decide", "post"): REVIEW,
    ("models:audit", "get"): DATA,  # as the audit API
    ("models:audit", "post"): DATA,  # 405
    ("models:leaderboard", "get"): DATA,  # as the leaderboard API
    ("models:leaderboard", "post"): DATA,  # 405
    ("models:propose", "post"): TRAIN,
    ("models:proposals", "get"): DATA,  # as the proposals API
    ("models:proposals", "post"): DATA,  # 405
    ("models:rounds", "get"): DATA,  # every round's report and the chart
    ("models:rounds", "post"): DATA,  # 405
    ("models:report", "get"): DATA,  # a version's review rounds, as the decision evidence
    ("models:report", "post"): DATA,  # 405
    # serving (models_registry.serving): the settings, start/stop, the page; admins only
    ("api-serving", "get"): ADMIN,
    ("api-serving", "patch"): ADMIN,
    ("api-serving-target", "post"): ADMIN,  # start serving (audited)
    ("api-serving-target", "delete"): ADMIN,  # stop serving (audited)
    ("models:serving", "get"): ADMIN,
    ("models:serving", "post"): ADMIN,  # 405
    # training runs (rlhf)
    ("api-methods", "get"): AUTHENTICATED,
    ("api-runs", "get"): DATA,
    ("api-runs", "post"): TRAIN,
    ("api-run", "get"): DATA,
    ("api-run-cancel", "post"): TRAIN,
    ("api-run-retry", "post"): TRAIN,
    ("api-run-metrics", "get"): DATA,
    ("api-run-artifact", "get"): DATA,
    ("runs:list", "get"): DATA,
    ("runs:list", "post"): DATA,
    ("api-runs-compare", "get"): DATA,
    ("runs:compare", "get"): DATA,
    ("runs:compare", "post"): DATA,  # renders like GET
    ("runs:new", "get"): TRAIN,
    ("runs:new", "post"): TRAIN,
    ("runs:run", "get"): DATA,
    ("runs:run", "post"): DATA,
    ("runs:cancel", "post"): TRAIN,
    ("runs:cancel", "get"): TRAIN,  # 405
    ("runs:retry", "post"): TRAIN,
    ("runs:retry", "get"): TRAIN,  # 405
}

# What an API token's scope adds to reading (every scope may call GET on any route its role
# may call; a page never accepts a token). ``admin`` may call everything the role may; a
# write not listed here is refused to the narrower scopes.
TOKEN_SCOPE_WRITES: dict[str, frozenset[tuple[str, str]]] = {
    "read": frozenset(),
    "serve": frozenset(),
    "annotate": frozenset(
        {
            ("api-task-next", "post"),
            ("api-label-submit", "post"),
            ("api-task-skip", "post"),
            ("api-task-undo", "post"),
            ("api-heartbeat", "post"),
            ("api-label", "patch"),
        }
    ),
    "train": frozenset(
        {
            ("api-snapshots", "post"),
            ("api-snapshot-exports", "post"),
            ("api-runs", "post"),
            ("api-run-cancel", "post"),
            ("api-run-retry", "post"),
            ("api-model-register", "post"),
            ("api-model-generate", "post"),
            ("api-proposals", "post"),
            ("api-model-bundle", "post"),
        }
    ),
}


# The gateway's routes take only ``serve`` and ``admin`` keys; a ``serve`` key nothing else.
GATEWAY_ROUTES = frozenset({"gateway-chat-completions", "gateway-models", "gateway-feedback"})


def token_scope_allows(scope: str, route_name: str, method: str) -> bool:
    if scope == "serve" and route_name == "api-schema" and method == "get":
        return True  # public anyway
    if scope == "serve" or route_name in GATEWAY_ROUTES:
        return scope in ("serve", "admin") and route_name in GATEWAY_ROUTES
    if scope == "admin" or method == "get":
        return True
    return (route_name, method) in TOKEN_SCOPE_WRITES[scope]
