"""``printable``: values read from AWS, escaped so that a terminal shows them and obeys nothing."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from infra.cli.printable import printable

# What a terminal acts on rather than shows (Unicode categories Cc, Cf, Cs, Zl, Zp).
ESCAPED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("\x1b[2K\rOK: no findings", r"\x1b[2K\rOK: no findings"),  # erase the line, back to its start
        ("\x00\x07\x08\t\n\x0b\x1f", r"\x00\x07\x08\t\n\x0b\x1f"),  # C0
        ("\x7f", r"\x7f"),  # DEL
        ("\x80\x85\x9b2J\x9f", r"\x80\x85\x9b2J\x9f"),  # C1, among them CSI (U+009B)
        ("user\u202egnp.exe", r"user\u202egnp.exe"),  # right-to-left override
        (
            "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069",
            r"\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069",
        ),
        ("a\u200bb\ufeff\u00ad", r"a\u200bb\ufeff\xad"),  # invisible: zero-width space, BOM, soft hyphen
        ("\u2028\u2029", r"\u2028\u2029"),  # line and paragraph separators
        ("\U000e0041\U000e0042", r"\U000e0041\U000e0042"),  # tag characters: text a reader cannot see
        ("\ud800", r"\ud800"),  # a lone surrogate would make print() fail
        # Shown as they are:
        ("ses-smtp-user.20190520-101010", "ses-smtp-user.20190520-101010"),
        ("Zoë, 日本語, emoji 📨", "Zoë, 日本語, emoji 📨"),
        ("C:\\path\\x1b", "C:\\path\\x1b"),  # backslashes are not escaped
        ("", ""),
        (42, "42"),
        (None, "None"),
        (ValueError("bad\x1b[31m"), r"bad\x1b[31m"),
    ],
)
def test_printable_escapes_controls_and_keeps_the_rest(value: object, shown: str) -> None:
    assert printable(value) == shown


def test_no_code_point_that_a_terminal_acts_on_survives() -> None:
    every = "".join(chr(c) for c in range(sys.maxunicode + 1))
    shown = printable(every)
    assert not [c for c in shown if unicodedata.category(c) in ESCAPED]
    kept = "".join(c for c in every if unicodedata.category(c) not in ESCAPED)
    assert printable(kept) == kept  # every other character is shown as it is
    shown.encode("utf-8")  # no lone surrogate left: printable on any terminal that takes UTF-8
