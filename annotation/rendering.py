"""Untrusted text (prompts, model outputs, guidelines) to HTML that cannot run code.

Three walls: raw HTML in the text is escaped, so an annotator sees a model's ``<script>`` as
the literal text it produced (which matters for judging it) while Markdown still renders;
the HTML then goes through nh3 (the Ammonia sanitiser) with a small allow-list (no scripts,
event handlers or styles; links only to http(s)/mailto, with ``rel="noopener noreferrer
nofollow"``); and pages send a strict Content-Security-Policy.
"""

import markdown
import nh3

ALLOWED_TAGS = {
    "p", "br", "hr", "pre", "code", "blockquote", "em", "strong", "del", "sup", "sub",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody",
    "tr", "th", "td", "kbd",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = {"http", "https", "mailto"}


def markdown_to_safe_html(text: str) -> str:
    md = markdown.Markdown(extensions=["fenced_code", "tables", "sane_lists"])
    # Without these two, Python-Markdown passes raw HTML through untouched.
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    html = md.convert(text or "")
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
