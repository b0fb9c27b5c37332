"""State-trap audit: find what breaks a Flask app on two instances (AST only, nothing runs)."""

from .engine import scan_path
from .model import SEVERITIES, Finding, ParseFailure, Rule, ScanResult
from .rules import RULES

__all__ = ["RULES", "SEVERITIES", "Finding", "ParseFailure", "Rule", "ScanResult", "scan_path"]
