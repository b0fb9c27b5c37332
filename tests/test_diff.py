"""`migrate diff`: the two shops side by side, each hunk annotated with the traps it removes."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrate.cli import cli
from migrate.cli.scan import sample_shops
from migrate.scan import scan_path
from migrate.scan.diff import diff_trees, render_html

ROOT = Path(__file__).resolve().parents[1]
BEFORE = ROOT / "sample_stateful_app"
AFTER = ROOT / "sample_stateless_app"


@pytest.fixture(scope="module")
def result():
    return diff_trees(BEFORE, AFTER)


def test_every_trap_the_scan_finds_is_annotated_on_the_hunk_that_removes_it(result):
    traps = scan_path(BEFORE).findings
    assert traps, "the before-shop has state traps by design"
    annotated = [(f.rule, f.path, f.line) for d in result.files for h in d.hunks
                 for f in h.annotations]
    assert sorted(annotated) == sorted((f.rule, f.path, f.line) for f in traps)
    assert result.remaining == []
    for file_diff in result.files:
        for hunk in file_diff.hunks:
            changed = {r.left_no for r in hunk.rows if r.kind != "equal"}
            for finding in hunk.annotations:
                assert finding.line in changed, (finding.rule, finding.path, finding.line)


# Issue 12's state: the file, the rule its lesson names, and what the after-side shows instead.
LESSONS = [
    ("api.py", "token-store", "tokens.verify(token"),
    ("events.py", "live-updates", ".xadd("),
    ("db.py", "process-lock", "Product.stock >= wanted"),
    ("limits.py", "limiter-memory", "redis_client(app)"),
]


@pytest.mark.parametrize(("path", "rule", "cure"), LESSONS)
def test_each_new_state_has_a_hunk_that_teaches_its_cure(result, path, rule, cure):
    """The hunk that removes the trap shows, on its after-side, the line that replaces it."""
    hunks = [h for d in result.files if d.path == path for h in d.hunks
             if any(f.rule == rule for f in h.annotations)]
    assert hunks, f"{path}: no hunk is annotated with {rule}"
    added = "\n".join(r.right for h in hunks for r in h.rows if r.kind in ("insert", "replace"))
    assert cure in added
    removed = "\n".join(r.left for h in hunks for r in h.rows if r.kind in ("delete", "replace"))
    for finding in (f for h in hunks for f in h.annotations if f.rule == rule):
        assert finding.snippet in removed and html.escape(finding.fix) in render_html(result)


def test_default_trees_are_the_sample_shops():
    before, after = sample_shops()
    assert before.resolve() == BEFORE and after.resolve() == AFTER


def test_new_files_show_as_added(result):
    status = {f.path: f.status for f in result.files}
    assert status.get("stores.py") == "added" and status.get("worker.py") == "added"
    assert status["shop.py"] == "changed"


def test_html_is_one_self_contained_page(result):
    page = render_html(result)
    assert page.startswith("<!doctype html>")
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    for finding in result.removed:
        assert html.escape(finding.message) in page
        assert f'data-rule="{finding.rule}"' in page


def test_cli_diff_writes_html_and_prints_the_lesson(tmp_path):
    out = tmp_path / "diff.html"
    run = CliRunner().invoke(cli, ["diff", str(BEFORE), str(AFTER), "--html", str(out)])
    assert run.exit_code == 0, run.output
    assert "state traps removed" in run.output and "this hunk removes" in run.output
    assert out.read_text().count('class="annotation"') == len(scan_path(BEFORE).findings)
    data = json.loads(CliRunner().invoke(cli, ["diff", "--json"]).output)
    assert Path(data["before"]).resolve() == BEFORE and Path(data["after"]).resolve() == AFTER
    assert len(data["removed"]) == len(scan_path(BEFORE).findings)
    assert CliRunner().invoke(cli, ["diff", str(BEFORE)]).exit_code == 2


CHECK_VISIBLE = """<script>
addEventListener("load", () => {
  const out = [...document.querySelectorAll(".annotation")].map(el => {
    const style = getComputedStyle(el), box = el.getBoundingClientRect();
    return {rule: el.dataset.rule, path: el.dataset.path, line: +el.dataset.line,
            text: el.innerText,
            visible: style.display !== "none" && style.visibility !== "hidden"
                     && +style.opacity > 0 && box.width > 0 && box.height > 0};
  });
  const pre = document.createElement("pre");
  pre.id = "visibility";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (.ci/run installs it)")
def test_html_annotations_are_visible_in_headless_chromium(result, tmp_path):
    page = render_html(result).replace("</body>", CHECK_VISIBLE + "</body>")
    target = tmp_path / "diff.html"
    target.write_text(page, encoding="utf-8")
    profile = tmp_path / "profile"
    proc = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--window-size=1280,900", "--dump-dom",
         target.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    match = re.search(r'<pre id="visibility">(.*?)</pre>', proc.stdout, re.S)
    assert match, proc.stderr[-2000:]
    shown = json.loads(html.unescape(match.group(1)))
    traps = scan_path(BEFORE).findings
    assert sorted((a["rule"], a["path"], a["line"]) for a in shown) == sorted(
        (f.rule, f.path, f.line) for f in traps)
    for annotation in shown:
        assert annotation["visible"], annotation
        assert annotation["rule"] in annotation["text"]
        assert "fix:" in annotation["text"]
