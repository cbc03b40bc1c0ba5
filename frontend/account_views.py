"""The account page: a user's API tokens (list, create, revoke); pending invitations live on
the home page. Plain forms, no script (CSP ``script-src 'self'``)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotation import selectors, services
from annotation.services.tokens import DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS
from annotation.tokens import TokenScope
from config.errors import DomainError
from config.untrusted import int64_problem


def _render(request, *, issued=None, status=200):
    tokens = [selectors.api_token_view(t) for t in selectors.api_token_list_for_user(request.user)]
    context = {
        "tokens": tokens,
        "scopes": TokenScope.choices,
        "default_days": DEFAULT_TOKEN_DAYS,
        "max_days": MAX_TOKEN_DAYS,
        "issued": issued,
        # ``?scope=serve`` (the Serving page's link): the new-token form starts on that scope.
        "preset_scope": request.GET.get("scope", ""),
    }
    return render(request, "frontend/account.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def account(request):
    if request.method == "GET":
        return _render(request)
    action = request.POST.get("action")
    try:
        if action == "create-token":
            days = request.POST.get("expires_in_days") or DEFAULT_TOKEN_DAYS
            issued = services.api_token_create(
                user=request.user,
                name=request.POST.get("name", ""),
                scope=request.POST.get("scope", ""),
                expires_in_days=int(days),
            )
            # Rendered, not redirected: the secret exists only in this response.
            return _render(request, issued=issued)
        if action == "revoke-token":
            token_id = request.POST.get("token_id", "")
            token = selectors.api_token_list_for_user(request.user).filter(
                pk=0 if int64_problem(token_id) else int(token_id)
            )
            token = token.first()
            if token is None:
                raise Http404("No such token.")
            services.api_token_revoke(token=token)
            messages.success(request, f"Token {token.name} ({token.prefix}…) revoked.")
        else:
            messages.error(request, "Unknown action.")
    except (DomainError, ValueError) as exc:
        messages.error(request, getattr(exc, "message", None) or str(exc))
    return redirect("frontend:account")
