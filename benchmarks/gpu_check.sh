#!/usr/bin/env bash
# The GPU check of issue 26 in one go, on a machine with an NVIDIA GPU and nothing to download.
# Every stage has a time cap inside one budget (GPU_CHECK_BUDGET_S, default 285 s), so the whole
# stays under 5 minutes; a stage cut short keeps what it wrote, and the summary says so.
#
#   1. tests/test_pallas_phases.py on the GPU: the fused Pallas kernels, compiled by Triton, against
#      the lax.scan path (float64 and float32, exact mode, the bit-exact retrace, vmap);
#   2. the core tests on the GPU: tests/test_gradients.py and tests/test_method_contract.py;
#   3. python -m benchmarks.run: bptt, rhel, rhel_centered, rhel+exact and, if stage 1 passed, the
#      fused kernels (rhel+pallas, rhel_centered+pallas, rhel+exact+pallas, and forward:pallas next
#      to forward and bare_scan) at T in {400, 1000, 4000} and N in {64, 256};
#   4. the full Copy-Paste config for 10 epochs (the RHEL phases by the fused kernels if stage 1
#      passed), with the full protocol's time projected from its epoch times.
#
# Results, in one flat folder ($OUT if set, else runs/gpu_check): gpu_check.md (machine, stages,
# and the issue's targets against the measurements), tests.log, bench.jsonl, bench.md, bench.png,
# bench.log, copy_paste.md, copy_paste.log.
#
# Needs python3 with jax (CUDA), flax, optax, chex, absl-py, numpy, matplotlib, pytest and
# pytest-xdist. ml_collections travels as a wheel in .whl/; fetch it where there is a network:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl ml_collections==1.1.0
# Run from the repository root (the git revision is recorded when given, as the machine may have no .git):
#   RHEL_JAX_REVISION=$(git rev-parse --short HEAD) bash benchmarks/gpu_check.sh
set -u -o pipefail

PY=${PYTHON:-python3}
R=${OUT:-runs/gpu_check}
BUDGET=${GPU_CHECK_BUDGET_S:-285}
COPY_PASTE_WORKDIR=${GPU_CHECK_COPY_PASTE_WORKDIR:-/tmp/gpu_check_copy_paste}
START=$(date +%s)
export PYTHONUNBUFFERED=1
mkdir -p "$R"
SUMMARY="$R/gpu_check.md"

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# cap SECONDS: the stage's cap, cut to what is left of the budget.
cap() { local l; l=$(left); if (( l < $1 )); then echo "$l"; else echo "$1"; fi; }
# stage NAME CAP_S LOG COMMAND...: runs COMMAND under its cap, appending to LOG; records the outcome.
stage() {
  local name=$1 limit log=$3 t0 rc
  limit=$(cap "$2")
  shift 3
  if (( limit < 10 )); then
    echo "| $name | skipped: the budget is spent | - |" >> "$SUMMARY"
    return 99
  fi
  t0=$(date +%s)
  echo "### $name (cap ${limit} s): $*" >> "$log"
  timeout -k 10 "$limit" "$@" >> "$log" 2>&1
  rc=$?
  local took=$(( $(date +%s) - t0 ))
  case $rc in
    0) echo "| $name | passed | ${took} s |" >> "$SUMMARY" ;;
    124|137) echo "| $name | cut short at its cap (${limit} s): see $(basename "$log") | ${took} s |" >> "$SUMMARY" ;;
    *) echo "| $name | failed (exit $rc): see $(basename "$log") | ${took} s |" >> "$SUMMARY" ;;
  esac
  return $rc
}

# ml_collections (and any other wheel put in .whl/) into a temp folder, if the machine lacks it.
if ! "$PY" -c "import ml_collections" 2>/dev/null && compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/gpu_check_site .whl/*.whl \
    && export PYTHONPATH=/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}
fi

{
  echo "# GPU check (benchmarks/gpu_check.sh)"
  echo
  echo "- started: $(date -u +%Y-%m-%dT%H:%M:%SZ); git revision: ${RHEL_JAX_REVISION:-$(git rev-parse --short HEAD 2>/dev/null || echo 'not recorded')}"
  echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
  echo "- $("$PY" -c 'import sys, jax; print(f"python {sys.version.split()[0]}, jax {jax.__version__}, devices {jax.devices()}")' 2>&1 | tail -1)"
  echo "- ml_collections: $("$PY" -c 'import ml_collections; print("importable")' 2>&1 | tail -1)"
  echo
  echo "| stage | outcome | wall time |"
  echo "|---|---|---|"
} > "$SUMMARY"

TESTS=(env JAX_PLATFORMS=cuda XLA_PYTHON_CLIENT_PREALLOCATE=false "$PY" -m pytest -p no:cacheprovider -q -rfE)
: > "$R/tests.log"
stage "fused kernels vs scan (tests/test_pallas_phases.py)" 60 "$R/tests.log" "${TESTS[@]}" -n 4 tests/test_pallas_phases.py
PALLAS_OK=$?
[[ ${GPU_CHECK_FORCE_PALLAS:-0} == 1 ]] && PALLAS_OK=0
stage "core tests (test_gradients, test_method_contract)" 70 "$R/tests.log" "${TESTS[@]}" -n 8 \
  tests/test_gradients.py tests/test_method_contract.py

METHODS=bptt,rhel,rhel_centered,rhel+exact
if (( PALLAS_OK == 0 )); then
  METHODS+=,rhel+pallas,rhel_centered+pallas,rhel+exact+pallas
  KERNEL=pallas
else
  echo "| (fused kernels left out of the benchmark and of Copy-Paste: their tests did not pass) | - | - |" >> "$SUMMARY"
  KERNEL=scan
fi
: > "$R/bench.log"
BENCH_CAP=$(( $(left) - 75 ))  # keep at least 75 s for Copy-Paste and the summary
(( BENCH_CAP > 100 )) && BENCH_CAP=100
stage "benchmarks.run ($METHODS)" "$BENCH_CAP" "$R/bench.log" env JAX_PLATFORMS=cuda "$PY" -m benchmarks.run --methods="$METHODS" \
  --lengths=400,1000,4000 --widths=64,256 --repeats=3 --no-memory --out "$R"
if [[ ! -s "$R/bench.md" ]] && grep -q '^{' "$R/bench.log"; then  # cut short: report the rows measured so far
  grep '^{' "$R/bench.log" > "$R/bench.jsonl"
  "$PY" -m benchmarks.run --report-only --out "$R" >> "$R/bench.log" 2>&1
fi

: > "$R/copy_paste.log"
stage "Copy-Paste, full config, 10 epochs (kernel=$KERNEL)" "$(( $(left) - 5 ))" "$R/copy_paste.log" env JAX_PLATFORMS=cuda \
  "$PY" -m experiments.main --config=experiments/copy_paste.py --config.num_epochs=10 --config.checkpoint_every=10 \
  "--config.alignment_epochs=(0,)" --config.method.kernel="$KERNEL" --workdir="$COPY_PASTE_WORKDIR" --overwrite

{
  echo
  echo "Targets of issue 26 (python -m benchmarks.gpu_check_summary):"
  echo
  "$PY" -m benchmarks.gpu_check_summary --out "$R" --copy-paste "$COPY_PASTE_WORKDIR" 2>&1
  echo
  echo "Total: $(( $(date +%s) - START )) s."
} >> "$SUMMARY"
cat "$SUMMARY"
