"""A side-by-side diff of two trees, each hunk annotated with the state traps it removes.

``diff_trees(before, after)`` scans both trees (``migrate.scan``), diffs every text file and
ties each finding of the before-tree that is gone from the after-tree to the hunk that changes
its line, so the diff reads as a lesson: what changed, and which trap that change removed.
``render_html`` makes one self-contained page (inline CSS, no scripts, no external assets);
``render_rich`` the same for a terminal.
"""

from __future__ import annotations

import difflib
import html
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.rule import Rule as RichRule
from rich.table import Table
from rich.text import Text

from migrate.errors import UsageError
from migrate.scan import Finding, scan_path

SKIP_DIRS = frozenset({"__pycache__", "node_modules", "venv", ".venv"})
MAX_BYTES = 1024 * 1024


@dataclass
class Row:
    """One line of the side-by-side view; ``kind``: equal, replace, delete or insert."""

    kind: str
    left_no: int | None
    left: str
    right_no: int | None
    right: str


@dataclass
class Hunk:
    before_start: int
    before_end: int
    after_start: int
    after_end: int
    rows: list[Row] = field(default_factory=list)
    annotations: list[Finding] = field(default_factory=list)


@dataclass
class FileDiff:
    """One file's hunks; ``status``: changed, added, removed, or unchanged (its text is the
    same, yet a trap in it is gone: the change that removed it is elsewhere)."""

    path: str
    status: str
    hunks: list[Hunk] = field(default_factory=list)


@dataclass
class DiffResult:
    before: str
    after: str
    files: list[FileDiff] = field(default_factory=list)
    removed: list[Finding] = field(default_factory=list)
    remaining: list[Finding] = field(default_factory=list)
    unchanged_files: int = 0


def _text_files(root: Path) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
        for name in filenames:
            full = Path(dirpath, name)
            if name.startswith(".") or name.endswith((".pyc", ".pyo")):
                continue
            try:
                if full.stat().st_size > MAX_BYTES:
                    continue
                text = full.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            files[full.relative_to(root).as_posix()] = text.splitlines()
    return files


def _hunks(a: list[str], b: list[str], context: int) -> list[Hunk]:
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    hunks = []
    for group in matcher.get_grouped_opcodes(context):
        hunk = Hunk(group[0][1] + 1, group[-1][2], group[0][3] + 1, group[-1][4])
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                hunk.rows += [Row("equal", i1 + k + 1, a[i1 + k], j1 + k + 1, b[j1 + k])
                              for k in range(i2 - i1)]
                continue
            for k in range(max(i2 - i1, j2 - j1)):
                left = i1 + k < i2
                right = j1 + k < j2
                kind = tag if tag != "replace" else ("replace" if left and right else
                                                     "delete" if left else "insert")
                hunk.rows.append(Row(kind, i1 + k + 1 if left else None,
                                     a[i1 + k] if left else "",
                                     j1 + k + 1 if right else None,
                                     b[j1 + k] if right else ""))
        hunks.append(hunk)
    return hunks


def _changed_lines(hunk: Hunk) -> set[int]:
    return {r.left_no for r in hunk.rows if r.kind != "equal" and r.left_no is not None}


def _place(finding: Finding, hunks: list[Hunk]) -> Hunk | None:
    """The hunk that changes the finding's line, else the nearest one in the file."""
    if not hunks:
        return None
    for hunk in hunks:
        if finding.line in _changed_lines(hunk):
            return hunk

    def distance(hunk: Hunk) -> int:
        lines = _changed_lines(hunk) or {hunk.before_start}
        return min(abs(finding.line - n) for n in lines)

    return min(hunks, key=distance)


def diff_trees(before: str | os.PathLike[str], after: str | os.PathLike[str],
               context: int = 3) -> DiffResult:
    """Diff two trees and annotate each hunk with the scan findings it removes."""
    before, after = Path(before), Path(after)
    for tree in (before, after):
        if not tree.is_dir():
            raise UsageError(f"{tree}: not a folder (give two source trees to compare)")
    result = DiffResult(str(before), str(after))
    old_files, new_files = _text_files(before), _text_files(after)
    for path in sorted(old_files.keys() | new_files.keys()):
        a, b = old_files.get(path), new_files.get(path)
        status = "added" if a is None else "removed" if b is None else "changed"
        hunks = _hunks(a or [], b or [], context)
        if hunks:
            result.files.append(FileDiff(path, status, hunks))
        else:
            result.unchanged_files += 1
    _annotate(result, scan_path(before).findings, scan_path(after).findings)
    return result


def _annotate(result: DiffResult, old: list[Finding], new: list[Finding]) -> None:
    """Tie each trap of the before-tree that the after-tree no longer has to its hunk."""
    still = Counter((f.rule, f.path, f.snippet) for f in new)
    by_path = {f.path: f for f in result.files}
    for finding in old:
        key = (finding.rule, finding.path, finding.snippet)
        if still[key]:
            still[key] -= 1
            result.remaining.append(finding)
            continue
        result.removed.append(finding)
        file_diff = by_path.get(finding.path)
        hunk = _place(finding, file_diff.hunks) if file_diff else None
        if hunk is None:  # the file did not change, yet the trap is gone: show it first
            file_diff = by_path.setdefault(finding.path, FileDiff(finding.path, "unchanged"))
            if file_diff not in result.files:
                result.files.append(file_diff)
            if not file_diff.hunks:
                file_diff.hunks.append(Hunk(finding.line, finding.line, 0, 0))
            hunk = file_diff.hunks[0]
        hunk.annotations.append(finding)


# --- rendering ------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2328;
background:#f6f8fa}
header{background:#24292f;color:#fff;padding:16px 24px}
header h1{margin:0 0 4px;font-size:20px}
header p{margin:0;color:#d0d7de}
main{padding:16px 24px;max-width:1600px}
section.file{background:#fff;border:1px solid #d0d7de;border-radius:6px;margin:0 0 20px}
section.file h2{font:600 15px ui-monospace,SFMono-Regular,Menlo,monospace;margin:0;
padding:10px 14px;border-bottom:1px solid #d0d7de;background:#f6f8fa}
.status{font:12px system-ui,sans-serif;color:#57606a;margin-left:8px}
.lesson{margin:0;padding:10px 14px 10px 34px;background:#fff8c5;border-bottom:1px solid #d4a72c}
.annotation{margin:2px 0}
.rule{font:600 12px ui-monospace,monospace;background:#cf222e;color:#fff;border-radius:10px;
padding:1px 8px;margin-right:6px}
.rule.warning{background:#9a6700}.rule.note{background:#0969da}
.where{font:12px ui-monospace,monospace;color:#57606a;margin-right:6px}
.fix{display:block;color:#116329;font-size:13px}
table.diff{width:100%;border-collapse:collapse;table-layout:fixed;
font:12.5px/1.5 ui-monospace,SFMono-Regular,Menlo,monospace}
table.diff td{padding:0 8px;white-space:pre-wrap;overflow-wrap:anywhere;vertical-align:top}
col.no{width:48px}
table.diff td.no{text-align:right;color:#8c959f;user-select:none}
td.del{background:#ffebe9}td.ins{background:#e6ffec}td.empty{background:#f6f8fa}
td.trap{box-shadow:inset 4px 0 #cf222e;background:#ffcecb}
tr.gap td{background:#ddf4ff;color:#57606a;font-style:italic}
.clean{color:#116329}
"""


def _cell(no: int | None, text: str, css: str, trap: list[Finding] | None = None) -> str:
    if no is None:
        return '<td class="no"></td><td class="empty"></td>'
    title = ""
    if trap:
        css += " trap"
        title = ' title="' + html.escape("; ".join(f"{f.rule}: {f.message}" for f in trap)) + '"'
    return f'<td class="no">{no}</td><td class="{css}"{title}>{html.escape(text)}</td>'


def render_html(result: DiffResult, title: str = "Stateful to stateless: the diff") -> str:
    """One self-contained HTML page: inline CSS, no scripts, no external assets."""
    out = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(result.before)} → {html.escape(result.after)}: "
        f"{len(result.files)} files differ, {len(result.removed)} state traps removed, "
        f"{len(result.remaining)} remain.</p></header><main>",
    ]
    if result.remaining:
        out.append('<section class="file"><h2>Traps the after-tree still has</h2>'
                   '<ul class="lesson">')
        out += [f'<li class="remaining">{_annotation_html(f)}</li>' for f in result.remaining]
        out.append("</ul></section>")
    for file_diff in result.files:
        out.append(f'<section class="file" id="{html.escape(file_diff.path)}">'
                   f"<h2>{html.escape(file_diff.path)}"
                   f'<span class="status">{file_diff.status}</span></h2>')
        for hunk in file_diff.hunks:
            if hunk.annotations:
                out.append('<ul class="lesson">')
                out += [f'<li class="annotation" data-rule="{f.rule}" data-path="'
                        f'{html.escape(f.path)}" data-line="{f.line}">{_annotation_html(f)}</li>'
                        for f in hunk.annotations]
                out.append("</ul>")
            if not hunk.rows:
                continue
            traps: dict[int, list[Finding]] = {}
            for finding in hunk.annotations:
                traps.setdefault(finding.line, []).append(finding)
            out.append('<table class="diff"><colgroup><col class="no"><col><col class="no">'
                       "<col></colgroup><tbody>")
            out.append(f'<tr class="gap"><td colspan="4">@@ before {hunk.before_start}'
                       f"–{hunk.before_end}, after {hunk.after_start}–{hunk.after_end}</td></tr>")
            for row in hunk.rows:
                left_css = "del" if row.kind in ("delete", "replace") else "ctx"
                right_css = "ins" if row.kind in ("insert", "replace") else "ctx"
                out.append("<tr>" + _cell(row.left_no, row.left, left_css,
                                          traps.get(row.left_no or -1))
                           + _cell(row.right_no, row.right, right_css) + "</tr>")
            out.append("</tbody></table>")
        out.append("</section>")
    if not result.removed and not result.remaining:
        out.append('<p class="clean">Neither tree has a state trap the scan knows.</p>')
    out.append("</main></body></html>")
    return "\n".join(out)


def _annotation_html(f: Finding) -> str:
    return (f'<span class="rule {f.severity}">{html.escape(f.rule)}</span>'
            f'<span class="where">{html.escape(f.path)}:{f.line}</span>'
            f'<span class="message">{html.escape(f.message)}</span>'
            f'<span class="fix">fix: {html.escape(f.fix)}</span>')


def render_rich(result: DiffResult) -> RenderableType:
    """The same lesson for a terminal: per hunk, the traps it removes, then both sides."""
    parts: list[RenderableType] = []
    for file_diff in result.files:
        parts.append(RichRule(f"[bold]{escape(file_diff.path)}[/] [dim]{file_diff.status}[/]",
                              align="left"))
        for hunk in file_diff.hunks:
            if hunk.annotations:
                lines = [f"[bold red]{f.rule}[/] [dim]{f.path}:{f.line}[/] {escape(f.message)}"
                         f"\n  [green]fix:[/] {escape(f.fix)}" for f in hunk.annotations]
                parts.append(Panel("\n".join(lines), title="this hunk removes",
                                   title_align="left", border_style="red"))
            if not hunk.rows:
                continue
            table = Table(box=None, show_header=False, expand=True, padding=(0, 1))
            table.add_column(justify="right", style="dim", no_wrap=True, width=4)
            table.add_column(ratio=1, overflow="fold")
            table.add_column(justify="right", style="dim", no_wrap=True, width=4)
            table.add_column(ratio=1, overflow="fold")
            for row in hunk.rows:
                left_style = "red" if row.kind in ("delete", "replace") else ""
                right_style = "green" if row.kind in ("insert", "replace") else ""
                table.add_row(str(row.left_no or ""), Text(row.left, style=left_style),
                              str(row.right_no or ""), Text(row.right, style=right_style))
            parts.append(table)
    parts.append(Text.from_markup(
        f"[bold]{len(result.files)} files differ[/]; [bold green]{len(result.removed)} state "
        f"traps removed[/]" + (f", [bold red]{len(result.remaining)} remain[/]"
                               if result.remaining else "")))
    return Group(*parts)
