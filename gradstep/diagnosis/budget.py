"""What a diagnosis may spend: a deadline for the whole of it, and the sizes past which a rule samples.

Every rule's cost is bounded by the tensors' sizes (no rule is worse than a
few passes over a tensor's elements) and by one deadline for the diagnosis.
A rule that stops early, or leaves a tensor out because it is too big, says so
with :meth:`Budget.skip`; the diagnosis reports those as one "not checked"
finding, last.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

SECONDS = 8.0  # a whole diagnosis, the 4-million-element weight included, under 10 s
BIG = 1 << 20  # elements: above this a tensor is sampled or left to cheaper checks


@dataclass
class Budget:
    seconds: float = SECONDS
    started: float = field(default_factory=time.perf_counter)
    skipped: list[str] = field(default_factory=list)

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.started)

    def expired(self, reserve: float = 0.0) -> bool:
        """True when less than ``reserve`` seconds are left."""
        return self.left() <= reserve

    def share(self, fraction: float) -> float:
        """A deadline (perf_counter time) for a part that may spend ``fraction`` of what is left."""
        return time.perf_counter() + max(0.0, self.left()) * fraction

    def skip(self, what: str) -> None:
        if what not in self.skipped:
            self.skipped.append(what)
