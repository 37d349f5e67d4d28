r"""Values read from AWS, made safe to print on a terminal: one function, ``printable``.

A secret's value, a policy document or an error message can hold any character, and a terminal
obeys some of them: ESC and CSI sequences move the cursor and erase lines, a carriage return
overwrites the line, a bidi override reverses what follows. ``printable`` escapes every
character whose Unicode category is Cc (C0, DEL, C1), Cf (format: bidi controls such as U+202E,
zero-width characters, tag characters), Cs (a lone surrogate, which would make printing fail),
Zl or Zp (line and paragraph separators), the way Python writes them in a string literal.
Everything else, including backslashes, is printed as it is::

    >>> printable("\x1b[2K\rOK: no findings")
    '\\x1b[2K\\rOK: no findings'
    >>> print(printable("user\u202egnp.exe"))
    user\u202egnp.exe

Apply it to each value (a table cell, one line of a message), not to a whole multi-line output:
newlines are escaped too. JSON output needs nothing more: ``json.dumps`` escapes these already.
"""

from __future__ import annotations

import unicodedata

_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(value: object) -> str:
    r"""`value` as text (``str(value)``) with every control, format and line-separator character
    escaped visibly (``\x1b``, ``\u202e``): nothing in it can move the cursor, erase or reorder."""
    text = str(value)
    if text.isprintable():  # the usual case; isprintable() is False for every escaped category
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _ESCAPED_CATEGORIES else c for c in text)
