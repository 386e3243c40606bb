"""Go's text/tabwriter, as docker configures it: minwidth 10, tabwidth 1, padding 3, spaces.

A cell is text ending in a tab; the text after a line's last tab is not part of any column. A
column block is a run of consecutive lines that have a cell in that column; each block gets the
width of its widest cell plus the padding (at least minwidth). This is the same recursive
algorithm as Go's ``Writer.format``, so ragged tables lay out the same way.
"""

from __future__ import annotations


def _width(text: str) -> int:
    return len(text)


def render(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-separated ``text`` (lines end in "\\n") the way docker's tables do."""
    trailing = text.endswith("\n")
    lines = [line.split("\t") for line in text.split("\n")]
    if trailing:
        lines.pop()
    out: list[str] = []
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for cells in lines[line0:line1]:
            parts = []
            for j, cell in enumerate(cells):
                if j < len(widths) and j < len(cells) - 1:
                    parts.append(cell + " " * (widths[j] - _width(cell)))
                else:
                    parts.append(cell)
            out.append("".join(parts))

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, _width(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    fmt(0, len(lines))
    return "\n".join(out) + ("\n" if trailing and out else "")
