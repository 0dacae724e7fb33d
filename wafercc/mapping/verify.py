"""The plan checker's old name: ``verify_plan`` is ``wafercc.mapping.check.check_plan``."""

from __future__ import annotations

from .check import check_plan

verify_plan = check_plan

__all__ = ["check_plan", "verify_plan"]
