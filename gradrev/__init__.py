"""gradrev: one gradient reversal layer for PyTorch, JAX, TensorFlow and MLX, bit-exact across all four."""

import sys as _sys

from gradrev._dispatch import reverse

__all__ = ["__version__", "reverse"]
__version__ = "0.1.0"

# Loading a saved model needs gradrev registered with its framework: the Keras layer class
# for .keras files, PyTorch's gradrev operators for torch.export and TorchScript programs.
# Register them for the frameworks the caller already imported, and import no other.
if _sys.modules.get("keras") is not None:
    import gradrev.keras
if _sys.modules.get("torch") is not None:
    import gradrev.backends.torch  # noqa: F401
