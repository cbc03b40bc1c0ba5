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
EVERY_ROLE = frozenset({"annotator", "reviewer", "engineer", "admin"})
ADMIN = frozenset({"admin"})
PUBLIC = "public"
AUTHENTICATED = "authenticated"
STAFF = "staff"

POLICY: dict[tuple[str, str], object] = {
    # annotation API
    ("api-token", "post"): PUBLIC,
    ("api-me", "get"): AUTHENTICATED,
    ("api-projects", "get"): AUTHENTICATED,
    ("api-projects", "post"): STAFF,
    ("api-project", "get"): EVERY_ROLE,
    ("api-project", "patch"): ADMIN,
    ("api-members", "get"): ADMIN,
    ("api-members", "post"): ADMIN,
    ("api-member", "delete"): ADMIN,
    ("api-imports", "post"): ADMIN,
    ("api-progress", "get"): EVERY_ROLE,
    ("api-task-next", "post"): ANNOTATING,
    ("api-task", "get"): ANNOTATING,
    ("api-label-submit", "post"): ANNOTATING,
    ("api-task-skip", "post"): ANNOTATING,
    ("api-heartbeat", "post"): ANNOTATING,
    ("api-labels", "get"): AUTHENTICATED,
    ("api-label", "get"): ANNOTATING,  # own label; reviewers/admins also others' (read-only)
    ("api-label", "patch"): ANNOTATING,  # own label only
    ("api-label-revisions", "get"): ANNOTATING,
    ("api-schema", "get"): PUBLIC,
    # pages
    ("frontend:home", "get"): AUTHENTICATED,
    ("frontend:home", "post"): AUTHENTICATED,  # 405
    ("frontend:login", "get"): PUBLIC,
    ("frontend:login", "post"): PUBLIC,
    ("frontend:login", "put"): PUBLIC,  # Django's FormView treats PUT as POST
    ("frontend:logout", "post"): AUTHENTICATED,
    ("frontend:annotate", "get"): ANNOTATING,
    ("frontend:annotate", "post"): ANNOTATING,  # 405
    ("frontend:project-manage", "get"): ADMIN,
    ("frontend:project-manage", "post"): ADMIN,
}
