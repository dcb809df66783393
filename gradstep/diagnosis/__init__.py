"""Diagnosis: the likely causes of a divergence, ranked, each with its evidence.

``diagnose(engine, step=None)`` runs after a run (``gradstep check`` calls it
once; the TUI can call it at any step) and returns :class:`Finding` objects,
best first. ``gradcheck(engine, step)`` is the finite-difference check on its
own. Nothing here imports Textual.
"""

from gradstep.diagnosis.diagnose import DiagnosisError, diagnose, diagnose_view
from gradstep.diagnosis.findings import Finding
from gradstep.diagnosis.gradcheck import GradCheck, gradcheck
from gradstep.diagnosis.view import StepView, synthetic_view, view_of

__all__ = [
    "DiagnosisError",
    "Finding",
    "GradCheck",
    "StepView",
    "diagnose",
    "diagnose_view",
    "gradcheck",
    "synthetic_view",
    "view_of",
]
