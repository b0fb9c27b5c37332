"""How well `migrate scan` finds the traps in its labelled corpus: precision and recall per rule.

The corpus (tests/scan_corpus/, see its README) is a set of small apps, one per folder, each
reproducing a pattern public Flask apps use; a line the scan must flag carries a label
``# expect: RULE`` (or ``# expect: RULE[severity]``). Every folder is scanned as its own
project. A finding on a labelled line with the labelled rule (and severity, when given) is a
true positive; any other finding is a false positive; a label without its finding is a miss.
The clean references (the after-shop, the toolkit itself) are scanned too: every finding there
is a false positive.

tests/test_scan_corpus.py imports this module and asserts full recall and no false positive
on the clean folders and references.
Usage: .venv/bin/python benchmarks/scan_corpus.py [--corpus DIR] [--verbose]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from migrate.scan import RULES, scan_path  # noqa: E402

CORPUS = ROOT / "tests" / "scan_corpus"
REFERENCES = (ROOT / "sample_stateless_app", ROOT / "migrate")
"""Clean trees outside the corpus: the after-shop and the toolkit itself."""
LABEL = re.compile(r"#\s*expect:\s*(.+?)\s*$")
ITEM = re.compile(r"([a-z-]+)(?:\[(error|warning|note)\])?")

Key = tuple[str, str, int, str]
"""(case, path, line, rule)."""


@dataclass
class CorpusScore:
    """Per rule: labels found (true positives), findings without a label, labels missed."""

    cases: int = 0
    clean_cases: int = 0
    labels: int = 0
    true_pos: Counter[str] = field(default_factory=Counter)
    false_pos: Counter[str] = field(default_factory=Counter)
    missed: Counter[str] = field(default_factory=Counter)
    false_findings: list[str] = field(default_factory=list)
    """Each false positive as ``case/path:line rule (severity) message``."""
    missed_labels: list[str] = field(default_factory=list)
    reference_findings: list[str] = field(default_factory=list)
    """Findings in the after-shop and the toolkit (each one a false positive)."""

    def precision(self, rule: str | None = None) -> float:
        tp = self.true_pos[rule] if rule else sum(self.true_pos.values())
        fp = self.false_pos[rule] if rule else sum(self.false_pos.values())
        return tp / (tp + fp) if tp + fp else 1.0

    def recall(self, rule: str | None = None) -> float:
        tp = self.true_pos[rule] if rule else sum(self.true_pos.values())
        fn = self.missed[rule] if rule else sum(self.missed.values())
        return tp / (tp + fn) if tp + fn else 1.0


def labels_of(case: Path) -> dict[tuple[str, int, str], str | None]:
    """The labels in a case's files: (path, line, rule) -> the severity asked for, or None."""
    out: dict[tuple[str, int, str], str | None] = {}
    for path in sorted(case.rglob("*.py")):
        rel = path.relative_to(case).as_posix()
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = LABEL.search(text)
            if match is None:
                continue
            for item in match.group(1).split(","):
                parsed = ITEM.fullmatch(item.strip())
                if parsed is None or parsed.group(1) not in RULES:
                    raise ValueError(f"{path}:{number}: bad label {item.strip()!r}")
                out[(rel, number, parsed.group(1))] = parsed.group(2)
    return out


def cases(corpus: Path = CORPUS) -> list[Path]:
    return sorted(p for p in corpus.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def score(corpus: Path = CORPUS, references: tuple[Path, ...] = REFERENCES) -> CorpusScore:
    """Scan every case (and the references) and count hits, false positives and misses."""
    result = CorpusScore()
    for case in cases(corpus):
        result.cases += 1
        result.clean_cases += case.name.startswith("clean")
        expected = labels_of(case)
        result.labels += len(expected)
        hit: set[tuple[str, int, str]] = set()
        for f in scan_path(case).findings:
            key = (f.path, f.line, f.rule)
            if key in expected and expected[key] in (None, f.severity):
                result.true_pos[f.rule] += 1
                hit.add(key)
            else:
                result.false_pos[f.rule] += 1
                result.false_findings.append(
                    f"{case.name}/{f.path}:{f.line} {f.rule} ({f.severity}) {f.message}")
        for key, severity in expected.items():
            if key not in hit:
                result.missed[key[2]] += 1
                wanted = f"[{severity}]" if severity else ""
                result.missed_labels.append(f"{case.name}/{key[0]}:{key[1]} {key[2]}{wanted}")
    for tree in references:
        for f in scan_path(tree).findings:
            result.false_pos[f.rule] += 1
            result.reference_findings.append(
                f"{tree.name}/{f.path}:{f.line} {f.rule} ({f.severity}) {f.message}")
    return result


def table(result: CorpusScore) -> str:
    """The figures, one line per rule and a total, as the script prints them."""
    lines = [f"corpus: {result.cases} cases ({result.clean_cases} clean look-alikes), "
             f"{result.labels} labelled traps; references: "
             + ", ".join(p.name for p in REFERENCES),
             f"{'rule':<26} {'labels':>6} {'found':>6} {'missed':>6} {'false+':>6} "
             f"{'precision':>9} {'recall':>7}"]
    for rule in RULES:
        tp, fn, fp = result.true_pos[rule], result.missed[rule], result.false_pos[rule]
        lines.append(f"{rule:<26} {tp + fn:>6} {tp:>6} {fn:>6} {fp:>6} "
                     f"{result.precision(rule):>9.1%} {result.recall(rule):>7.1%}")
    tp, fn = sum(result.true_pos.values()), sum(result.missed.values())
    fp = sum(result.false_pos.values())
    lines.append(f"{'all rules':<26} {tp + fn:>6} {tp:>6} {fn:>6} {fp:>6} "
                 f"{result.precision():>9.1%} {result.recall():>7.1%}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--verbose", action="store_true", help="list misses and false positives")
    args = parser.parse_args()
    result = score(args.corpus)
    print(table(result))
    if args.verbose or result.missed_labels or result.false_findings \
            or result.reference_findings:
        for line in result.missed_labels:
            print(f"missed: {line}")
        for line in result.false_findings + result.reference_findings:
            print(f"false positive: {line}")


if __name__ == "__main__":
    main()
