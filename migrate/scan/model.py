"""The scan's result objects: a rule, a finding, a parse error, the whole result."""

from __future__ import annotations

from dataclasses import dataclass, field

SEVERITIES = ("error", "warning", "note")
"""Most severe first; ``--fail-on LEVEL`` fails on LEVEL and anything more severe."""


def severity_rank(severity: str) -> int:
    """0 for error, 1 for warning, 2 for note (lower is more severe)."""
    return SEVERITIES.index(severity)


@dataclass(frozen=True)
class Rule:
    """One kind of state trap: what it is, why it breaks two instances, where it should live;
    ``notes``: where it is judged differently, and why (shown in the SARIF help and JSON)."""

    id: str
    severity: str
    title: str
    why: str
    fix: str
    notes: str = ""


@dataclass
class Finding:
    """One state trap at one place in the code.

    ``message`` says what breaks when the app runs on two instances; ``fix`` names the shared
    home and the ``migrate`` command that moves the state there.
    """

    rule: str
    severity: str
    path: str
    line: int
    col: int
    message: str
    fix: str
    snippet: str = ""


@dataclass
class ParseFailure:
    """A file that could not be read or parsed (reported; the scan goes on)."""

    path: str
    line: int
    message: str


@dataclass
class ScanResult:
    """Everything one scan found, plus what it looked at and how long it took."""

    root: str
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    lines: int = 0
    parse_errors: list[ParseFailure] = field(default_factory=list)
    suppressed: int = 0
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        """Findings per severity, every severity present (zero when none)."""
        out = dict.fromkeys(SEVERITIES, 0)
        for finding in self.findings:
            out[finding.severity] += 1
        return out

    def fails(self, level: str) -> bool:
        """True when a finding is at ``level`` or more severe (``never``: always False)."""
        if level == "never":
            return False
        limit = severity_rank(level)
        return any(severity_rank(f.severity) <= limit for f in self.findings)

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0
