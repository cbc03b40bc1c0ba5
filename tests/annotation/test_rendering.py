"""Untrusted text renders as inert HTML: raw HTML is shown as text, never interpreted."""

import pytest

from annotation.rendering import markdown_to_safe_html

HOSTILE = [
    ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ('<img src=x onerror="alert(1)">', '&lt;img src=x onerror="alert(1)"&gt;'),
    ("<svg onload=alert(1)>", "&lt;svg onload=alert(1)&gt;"),
    ('<a href="javascript:alert(1)">x</a>', '&lt;a href="javascript:alert(1)"&gt;x&lt;/a&gt;'),
]


@pytest.mark.parametrize(("text", "escaped"), HOSTILE)
def test_raw_html_is_shown_as_text(text, escaped):
    html = markdown_to_safe_html(text)
    assert escaped in html
    for tag in ("<script", "<img", "<svg"):
        assert tag not in html


def test_markdown_links_to_javascript_lose_their_href():
    html = markdown_to_safe_html("[click](javascript:alert(1)) and [ok](https://example.org)")
    assert "javascript:" not in html
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">ok</a>' in html


def test_markdown_still_renders():
    html = markdown_to_safe_html("**bold**\n\n```python\nprint('<b>')\n```")
    assert "<strong>bold</strong>" in html
    assert "print(&#39;&lt;b&gt;&#39;)" in html or "print('&lt;b&gt;')" in html


def test_rendering_is_cached_by_text():
    # given a text rendered once
    text = "A **cached** answer, rendered for the k annotators who see it."
    first = markdown_to_safe_html(text)
    hits = markdown_to_safe_html.cache_info().hits
    # when it is rendered again, then the stored HTML is returned
    assert markdown_to_safe_html(text) == first
    assert markdown_to_safe_html.cache_info().hits == hits + 1


def test_threads_rendering_at_once_get_their_own_results():
    # A converter keeps state while it works; threads must never see each other's output.
    import threading

    texts = [f"# Title {n}\n\n* item {n}\n* **bold {n}**\n\n`code {n}`" for n in range(200)]
    expected = {}
    for text in texts:
        expected[text] = markdown_to_safe_html.__wrapped__(text)
    got, errors = {}, []

    def render(chunk):
        try:
            for text in chunk:
                got[text] = markdown_to_safe_html.__wrapped__(text)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=render, args=(texts[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert got == expected


# Hostile Markdown: each text below crashed (RecursionError) or stalled (quadratic) the
# renderer, and with it every annotator who drew the task.
HOSTILE_MARKDOWN = {
    "nested list markers": "* " * 1000 + "x",
    "nested numbered lists": "1. " * 1000 + "x",
    "nested by indentation": "\n".join("    " * k + "- x" for k in range(300)),
    "nested quotes": "> " * 5000 + "x",
    "open brackets": "[" * 10_000,
    "open images": "![x" * 4000,
    "unclosed links": "[x](" * 4000,
    "setext headings": "a\n===\n" * 4000,
    "thematic breaks": "- - -\n" * 5000,
    "brackets under the size bound": "[" * 400 + "a](b) " * 3000,
    "setext under the size bound": "a\n===\n" * 3000,
    "huge text": "**bold** and [a link](https://example.org)\n\n" * 5000,
}


@pytest.mark.parametrize("name", HOSTILE_MARKDOWN)
def test_hostile_markdown_renders_quickly_and_shows_all_of_the_text(name):
    import time

    # given a text built to crash or stall a Markdown parser
    text = HOSTILE_MARKDOWN[name] + "\n\nlast words"
    # when it is rendered (uncached; CPU time, so a busy machine does not fail the test)
    started = time.process_time()
    html = markdown_to_safe_html.__wrapped__(text)
    elapsed = time.process_time() - started
    # then it comes back fast, as inert HTML, with the text's last word still in it
    assert elapsed < 2.0, f"{name}: {elapsed:.2f} s"
    assert "<script" not in html
    assert "last words" in html


def test_a_text_nested_too_deep_is_shown_as_escaped_plain_text():
    html = markdown_to_safe_html("* " * 1000 + "<script>alert(1)</script>")
    assert html.startswith("<p>* * * ")
    assert html.endswith("&lt;script&gt;alert(1)&lt;/script&gt;</p>")


def test_plain_text_keeps_paragraphs_and_line_breaks():
    from annotation.rendering import plain_text_html

    assert plain_text_html("a <b>\nc\n\n\nd") == "<p>a &lt;b&gt;<br>c</p><p>d</p>"


def test_a_parser_failure_is_shown_as_plain_text(monkeypatch):
    from annotation import rendering

    def broken(text):
        raise RuntimeError("parser bug")

    monkeypatch.setattr(rendering, "_markdown", lambda: type("M", (), {"parse": broken})())
    html = rendering.markdown_to_safe_html.__wrapped__("**x** <i>")
    assert html == "<p>**x** &lt;i&gt;</p>"


def test_tables_and_nested_lists_still_render():
    html = markdown_to_safe_html("* a\n  * b\n\n| h | i |\n|---|---|\n| 1 | 2 |")
    assert "<ul>" in html
    assert html.count("<li>") == 2
    assert "<th>h</th>" in html
    assert "<td>2</td>" in html
