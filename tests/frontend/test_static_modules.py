"""Page scripts are ES modules: each must be served as JavaScript and every import resolve.

A browser refuses a module script served with any other MIME type, and one import that
404s stops the whole page's script; neither shows in a server log. This walks every
``<script type="module">`` in the templates and its relative imports, through WhiteNoise
(what serves static files in production), finding files from the apps' static folders.
"""

import posixpath
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.templatetags.static import static
from django.test import Client, override_settings

MODULE_TAG = re.compile(r"""<script type="module" src="\{% static '([^']+)' %\}"></script>""")
IMPORT = re.compile(r"""^import .* from "(\.{1,2}/[^"]+)";$""", re.MULTILINE)
JAVASCRIPT = ("text/javascript", "application/javascript")


def _page_modules() -> set[str]:
    found = set()
    for template in Path(settings.BASE_DIR).glob("*/templates/**/*.html"):
        found.update(MODULE_TAG.findall(template.read_text()))
    return found


def test_the_annotation_quality_and_run_pages_load_module_scripts():
    assert {"frontend/annotate/main.js", "frontend/quality.js", "rlhf/run_live.js"} <= (
        _page_modules()
    )


@override_settings(WHITENOISE_USE_FINDERS=True, WHITENOISE_AUTOREFRESH=True)
def test_every_module_and_its_imports_are_served_as_javascript():
    client = Client()
    seen, todo = set(), sorted(_page_modules())
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        response = client.get(static(path))
        assert response.status_code == 200, path
        assert response["Content-Type"].split(";")[0] in JAVASCRIPT, path
        source = b"".join(response.streaming_content).decode()
        for relative in IMPORT.findall(source):
            todo.append(posixpath.normpath(posixpath.join(posixpath.dirname(path), relative)))
    assert "frontend/dom.js" in seen
    assert {"pairwise", "ranking", "rubric", "correction"} <= {
        posixpath.basename(p).removesuffix(".js") for p in seen
    }


@pytest.mark.parametrize("name", ["page.js", "page.mjs"])
def test_whitenoise_names_js_and_mjs_javascript(name):
    from whitenoise.media_types import MediaTypes

    assert MediaTypes().get_type(name) in JAVASCRIPT
