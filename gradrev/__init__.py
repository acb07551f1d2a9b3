"""gradrev: one gradient reversal layer for PyTorch, JAX and TensorFlow, bit-exact across all three."""

from gradrev._dispatch import reverse

__all__ = ["__version__", "reverse"]
__version__ = "0.1.0"
