"""edgevlm.export: PyTorch -> ONNX export, manifest and parity checks (needs the export extras)."""
