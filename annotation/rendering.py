"""Untrusted text (prompts, model outputs, guidelines) to HTML that cannot run code.

Three walls: raw HTML in the text is escaped, so an annotator sees a model's ``<script>`` as
the literal text it produced (which matters for judging it) while Markdown still renders;
the HTML then goes through nh3 (the Ammonia sanitiser) with a small allow-list (no scripts,
event handlers or styles; links only to http(s)/mailto, with ``rel="noopener noreferrer
nofollow"``); and pages send a strict Content-Security-Policy.
"""

import functools
import threading

import markdown
import nh3

ALLOWED_TAGS = {
    "p", "br", "hr", "pre", "code", "blockquote", "em", "strong", "del", "sup", "sub",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody",
    "tr", "th", "td", "kbd",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = {"http", "https", "mailto"}


_local = threading.local()


def _markdown() -> markdown.Markdown:
    """One configured converter per thread: building one costs as much as a conversion, and
    a converter keeps state while it works, so threads cannot share one."""
    md = getattr(_local, "md", None)
    if md is None:
        md = markdown.Markdown(extensions=["fenced_code", "tables", "sane_lists"])
        # Without these two, Python-Markdown passes raw HTML through untouched.
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")
        _local.md = md
    return md


@functools.lru_cache(maxsize=4096)
def markdown_to_safe_html(text: str) -> str:
    """Cached by the text itself: a task's prompt and responses are shown to k annotators,
    and a held task is shown again on reload, so the same texts come back often."""
    html = _markdown().reset().convert(text or "")
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
