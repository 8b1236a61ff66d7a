"""Champion/challenger promotion: the decision rules, their report, and applying them in the registry."""

from rsvl.gate.report import gate_markdown
from rsvl.gate.rules import GateDecision, decide

__all__ = ["GateDecision", "decide", "gate_markdown"]
