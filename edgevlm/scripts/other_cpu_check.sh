#!/usr/bin/env bash
# Issue 12's figures on another x86 CPU in one call (the lent GPU machine's host, which has the
# AVX-512 VNNI / AMX kernels this project's dev machines often lack): which CPU it is, the engine
# the runtime picks there, the shipped engine against PyTorch eager and against its FP32 export,
# that FP32 export against PyTorch eager, the avx2 layout against the VNNI one on the same CPU,
# and one decoder step alone.
#
#   PY=python3 OUT=/tmp/out bash edgevlm/scripts/other_cpu_check.sh [--install]
#
# --install: pip-install this checkout without dependencies or an index (the machine already has
# numpy, onnxruntime, opencv, click, tokenizers, torch, onnx and sympy, and no network).
# Everything printed also lands in $OUT/all.txt, each bench's JSON in $OUT/<name>.txt; the last
# lines are a summary. The FP32 export (~60 MB) is written to /tmp, not $OUT.
set -u
PY=${PY:-python3}
OUT=${OUT:-/tmp/other_cpu_check}
mkdir -p "$OUT"
exec > >(tee "$OUT/all.txt") 2>&1
export PYTHONUNBUFFERED=1
engine=edgevlm/assets/default_engine
vnni=$engine/variants/avx512-vnni
fp32=/tmp/other_cpu_check_fp32

step() { echo; echo "== $* ($(date +%T))"; }

step cpu
grep -m1 'model name' /proc/cpuinfo
echo "cores: $(nproc); flags: $(grep -m1 -o -w 'avx2\|avx512f\|avx512_vnni\|avx_vnni\|amx_tile\|amx_int8' /proc/cpuinfo \
  | sort -u | tr '\n' ' ')"
lscpu > "$OUT/lscpu.txt" 2>&1

if [ "${1:-}" = "--install" ]; then
  step install
  $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
fi
$PY -c "import sys, numpy, onnxruntime, torch; print('python', sys.version.split()[0], '| numpy', numpy.__version__,
'| onnxruntime', onnxruntime.__version__, '| torch', torch.__version__)"
cli() { $PY -c "from edgevlm.cli.main import main; main()" "$@"; }

step engine picked
cli info 2>&1 | tee "$OUT/info.txt" | grep -i -E 'engine|target|cpu' | head -8

step export FP32
cli export edgevlm/assets/default_model --out "$fp32" > "$OUT/export.txt" 2>&1 || { tail -5 "$OUT/export.txt"; exit 1; }

step "bench: shipped engine vs PyTorch eager (floor, beam 3, ask)"
cli bench --json 2>&1 | tee "$OUT/bench_vs_eager.txt"

step "bench: shipped engine vs its FP32 export"
cli bench --vs-engine "$fp32" --no-floor --no-modes --json 2>&1 | tee "$OUT/bench_vs_fp32.txt"

step "bench: the FP32 export vs PyTorch eager"
cli bench --engine "$fp32" --no-floor --no-modes --json 2>&1 | tee "$OUT/bench_fp32_vs_eager.txt"

step "bench: VNNI layout vs the avx2 layout on this CPU"
EDGEVLM_CPU_TARGET=avx2 cli bench --engine "$vnni" --vs-engine "$engine" --no-floor --no-modes --json 2>&1 \
  | tee "$OUT/bench_vnni_vs_avx2.txt"

step "decoder step alone (avx2 layout, VNNI layout, FP32)"
EDGEVLM_CPU_TARGET=avx2 $PY -m edgevlm.scripts.decoder_step_bench "$engine" "$vnni" "$fp32" --threads 1 2 2>&1 \
  | tee "$OUT/step.txt"

step summary
$PY - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
def last_json(name):
    lines = [l for l in open(f"{out}/{name}.txt") if l.startswith("{")]
    return json.loads(lines[-1]) if lines else None
for name, peer in (("bench_vs_eager", "torch_ms_p50"), ("bench_vs_fp32", "vs_engine_ms_p50"),
                   ("bench_fp32_vs_eager", "torch_ms_p50"), ("bench_vnni_vs_avx2", "vs_engine_ms_p50")):
    r = last_json(name)
    if r is None:
        print(f"{name}: no result"); continue
    g = r["runtime_graphs"]
    peer_g = r.get("vs_engine_graphs") or {}
    print(f"{name}: {r['runtime_ms_p50']} ms vs {r[peer]} ms = {r['speedup']}x | vision {g['vision_ms']} "
          f"cross {g['cross_kv_ms']} step {g['decoder_step_ms']} ms"
          + (f" (peer {peer_g['vision_ms']} / {peer_g['cross_kv_ms']} / {peer_g['decoder_step_ms']})" if peer_g else "")
          + f" | cold {r['cold_start_s']} s, rss {r['runtime_peak_rss_mb']} MB")
    if "floor" in r:
        f = r["floor"]
        print(f"  floor {f['caption_floor_ms']} ms, ratio {f['caption_ratio']}x; machine {f['machine']}")
        print(f"  beam3 {r['beam3']['ms_p50']} ms, default caption {r['default_caption']['ms_p50']} ms, ask "
              + ", ".join(f"{q} {a['ms_p50']} ms" for q, a in r["ask"].items()))
PYEOF
