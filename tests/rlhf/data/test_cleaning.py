"""Cleaning and personal-data scrubbing, step by step, with hostile inputs."""

import pytest

from rlhf.data.cleaning import CleaningConfig, TextCleaner, luhn_valid


@pytest.fixture
def cleaner():
    return TextCleaner(CleaningConfig())


def test_nfc_joins_combining_marks_into_one_form(cleaner):
    # given "café" twice: precomposed é, and e + combining acute accent
    composed, decomposed = "caf\u00e9", "cafe\u0301"

    # when both are cleaned
    a, b = cleaner.clean(composed), cleaner.clean(decomposed)

    # then they are the same string, and one change was counted
    assert a == b == "caf\u00e9"
    assert cleaner.changed["nfc"] == 1


def test_control_and_zero_width_characters_are_removed(cleaner):
    # given text with NUL, bell, ZWSP, ZWNJ, word joiner, BOM, soft hyphen and a bidi override
    text = "pa\x00ss\x07word\u200b is\u200c sec\u2060ret\ufeff in\u00advisible \u202eevil"

    # when cleaned
    out = cleaner.clean(text)

    # then only the visible characters remain
    assert out == "password is secret invisible evil"
    assert cleaner.changed["control"] == 1
    assert cleaner.changed["zero_width"] == 1


def test_zero_width_joiner_inside_an_emoji_sequence_is_kept(cleaner):
    # given a family emoji (joined by ZWJ) and a ZWJ between two letters
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"

    # when cleaned
    out = cleaner.clean(f"{family} a\u200db")

    # then the emoji keeps its joiners and the stray one goes
    assert out == f"{family} ab"


def test_tabs_and_newlines_survive_control_stripping(cleaner):
    assert cleaner.clean("def f():\n\treturn 1") == "def f():\n\treturn 1"


def test_stray_html_is_stripped_and_entities_decoded(cleaner):
    # given markup pasted from a web page
    text = (
        '<div class="x"><p>Hello&nbsp;<b>world</b> &amp; friends</p>'
        "<script>alert('x')</script><!-- hidden --><br/>Bye</div>"
    )

    # when cleaned
    out = cleaner.clean(text)

    # then tags, the script and the comment are gone; text and line breaks remain
    assert out == "Hello world & friends\n\nBye"
    assert cleaner.changed["html"] == 1


def test_code_that_looks_like_html_is_left_alone(cleaner):
    # given generics, comparisons and HTML quoted inside code spans
    text = "Use `<br>` for breaks.\n```html\n<p>hi</p>\n```\nList<int> x; if a < b && c > d"

    # when cleaned
    out = cleaner.clean(text)

    # then nothing changed
    assert out == text
    assert cleaner.changed["html"] == 0


def test_whitespace_is_normalised_but_indentation_kept(cleaner):
    # given CRLF, trailing spaces, NBSP, many blank lines and outer space
    text = "  line one  \r\n\u00a0\u00a0indented\r\n\r\n\r\n\r\n    code()  \n "

    # when cleaned
    out = cleaner.clean(text)

    # then
    assert out == "line one\n  indented\n\n    code()"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at jane.doe+rlhf@example.co.uk now", "mail me at [EMAIL] now"),
        ("Call +1 (555) 123-4567 today", "Call [PHONE] today"),
        ("call 555-123-4567 or 555.123.4567", "call [PHONE] or [PHONE]"),
        ("office: (555) 123 4567", "office: [PHONE]"),
        ("London +44 20 7946 0958", "London [PHONE]"),
        ("mobile 07911 123456", "mobile [PHONE]"),
        ("Berlin +49 30 12345678", "Berlin [PHONE]"),
        ("card 4111 1111 1111 1111 ok", "card [CREDIT_CARD] ok"),
        ("Call me at 555-123-4567.", "Call me at [PHONE]."),
        ("Pay with 4111111111111111.", "Pay with [CREDIT_CARD]."),
        ("card 5500-0000-0000-0004", "card [CREDIT_CARD]"),
        ("amex 378282246310005", "amex [CREDIT_CARD]"),
        ("key sk-proj-abcdefghijklmnopqrstuvwxyz0123", "key [API_KEY]"),
        ("token ghp_" + "a1B2" * 9, "token [API_KEY]"),
        ("aws AKIAIOSFODNN7EXAMPLE here", "aws [API_KEY] here"),
        ("Authorization: Bearer abcdef0123456789ABCDEF.xyz", "Authorization: Bearer [TOKEN]"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
            "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "jwt [JWT]",
        ),
    ],
)
def test_personal_data_becomes_typed_placeholders(cleaner, text, expected):
    assert cleaner.clean(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The meeting is on 2024-03-15 at 10:30.",
        "Server 192.168.1.100 answered in 1,234 ms.",
        "Version 1.2.3456 fixed 10 000 000 rows.",
        "Order 4111 1111 1111 1112 failed the check.",  # not Luhn-valid
        "Population: 1234567890123 people",  # 13 digits that fail the Luhn check
        "use List<String> and x@y",
        "The sky-is-blue and gh_pages are fine.",
        "Pi is 3.14159265358979",
    ],
)
def test_numbers_and_text_that_are_not_personal_data_stay(text):
    # given a cleaner; when the text is cleaned; then it is unchanged and nothing counted
    cleaner = TextCleaner(CleaningConfig())
    out = cleaner.clean(text)
    # the 13-digit example is a fair one only because it fails the Luhn check
    assert not luhn_valid("1234567890123")
    assert out == text
    assert sum(cleaner.pii.values()) == 0


def test_pii_counts_per_type_and_types_can_be_turned_off():
    # given a cleaner that scrubs only e-mails
    cleaner = TextCleaner(CleaningConfig(pii_types=("email",)))

    # when a text with two e-mails and a phone is cleaned
    out = cleaner.clean("a@b.io, c@d.org, +1 555 123 4567")

    # then only the e-mails are replaced, and counted
    assert out == "[EMAIL], [EMAIL], +1 555 123 4567"
    assert dict(cleaner.pii) == {"email": 2}


def test_luhn():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "empty"), ("   \n ", "empty"), ("k", "near_empty"), ("ok", None), ("x" * 51, "too_long")],
)
def test_length_verdicts(text, reason):
    # given limits of 2 to 50 characters
    cleaner = TextCleaner(CleaningConfig(min_chars=2, max_chars=50))

    # when the cleaned text is judged
    verdict = cleaner.verdict(cleaner.clean(text))

    # then the reason is the expected one, and counted
    assert verdict == reason
    assert dict(cleaner.dropped) == ({reason: 1} if reason else {})


def test_unknown_pii_type_is_refused():
    with pytest.raises(ValueError, match="unknown PII types"):
        CleaningConfig(pii_types=("ssn",))
