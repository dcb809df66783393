"""gradstep.stoppable: a stop taken back leaves the interpreter as it was."""

from __future__ import annotations

import subprocess
import sys

_TAKEN_BACK_THEN_TRACED = """
import sys
from gradstep.stoppable import shielded, time_limit

with shielded():  # takes back a stop that may have been asked: none was
    pass
with time_limit(60):
    pass

def boom():
    raise TypeError("raised under a tracer")

def tracer(frame, event, arg):
    return tracer

sys.settrace(tracer)  # as the diagnosis's line recorder does
try:
    boom()
except TypeError as error:
    sys.settrace(None)
    print("caught:", error)
"""


def test_an_exception_under_a_tracer_still_propagates_after_a_stop_is_taken_back():
    # PyThreadState_SetAsyncExc(id, NULL) left CPython 3.11's "pending" flag up with nothing pending; an
    # exception raised under a trace function then spun forever (the diagnosis hung after any patch).
    done = subprocess.run([sys.executable, "-c", _TAKEN_BACK_THEN_TRACED], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "caught: raised under a tracer"
