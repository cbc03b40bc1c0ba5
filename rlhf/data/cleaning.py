"""Text cleaning and personal-data scrubbing, one text at a time, every change counted.

Order matters and is fixed: Unicode NFC first (so later patterns see one form of each
character), then control and zero-width characters, stray HTML, personal data, whitespace,
and last the length limits. Each step has a cheap test that skips it for texts that cannot
need it (most texts are plain ASCII prose), which keeps the pipeline above 10,000 labels/s.

Personal data becomes a typed placeholder (``[EMAIL]``, ``[PHONE]``...) so a model trained on
the data learns that something was there without learning what. Patterns are deliberately
conservative where a false hit would damage text people care about: a phone number needs a
phone's shape (a ``+`` country code, a bracketed area code, 3-3-4 groups or a 0-prefixed
trunk number), never just "a long number", and a card number must pass the Luhn check.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

PII_TYPES = (
    "private_key",
    "jwt",
    "bearer_token",
    "api_key",
    "email",
    "credit_card",
    "phone",
)
PLACEHOLDERS = {
    "private_key": "[PRIVATE_KEY]",
    "jwt": "[JWT]",
    "bearer_token": "[TOKEN]",
    "api_key": "[API_KEY]",
    "email": "[EMAIL]",
    "credit_card": "[CREDIT_CARD]",
    "phone": "[PHONE]",
}
DROP_REASONS = ("empty", "near_empty", "too_long")


@dataclass(frozen=True)
class CleaningConfig:
    """What cleaning does to every prompt turn, response and corrected answer.

    normalize_unicode: NFC, so "e" + combining acute and the precomposed "é" become one form
        (otherwise exact de-duplication and the tokenizer see two different strings).
    strip_control: drop C0/C1 control characters (keeping newline and tab), zero-width
        characters (ZWSP, ZWNJ, word joiner, BOM, soft hyphen; ZWJ only outside emoji) and
        bidirectional overrides, which can hide or reorder text ("Trojan Source").
    strip_html: remove markup tags of real HTML elements (not ``List<int>``), whole
        script/style blocks and comments, and decode entities; fenced and inline code is
        left as written, since an answer about HTML quotes tags on purpose.
    scrub_pii: replace the ``pii_types`` found by typed placeholders.
    normalize_whitespace: CRLF to LF, exotic spaces to a space, trailing spaces cut, more
        than two blank lines collapsed, ends trimmed; indentation is kept (code).
    min_chars: a text with fewer non-space characters than this after cleaning is dropped
        ("near_empty"; "empty" at zero).
    max_chars: a text longer than this after cleaning is dropped ("too_long"); for a prompt
        the limit applies to all its turns together. Prompts that are merely long for a
        model are truncated at export instead, never dropped.
    """

    normalize_unicode: bool = True
    strip_control: bool = True
    strip_html: bool = True
    scrub_pii: bool = True
    pii_types: tuple[str, ...] = PII_TYPES
    normalize_whitespace: bool = True
    min_chars: int = 2
    max_chars: int = 20_000

    def __post_init__(self):
        unknown = set(self.pii_types) - set(PII_TYPES)
        if unknown:
            raise ValueError(f"unknown PII types {sorted(unknown)}; known: {list(PII_TYPES)}")
        if self.min_chars < 0 or self.max_chars < max(self.min_chars, 1):
            raise ValueError("need 0 <= min_chars <= max_chars and max_chars >= 1")


# Control characters except \t and \n; \r is handled by whitespace normalisation.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_EMOJI = "\U0001f000-\U0001faff\u2600-\u27bf\ufe0f"
_ANY_INVISIBLE = re.compile("[\u200b-\u200f\u2060\ufeff\u00ad\u180e\u202a-\u202e\u2066-\u2069]")
_INVISIBLE = re.compile(
    "[\u200b\u200c\u2060\ufeff\u00ad\u180e\u202a-\u202e\u2066-\u2069\u200e\u200f]"
    f"|(?<![{_EMOJI}])\u200d|\u200d(?![{_EMOJI}])"
)
_HTML_ELEMENTS = (
    "a|abbr|address|article|aside|audio|b|big|blink|blockquote|body|br|button|canvas|caption|"
    "center|cite|code|col|colgroup|dd|del|details|dfn|dialog|div|dl|dt|em|embed|fieldset|"
    "figcaption|figure|font|footer|form|frame|frameset|h[1-6]|head|header|hr|html|i|iframe|img|"
    "input|ins|kbd|label|legend|li|link|main|mark|marquee|meta|nav|noscript|object|ol|optgroup|"
    "option|output|p|param|picture|pre|q|s|samp|section|select|small|source|span|strike|strong|"
    "sub|summary|sup|svg|table|tbody|td|template|textarea|tfoot|th|thead|time|title|tr|track|"
    "tt|u|ul|var|video|wbr"
)
_HTML_BLOCK = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HTML_LINE_BREAK = re.compile(r"<(?:br|/p|/div|/li|/tr|/h[1-6])\b[^>]*>", re.IGNORECASE)
_HTML_TAG = re.compile(
    rf"</?(?:{_HTML_ELEMENTS})\b(?:[^<>\"']|\"[^\"]*\"|'[^']*')*/?>|<!doctype[^>]*>",
    re.IGNORECASE,
)
_HTML_ENTITY = re.compile(r"&(?:#\d{1,7}|#x[0-9a-f]{1,6}|[a-z][a-z0-9]{1,31});", re.IGNORECASE)
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]+`", re.DOTALL)

_PII = re.compile(
    r"(?P<private_key>-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z))"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
    r"|(?P<bearer_token>(?<=[Bb]earer )[A-Za-z0-9\-._~+/]{16,}=*)"
    r"|(?P<api_key>\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}"
    r"|glpat-[A-Za-z0-9_-]{20})(?![A-Za-z0-9]))"
    r"|(?P<email>\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b)"
    r"|(?P<credit_card>(?<![\d.+])[2-6](?:[ -]?\d){12,18}(?!\d|\.\d))"  # IIN 2-6
    r"|(?P<phone>(?<![\w+.])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"  # +44 20 7946 0958
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"  # (555) 123-4567
    r"|\d{3}(?P<sep>[.-])\d{3}(?P=sep)\d{4}|\d{3} \d{3} \d{4}"  # 555-123-4567, 555.123.4567
    r"|0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4}"  # 020 7946 0958, 07911 123456
    r")(?!\w|[.-]\d))"
)
# A control character, or a hint of personal data: every e-mail has an @, every phone or
# card number a digit, GitHub tokens an underscore.
_SUSPICIOUS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f0-9@_]")
_EXOTIC_SPACE = re.compile("[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\u2028\u2029\x0b\x0c]")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n{3,}")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number carries (ISO/IEC 7812)."""
    total, double = 0, False
    for ch in reversed(digits):
        d = ord(ch) - 48
        if double:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        double = not double
    return total % 10 == 0


class TextCleaner:
    """Applies a ``CleaningConfig`` and counts what it changed and dropped.

    ``changed`` counts texts per step that altered them; ``pii`` counts replacements per
    type; ``dropped`` counts texts per drop reason. Counters merge across worker processes.
    """

    def __init__(self, config: CleaningConfig):
        self.config = config
        self.changed: Counter[str] = Counter()
        self.pii: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.texts = 0
        self._pii_types = frozenset(config.pii_types)

    def clean(self, text: str) -> str:
        """The cleaned text (possibly empty); length limits are checked by ``verdict``."""
        config = self.config
        self.texts += 1
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        ascii_only = text.isascii()
        if config.normalize_unicode and not ascii_only:
            normal = unicodedata.normalize("NFC", text)
            if normal != text:
                self.changed["nfc"] += 1
                text = normal
        # One scan for the two commonest questions: any control character, any PII hint?
        suspicious = _SUSPICIOUS.search(text) is not None or not ascii_only
        if config.strip_control and suspicious:
            if _CONTROL.search(text):
                text = _CONTROL.sub("", text)
                self.changed["control"] += 1
            if not ascii_only and _ANY_INVISIBLE.search(text):
                text = _INVISIBLE.sub("", text)
                self.changed["zero_width"] += 1
        if config.strip_html and ("<" in text or "&" in text):
            stripped = _outside_code(text, _strip_html)
            if stripped != text:
                self.changed["html"] += 1
                text = stripped
        if config.scrub_pii and (suspicious or _may_hold_secret(text)):
            text = _PII.sub(self._replace_pii, text)
        if config.normalize_whitespace and (suspicious or _may_need_spacing(text, ascii_only)):
            spaced = _normalize_whitespace(text)
            if spaced != text:
                self.changed["whitespace"] += 1
                text = spaced
        return text

    def verdict(self, text: str, *, limit: int | None = None) -> str | None:
        """The drop reason for a cleaned text (counted), or None to keep it."""
        if len(text) < self.config.min_chars + 64:
            visible = len(text.strip())
            if visible < self.config.min_chars:
                reason = "empty" if visible == 0 else "near_empty"
                self.dropped[reason] += 1
                return reason
        if len(text) > (limit or self.config.max_chars):
            self.dropped["too_long"] += 1
            return "too_long"
        return None

    def _replace_pii(self, match: re.Match) -> str:
        kind = match.lastgroup
        value = match.group(kind)
        if kind not in self._pii_types:
            return value
        if kind == "credit_card":
            if not luhn_valid(value.replace(" ", "").replace("-", "")):
                return value
        elif kind == "phone" and not 7 <= sum(c.isdigit() for c in value) <= 15:
            return value
        self.pii[kind] += 1
        return PLACEHOLDERS[kind]

    def report(self) -> dict:
        return {
            "texts": self.texts,
            "changed": dict(sorted(self.changed.items())),
            "pii": dict(sorted(self.pii.items())),
            "dropped": dict(sorted(self.dropped.items())),
        }


def _may_hold_secret(text: str) -> bool:
    # Substring tests run at memchr speed; the full pattern runs only on texts that pass.
    return (
        "sk-" in text
        or "eyJ" in text
        or "earer " in text
        or "AKIA" in text
        or "ASIA" in text
        or "xox" in text
        or "AIza" in text
        or "-----BEGIN" in text
    )


def _may_need_spacing(text: str, ascii_only: bool) -> bool:
    return (
        text[:1].isspace()
        or text[-1:].isspace()
        or "\r" in text
        or " \n" in text
        or "\t\n" in text
        or "\n\n\n" in text
        or (not ascii_only and _EXOTIC_SPACE.search(text) is not None)
    )


def _outside_code(text: str, fn) -> str:
    """Apply ``fn`` to the parts of ``text`` outside Markdown code spans and fences."""
    if "`" not in text:
        return fn(text)
    out, last = [], 0
    for match in _CODE.finditer(text):
        out.append(fn(text[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(fn(text[last:]))
    return "".join(out)


def _strip_html(text: str) -> str:
    if "<" in text:
        text = _HTML_BLOCK.sub("", text)
        text = _HTML_COMMENT.sub("", text)
        text = _HTML_LINE_BREAK.sub("\n", text)
        text = _HTML_TAG.sub("", text)
    if "&" in text:
        text = _HTML_ENTITY.sub(lambda m: html.unescape(m.group(0)), text)
    return text


def _normalize_whitespace(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _EXOTIC_SPACE.sub(" ", text)
    text = _TRAILING_SPACE.sub("", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()
