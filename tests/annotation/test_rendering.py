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
