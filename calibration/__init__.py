"""edgevlm.calibration: torch-free calibration data for INT8 static quantization."""
