"""Giving the GPU's memory back when a run is over.

torch keeps the CUDA blocks of freed tensors cached for reuse, so a process
that has dropped its engine still holds that memory on the device, which on a
shared GPU box other people need. The app calls :func:`release_device_memory`
as it shuts down and the CLI once it has dropped its engine.
"""

from __future__ import annotations

import gc
import sys


def release_device_memory() -> bool:
    """Collect what is unreachable and empty torch's CUDA cache; False (and nothing done) when CUDA was never used."""
    torch = sys.modules.get("torch")  # never imported: nothing ever ran on a device, and importing it costs seconds
    if torch is None or not torch.cuda.is_initialized():
        return False
    gc.collect()  # an engine caught in a reference cycle holds its tensors until the collector frees it
    torch.cuda.empty_cache()
    return True
