"""Device memory handed back at the end of a run: harmless on the CPU, the CUDA cache emptied once CUDA is in use."""

from __future__ import annotations

import sys

from gradstep.device import release_device_memory


def test_release_is_harmless_on_the_cpu():
    import torch

    assert not torch.cuda.is_initialized()
    assert release_device_memory() is False


def test_release_never_imports_torch(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch")
    assert release_device_memory() is False
    assert "torch" not in sys.modules


def test_release_empties_the_cuda_cache_once_cuda_is_in_use(monkeypatch):
    import torch

    emptied = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    assert release_device_memory() is True and emptied == [True]

