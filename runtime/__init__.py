"""edgevlm.runtime: torch-free inference (numpy, onnxruntime, OpenCV).

Nothing under this package may import torch: it is what runs on a Jetson. A test proves it.
"""
