"""edgevlm: image captioning and VQA for edge devices.

Kept nearly empty on purpose: importing the package must not import torch, so that the
torch-free runtime (``edgevlm.runtime``) can live beside the training code.
"""

__version__ = "0.1.0"
