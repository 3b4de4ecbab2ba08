"""The runtime's user-facing error, torch-free; the same class the training side raises."""

from edgevlm.errors import EdgeVLMError

__all__ = ["EdgeVLMError"]
