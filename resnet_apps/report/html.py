"""HTML building blocks: the page shell (inline CSS, print rules, a no-network CSP), tables, figures, numbers.

Everything that comes from metrics.json passes through ``esc`` (html.escape); images are inlined as base64
data URIs, so the page is one file that opens offline and prints cleanly.
"""

from __future__ import annotations

import base64
import html
from typing import Any

# The page may load nothing from anywhere: images come as data: URIs, styles inline, no script at all.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

CSS = """
:root { --ink: #1b1f24; --muted: #5a6470; --rule: #d5dbe1; --accent: #1f5f99; --warn-bg: #fff4e5;
        --warn: #8a4b00; --bad-bg: #fdecea; --bad: #8e1b10; --ok-bg: #eaf6ec; --ok: #1e5e2b; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink);
       margin: 0 auto; max-width: 1180px; padding: 24px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 20px; margin: 32px 0 8px; padding-bottom: 4px;
     border-bottom: 2px solid var(--rule); } h3 { font-size: 16px; margin: 20px 0 6px; }
h4, h5, h6 { font-size: 15px; margin: 14px 0 4px; }
.subtitle { color: var(--muted); margin: 0 0 16px; }
nav.toc { columns: 3; font-size: 13px; border: 1px solid var(--rule); padding: 8px 16px; border-radius: 6px; }
nav.toc a { color: var(--accent); text-decoration: none; display: block; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; max-width: 100%; }
th, td { border: 1px solid var(--rule); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f2f5f8; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { overflow-x: auto; max-width: 100%; }
figure { display: inline-block; margin: 8px 16px 8px 0; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--rule); }
figcaption { font-size: 12px; color: var(--muted); max-width: 420px; }
.gallery figure { width: 230px; } .gallery figure img { width: 224px; }
.gallery.wide figure { width: auto; max-width: 100%; }
.gallery.wide figure img { height: 256px; width: auto; max-width: 100%; }
.gallery.wide figcaption { max-width: 512px; }
.gallery figcaption { max-width: none; }
.note { color: var(--muted); font-size: 13px; }
.box { padding: 8px 12px; border-radius: 6px; margin: 8px 0; }
.ok { background: var(--ok-bg); color: var(--ok); } .warn { background: var(--warn-bg); color: var(--warn); }
.bad { background: var(--bad-bg); color: var(--bad); font-weight: 600; }
.sentence { font-size: 16px; border-left: 4px solid var(--accent); padding: 6px 12px; background: #f4f8fc; }
.card { border: 1px solid var(--rule); border-radius: 6px; padding: 4px 16px; }
code, pre { font: 12px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; background: #f4f6f8; }
pre { padding: 8px; overflow-x: auto; white-space: pre-wrap; }
.side { display: flex; gap: 24px; flex-wrap: wrap; } .side > div { flex: 1 1 420px; min-width: 0; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; } nav.toc { display: none; }
  h2 { break-after: avoid; } table, figure, .box, .sentence { break-inside: avoid; }
  a { color: inherit; text-decoration: none; } .scroll { overflow: visible; }
}
"""


def esc(value: Any) -> str:
    """HTML-escaped text of any value (None -> an en dash)."""
    return "–" if value is None else html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: 3 decimals by default, '–' when undefined; integers unchanged."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return esc(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def fmt_ci(row: dict[str, Any], key: str = "value", low: str = "ci_low", high: str = "ci_high") -> str:
    """'0.912 (0.890–0.931)'; without an interval just the value."""
    if row.get(low) is None or row.get(high) is None:
        return fmt(row.get(key))
    return f"{fmt(row.get(key))} ({fmt(row[low])}–{fmt(row[high])})"


def table(
    headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None, raw: bool = False
) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then the caller escaped them already)."""
    numeric = numeric or set()

    def cell(tag: str, j: int, value: Any) -> str:
        cls = ' class="num"' if j in numeric else ""
        return f"<{tag}{cls}>{value if raw else esc(value)}</{tag}>"

    head = "".join(cell("th", j, h if raw else h) for j, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", j, v) for j, v in enumerate(r)) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def sniff_mime(data: bytes) -> str | None:
    """The image type of ``data`` from its magic bytes (only PNG and JPEG are embedded)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return None


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def figure(png: bytes | None, alt: str, caption: str = "") -> str:
    """<figure> with the PNG inlined; empty string when the plot could not be drawn (no data)."""
    if not png:
        return ""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{data_uri(png)}" alt="{esc(alt)}">{cap}</figure>'


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document: ``sections`` are (id, title, inner HTML) in order; a table of contents on top."""
    toc = "".join(f'<a href="#{esc(sid)}">{esc(name)}</a>' for sid, name, _ in sections)
    body = "".join(
        f'<section id="{esc(sid)}"><h2>{esc(name)}</h2>{inner}</section>' for sid, name, inner in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{esc(title)}</h1><p class="subtitle">{esc(subtitle)}</p>'
        f'<nav class="toc">{toc}</nav>{body}</body></html>\n'
    )
