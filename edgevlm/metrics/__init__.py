"""edgevlm.metrics: torch-free scores shared by training, evaluation and calibration's gate,
so none of them imports another to score captions or answers."""
