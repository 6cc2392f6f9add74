"""The static HTML report: one self-contained file (inline CSS and JS, plots embedded) with sortable tables."""
from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

from typing import TYPE_CHECKING

import pandas as pd

from bench.reporting.board_display import best_line, comparisons_frame, display_frame

if TYPE_CHECKING:
    from bench.reporting.boards import Board
    from bench.reporting.latency_figures import LatencyFigure

# numeric sort key of each displayed column (the board column holding the raw value)
SORT_KEYS = {"rank": "rank", "n": "seeds", "executed MACs (M)": "executed_macs_mean",
             "MAC saving vs dense (%)": "mac_saving",
             "params (k)": "params", "train time (s)": "train_seconds_mean"}

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; padding: 0 1rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { cursor: pointer; background: #f4f4f4; user-select: none; }
th[aria-sort=ascending]::after { content: " ▲"; } th[aria-sort=descending]::after { content: " ▼"; }
td.text, th.text { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5rem 0; }
.notes { color: #555; font-size: 12px; }
"""

# Click a header to sort by it (numbers by their data-sort value); click again to reverse.
SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (header, column) {
    header.addEventListener("click", function () {
      var ascending = header.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.sort, y = b.cells[column].dataset.sort;
        var nx = parseFloat(x), ny = parseFloat(y);
        var order = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _table(board: "Board", select_on: str | None, latency: "list[LatencyFigure]") -> str:
    shown = display_frame(board, select_on, latency)
    raw = board.rows
    score_column = next(c for c in shown.columns if c.startswith("test "))
    val_column = next(c for c in shown.columns if c.startswith("val "))
    sort_source = {**SORT_KEYS, val_column: "val_score_mean"}
    if select_on != "val":
        sort_source[score_column] = "score_mean"
    head = "".join(f'<th class="{"text" if c not in sort_source else "num"}">{html.escape(c)}</th>' for c in shown.columns)
    rows = []
    for (_, raw_row), (_, row) in zip(raw.iterrows(), shown.iterrows()):
        cells = []
        for column in shown.columns:
            key = raw_row[sort_source[column]] if column in sort_source else row[column]
            key = "" if pd.isna(key) else key
            css = "num" if column in sort_source else "text"
            cells.append(f'<td class="{css}" data-sort="{html.escape(str(key))}">{html.escape(str(row[column]))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _comparisons(board: "Board", select_on: str | None) -> str:
    """The paired control comparisons of a board, as a plain table (empty when nothing is matched)."""
    shown = comparisons_frame(board, select_on)
    if shown.empty:
        return ""
    head = "".join(f'<th class="text">{html.escape(c)}</th>' for c in shown.columns)
    body = "".join("<tr>" + "".join(f'<td class="text">{html.escape(str(v))}</td>' for v in row) + "</tr>"
                   for row in shown.itertuples(index=False))
    return f"<h3>Matched controls</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _latency(board: "Board", latency: "list[LatencyFigure]") -> str:
    """The board's realized-latency table and how it was timed (empty when nothing was timed)."""
    from bench.reporting.latency_figures import latency_frame

    found = latency_frame(board, latency)
    if found is None:
        return ""
    line, shown = found
    head = "".join(f'<th class="text">{html.escape(c)}</th>' for c in shown.columns)
    body = "".join("<tr>" + "".join(f'<td class="text">{html.escape(str(v))}</td>' for v in row) + "</tr>"
                   for row in shown.itertuples(index=False))
    return f'<h3>Realized latency</h3><p class="notes">{html.escape(line)}</p><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_report(path: Path, boards: "list[Board]", figures: dict[str, dict[str, Path]], notes: list[str],
                 select_on: str | None = None, latency: "list[LatencyFigure] | None" = None) -> Path:
    """Write `report.html`: per board (setting) a sortable table, its best row, Pareto plot and heat map."""
    sections, contents = [], []
    for board in boards:
        anchor = html.escape(board.folder.replace("/", "-"))
        images = "".join(_image(figure, f"{board.title} {name}") for name, figure in figures.get(board.folder, {}).items())
        kind = "" if board.kind == "result" else f" <small>({html.escape(board.kind)}, not a result)</small>"
        best = html.escape(best_line(board, select_on=select_on).replace("**", ""))
        sections.append(f'<section id="{anchor}"><h2>{html.escape(board.title)}{kind}</h2><p>{best}</p>'
                        f'{_table(board, select_on, latency or [])}{_comparisons(board, select_on)}{_latency(board, latency or [])}'
                        f'{images}</section>')
        contents.append(f'<li><a href="#{anchor}">{html.escape(board.title)}</a>{kind}</li>')
    contents = "".join(contents)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    notes_html = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    path.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>DynBench report</title>
<link rel="icon" href="data:,"><style>{STYLE}</style></head>
<body><h1>DynBench report</h1>
<p>Built by <code>make tables</code> from the run records in <code>results/runs/</code> ({generated}). Click a column header to sort.</p>
<ul>{contents}</ul>{"".join(sections)}
<ul class="notes">{notes_html}</ul>
<script>{SCRIPT}</script></body></html>
""")
    return path
