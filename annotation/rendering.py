"""Untrusted text (prompts, model outputs, guidelines) to HTML that cannot run code.

Three walls: raw HTML in the text is escaped, so an annotator sees a model's ``<script>`` as
the literal text it produced (which matters for judging it) while Markdown still renders;
the HTML then goes through nh3 (the Ammonia sanitiser) with a small allow-list (no scripts,
event handlers or styles; links only to http(s)/mailto, with ``rel="noopener noreferrer
nofollow"``); and pages send a strict Content-Security-Policy.

Bounded cost: any text may reach the renderer (an imported response, a model's output), so
rendering must never raise and never take long, or one text stalls or breaks every annotator
who draws it. Python-Markdown recursed once per nesting level (``"* " * 1000`` raised
RecursionError) and was quadratic in bracket runs and blocks (``"[" * 5000`` took 6 s); the
parser here is markdown-it-py (CommonMark, linear by design, nesting capped by
``maxNesting``), and a text is shown as escaped plain text instead when it is longer than
``MARKDOWN_MAX_CHARS``, opens more than ``MARKDOWN_MAX_BRACKETS`` brackets, nests deeper than
``MARKDOWN_MAX_DEPTH`` (markdown-it would drop what lies deeper: an annotator must see all
of a text), or fails for any other reason. Plain text goes through the same sanitiser.
"""

import functools
import html
import logging
import re
import threading

import nh3
from markdown_it import MarkdownIt

logger = logging.getLogger(__name__)

ALLOWED_TAGS = {
    "p", "br", "hr", "pre", "code", "blockquote", "em", "strong", "del", "sup", "sub",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody",
    "tr", "th", "td", "kbd",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = {"http", "https", "mailto"}

# Longer texts are shown as plain text: markdown-it-py spends up to ~70 µs a character on
# the worst inputs found (runs of "![x"), so 20k characters stay under ~1.5 s once per text
# and process (rendered texts are cached), and real answers are far shorter.
MARKDOWN_MAX_CHARS = 20_000
# Each "[" may start a link whose label the parser looks for; a few hundred cover any real
# text, thousands are an attack on the link parser.
MARKDOWN_MAX_BRACKETS = 500
# Token nesting (a list level is two: the list and its item); deeper texts are plain text.
MARKDOWN_MAX_DEPTH = 20
_PARSER_MAX_NESTING = MARKDOWN_MAX_DEPTH + 4

_local = threading.local()


def _markdown() -> MarkdownIt:
    """One configured parser per thread (cheap to keep, and no state shared across threads)."""
    md = getattr(_local, "md", None)
    if md is None:
        # html=False: raw HTML in the text is escaped, never passed through.
        md = MarkdownIt("commonmark", {"html": False, "maxNesting": _PARSER_MAX_NESTING})
        md.enable("table")
        # markdown-it would print a link to a refused scheme as its raw source text; keep
        # the link and let nh3 drop the href (one rule for URLs, the sanitiser's).
        md.validateLink = lambda url: True
        _local.md = md
    return md


def _clean(markup: str) -> str:
    return nh3.clean(
        markup,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


_BLANK_LINES = re.compile(r"\n[ \t]*\n+")


def plain_text_html(text: str) -> str:
    """Escaped text in paragraphs (blank lines) and line breaks: linear, never raises."""
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = [p for p in _BLANK_LINES.split(text) if p.strip()]
    return "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)


def _markdown_refusal(text: str) -> str | None:
    """Why ``text`` is shown as plain text without trying Markdown, or None."""
    if len(text) > MARKDOWN_MAX_CHARS:
        return f"longer than {MARKDOWN_MAX_CHARS} characters"
    if text.count("[") > MARKDOWN_MAX_BRACKETS:
        return f"more than {MARKDOWN_MAX_BRACKETS} brackets"
    return None


def _render(text: str) -> str:
    refusal = _markdown_refusal(text)
    if refusal is None:
        try:
            md = _markdown()
            tokens = md.parse(text)
            if any(token.level >= MARKDOWN_MAX_DEPTH for token in tokens):
                refusal = f"nested deeper than {MARKDOWN_MAX_DEPTH} levels"
            else:
                return md.renderer.render(tokens, md.options, {})
        except Exception as exc:  # a parser bug must not break the page: show the text
            refusal = f"the Markdown parser failed ({type(exc).__name__})"
    logger.warning("text of %d characters shown as plain text: %s", len(text), refusal)
    return plain_text_html(text)


@functools.lru_cache(maxsize=4096)
def markdown_to_safe_html(text: str) -> str:
    """Cached by the text itself: a task's prompt and responses are shown to k annotators,
    and a held task is shown again on reload, so the same texts come back often."""
    return _clean(_render(text or ""))
