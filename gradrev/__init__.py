"""gradrev: one gradient reversal layer for PyTorch, JAX, TensorFlow and MLX, bit-exact across all four."""

import sys as _sys

from gradrev._dispatch import reverse

__all__ = ["__version__", "reverse"]
__version__ = "0.1.0"


def _imported(framework: str, attribute: str) -> bool:
    # A stub module, or one another thread is still importing, lacks the attribute.
    return getattr(_sys.modules.get(framework), attribute, None) is not None


# Loading a saved model needs gradrev registered with its framework: the Keras layer class
# for .keras files, PyTorch's gradrev operators for torch.export and TorchScript programs.
# Register them for the frameworks the caller already imported, and import no other.
if _imported("keras", "saving"):
    import gradrev.keras
if _imported("torch", "library"):
    import gradrev.backends.torch  # noqa: F401
