"""User key remapping: a TOML file of binding id = keys, applied as a Textual keymap.

The file is ``$GRADSTEP_KEYMAP`` or ``~/.config/gradstep/keymap.toml``::

    [keymap]
    step = "j,space"
    step_back = "k"

Binding ids are listed on the help screen (``?``).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path


def keymap_path() -> Path:
    env = os.environ.get("GRADSTEP_KEYMAP")
    return Path(env) if env else Path.home() / ".config" / "gradstep" / "keymap.toml"


def load_keymap(path: Path | None = None) -> dict[str, str]:
    """The user's keymap, or ``{}`` when there is none. A broken file raises ValueError."""
    path = path or keymap_path()
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"{path}: {error}") from error
    table = data.get("keymap", data)
    bad = [k for k, v in table.items() if not isinstance(v, str)]
    if bad:
        raise ValueError(f"{path}: keys must be strings, e.g. step = \"j\" (not {', '.join(bad)})")
    return dict(table)
