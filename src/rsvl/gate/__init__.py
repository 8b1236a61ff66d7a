"""Champion/challenger promotion: the decision rules, their report, and applying them in the registry."""

from rsvl.gate.report import ALREADY_CHAMPION, gate_markdown
from rsvl.gate.rules import GateDecision, decide

__all__ = ["ALREADY_CHAMPION", "GateDecision", "decide", "gate_markdown"]
