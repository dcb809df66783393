"""The diagnosis rules. Each is ``rule(view, probe, found) -> list[Finding]``; ``probe`` may be None."""
