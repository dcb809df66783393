"""gradstep: step a NumPy and a PyTorch training loop in lockstep and see where they part."""

__version__ = "0.1.0"
