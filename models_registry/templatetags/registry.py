"""Template filters of the registry pages."""

import json

from django import template

register = template.Library()


@register.filter
def evidence_value(value) -> str:
    """A value of an audit event's evidence as a reader expects it: nested data as JSON (never
    a Python repr), numbers and text as they are."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if value is None:
        return "—"
    return str(value)
