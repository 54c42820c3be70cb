"""Operator- and device-provided text on a terminal, one way for every printer: table cells are plain
text (control and format characters escaped by `core.controls.printable`, `[…]` not read as rich markup);
`plain()` does the same for text put inside a markup string or a plain line."""

from __future__ import annotations

from rich.console import RenderableType
from rich.markup import escape
from rich.style import StyleType
from rich.table import Table
from rich.text import Text

from core.controls import printable


class TextTable(Table):
    """A rich `Table` whose `str` cells are shown as they are, never as markup or terminal control; pass a
    `Text` for a cell that is meant to be styled."""

    def add_row(self, *renderables: RenderableType | None, style: StyleType | None = None,
                end_section: bool = False) -> None:
        super().add_row(*(Text(printable(r)) if isinstance(r, str) else r for r in renderables),
                        style=style, end_section=end_section)


def plain(value: object) -> str:
    """`value` for a rich markup string: control characters escaped and `[` not taken as markup."""
    return escape(printable(value))
