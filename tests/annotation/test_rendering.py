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
