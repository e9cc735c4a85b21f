"""Escaping and number formatting shared by the report's pages: text from a run reaches a page only through
:func:`esc` (or :func:`attr`), numbers only through :func:`fmt` or after ``float()``."""

from __future__ import annotations

import html

from .data import number


def esc(s) -> str:
    """HTML-escape any value's text (quotes included)."""
    return html.escape("" if s is None else str(s), quote=True)


def attr(s) -> str:
    """A quoted attribute value."""
    return f'"{esc(s)}"'


def fmt(v) -> str:
    """A table cell: numbers compactly, strings escaped, anything else empty."""
    if isinstance(v, bool):
        return esc(v)
    f = number(v)
    if f is None:
        return esc(v) if isinstance(v, str) else ("&ndash;" if v is None else "")
    if isinstance(v, int):
        return str(v)
    a = abs(f)
    return f"{f:.3f}" if a < 10 else f"{f:.1f}" if a < 1000 else f"{f:.0f}"
