"""State-trap audit: find what breaks a Flask app on two instances (AST only, nothing runs)."""

from migrate.scan.engine import scan_path
from migrate.scan.model import SEVERITIES, Finding, ParseFailure, Rule, ScanResult
from migrate.scan.rules import RULES

__all__ = ["RULES", "SEVERITIES", "Finding", "ParseFailure", "Rule", "ScanResult", "scan_path"]
