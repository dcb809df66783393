"""The terminal as gradstep found it, given back however the app ends.

Textual puts the terminal in raw mode, the alternate screen and mouse
reporting, and undoes it when the app exits normally. Two ends are not normal:
a signal (``kill``: SIGTERM; a closed terminal or SSH session: SIGHUP), which
the app turns into an orderly exit, and a worker thread stuck inside a call
that never returns (the user's code), which Python waits for at exit, forever.
:func:`arm_hard_exit` covers the second: unless the process has ended by
then, it puts the terminal back itself and ends the process.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable

from gradstep.stoppable import hard_exit

# What Textual's Linux driver turns on, turned off: kitty keys, focus events, bracketed paste, the four
# mouse modes; then the cursor shown and the main screen back.
RESTORE = ("\x1b[<u\x1b[?1004l\x1b[?2004l\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l"
           "\x1b[?25h\x1b[?1049l")
GRACE_SECONDS = 1.5  # after quit or a signal, how long the orderly exit may take before the hard one


class Terminal:
    """The terminal's settings before the app took it over (none when it is not a terminal)."""

    def __init__(self) -> None:
        stream = sys.__stderr__  # what Textual's driver writes to
        self.fd = stream.fileno() if stream is not None else -1
        self.attrs: list | None = None
        if self.fd >= 0 and os.isatty(self.fd):
            with contextlib.suppress(ImportError, OSError):
                import termios

                self.attrs = termios.tcgetattr(self.fd)

    def restore(self) -> None:
        """Main screen, cursor, no mouse reporting, cooked mode: as before the app (a closed terminal: nothing)."""
        if self.attrs is None:
            return
        with contextlib.suppress(OSError):
            os.write(self.fd, RESTORE.encode())
        with contextlib.suppress(ImportError, OSError):
            import termios

            termios.tcsetattr(self.fd, termios.TCSANOW, self.attrs)


def arm_hard_exit(terminal: Terminal, code: int, before: Callable[[], None] | None = None,
                  delay: float = GRACE_SECONDS) -> threading.Timer:
    """In ``delay`` seconds, unless the process has ended: ``before()``, the terminal back, and exit ``code``."""

    def end() -> None:
        if before is not None:
            with contextlib.suppress(Exception):
                before()
        terminal.restore()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        hard_exit(code)

    timer = threading.Timer(delay, end)
    timer.daemon = True  # it must not itself keep the process alive
    timer.start()
    return timer
