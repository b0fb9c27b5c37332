"""`migrate scan` on its labelled corpus (tests/scan_corpus/): every labelled trap found, no
finding on the clean look-alikes, the after-shop or the toolkit itself.

The figures (precision and recall per rule) come from benchmarks/scan_corpus.py, which this
test imports; they are printed to the terminal whether or not pytest captures output.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from migrate.scan import RULES

ROOT = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("scan_corpus_benchmark",
                                                  ROOT / "benchmarks" / "scan_corpus.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


bench = _benchmark()


@pytest.fixture(scope="module")
def score(request):
    result = bench.score()
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + bench.table(result))
    return result


def test_every_labelled_trap_is_found(score):
    assert score.missed_labels == []
    assert score.recall() == 1.0


def test_no_finding_on_the_clean_look_alikes_or_the_references(score):
    clean = [f for f in score.false_findings if f.startswith("clean")]
    assert clean == []
    assert score.reference_findings == []  # the after-shop and the toolkit itself


def test_no_finding_the_labels_do_not_name(score):
    assert score.false_findings == []
    assert score.precision() == 1.0


def test_the_corpus_covers_every_rule_and_has_look_alikes(score):
    labelled = {rule for rule in RULES if score.true_pos[rule] + score.missed[rule]}
    assert labelled == set(RULES)
    cases = bench.cases()
    clean = [c for c in cases if c.name.startswith("clean")]
    assert len(clean) >= 15 and score.labels >= 100
    for case in cases:
        labels = bench.labels_of(case)
        assert bool(labels) != case.name.startswith("clean"), case.name


def test_a_label_naming_no_rule_is_refused(tmp_path):
    (tmp_path / "app.py").write_text("x = 1  # expect: no-such-rule\n")
    with pytest.raises(ValueError, match="no-such-rule"):
        bench.labels_of(tmp_path)
    (tmp_path / "app.py").write_text("x = 1  # expect: sqlite-local[note], module-state\n")
    assert bench.labels_of(tmp_path) == {("app.py", 1, "sqlite-local"): "note",
                                         ("app.py", 1, "module-state"): None}
