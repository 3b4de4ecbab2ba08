"""``python -m edgevlm.scripts.int8_emulation ENGINE_DIR OUT_DIR``: an INT8 engine made for
another CPU (the VNNI variant on an AVX2 machine), copied so that it computes that CPU's
integer arithmetic here, to measure with ``edgevlm eval`` (and tune its thresholds on:
calibration/int8_emulation.py says how and why)."""

from __future__ import annotations

import argparse
import sys

from edgevlm.calibration.int8_emulation import emulate_engine
from edgevlm.errors import EdgeVLMError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("engine_dir", help="INT8 engine folder (e.g. edgevlm/assets/default_engine/variants/avx512-vnni)")
    parser.add_argument("out_dir", help="new folder for the emulated copy")
    args = parser.parse_args(argv)
    try:
        report = emulate_engine(args.engine_dir, args.out_dir)
    except EdgeVLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for graph, counts in report.items():
        print(f"{graph}: {counts['dequantized']} stored tensors dequantized, {counts['quantize_linear']} "
              f"activation quantizations and {counts['matmul_integer']} MatMulInteger in float")
    return 0


if __name__ == "__main__":
    sys.exit(main())
