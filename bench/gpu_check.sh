#!/usr/bin/env bash
# One-shot GPU check of dsconv_ext's CUDA kernels, run from the repository root on a machine with
# an NVIDIA GPU and a CUDA build of torch already installed (nothing is fetched):
#
#     bash bench/gpu_check.sh            # results under $OUT if set, else bench/results/
#
# Steps, each under `timeout` and a global deadline (DSCONV_DEADLINE_S, default 540 s), so one hang
# cannot eat the budget; a failed step is recorded and the script goes on where that makes sense:
#   1. build:  pip install --no-build-isolation --no-deps --no-index -e .  (DSCONV_CUDA=1,
#              TORCH_CUDA_ARCH_LIST = this GPU), falling back to setup.py build_ext --inplace
#   2. tests:  pytest tests/test_cuda_fused.py, tests/test_cuda.py (under xdist when installed), then
#              the CPU error-path files (the full CPU suite is CI's)
#   3. bench:  bench/gpu_bench.py (ours vs F.conv2d; fused blocks vs F.conv2d dw + 1x1)
#              -> results.md / results.json
#   4. profile: Nsight Compute over bench/ncu_targets.py (-> ncu.txt) when ncu and time allow
#   5. compute-sanitizer memcheck (and racecheck if time allows) over bench/sanitize_kernels.py
#      (depthwise kernels and the fused separable kernel)
# DSCONV_SKIP: comma list of steps to leave out (stagetests, cudatests, cputests, sweep, bench, ncu,
# memcheck, racecheck), to fit a short lease; the build and tests/test_cuda_fused.py always run.
# Files written to $OUT: gpu_check.log (everything), checks.txt, results.md, results.json,
# pytest_cuda_fused.txt, pytest_cuda.txt, sanitizer.txt, ncu.txt (8 files: the device tool's limit).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/results}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
CHECKS="$OUT/checks.txt"
: >"$LOG"
: >"$CHECKS"
exec > >(tee -a "$LOG") 2>&1

START=$(date +%s)
DEADLINE=${DSCONV_DEADLINE_S:-540}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
export PATH="$PATH:$CUDA_HOME/bin"

# seconds a step may take: min(step_max, time left - reserve for the steps after it)
budget() {
  local max=$1 reserve=$2 left
  left=$((DEADLINE - ($(date +%s) - START) - reserve))
  ((left < max)) && max=$left
  ((max < 10)) && max=10
  echo "$max"
}
check() { echo "$*" | tee -a "$CHECKS"; }
SKIP=",${DSCONV_SKIP:-},"
want() { [[ "$SKIP" != *",$1,"* ]] || { check "$1: skipped (DSCONV_SKIP)"; return 1; }; }
section() { echo; echo "=== $* ($(($(date +%s) - START)) s)"; }

section "environment"
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name(0))"
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo "${DSCONV_COMMIT:-unknown}")
if git rev-parse HEAD >/dev/null 2>&1 && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  COMMIT="$COMMIT (+ uncommitted changes)"
fi
export DSCONV_COMMIT="$COMMIT"
check "commit: $COMMIT"
check "card: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"

section "build"
ARCH=$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
export TORCH_CUDA_ARCH_LIST="$ARCH" DSCONV_CUDA=1 MAX_JOBS=$(nproc)
rm -f dsconv_ext/_C*.so
T0=$(date +%s)
timeout "$(budget 300 90)" $PY -m pip install -v --no-build-isolation --no-deps --no-index -e . >"$OUT/build.txt" 2>&1
PIP_RC=$?
if ! $PY -c "import dsconv_ext, torch; assert dsconv_ext.has_kernel('cuda')" 2>/dev/null; then
  echo "pip install -e . (rc $PIP_RC) left no importable CUDA extension here; building in place"
  tail -20 "$OUT/build.txt"
  timeout "$(budget 300 90)" $PY setup.py build_ext --inplace >>"$OUT/build.txt" 2>&1
fi
BUILD_S=$(($(date +%s) - T0))
if $PY -c "import dsconv_ext, torch; assert dsconv_ext.has_kernel('cuda')"; then
  check "build: ok in ${BUILD_S} s (sm_${ARCH/./}, pip rc $PIP_RC)"
else
  check "build: FAILED after ${BUILD_S} s"
  grep -iE "error" "$OUT/build.txt" | head -30
  tail -30 "$OUT/build.txt"
  exit 1
fi
# which sources the build's time went to (ninja's log: start ms, end ms, mtime, output)
NLOG=$(find build /tmp -name .ninja_log -newer setup.py 2>/dev/null | head -1)
[ -n "$NLOG" ] && { echo "slowest compile steps (s):"; awk 'NR>1 {printf "%7.1f %s\n", ($2-$1)/1000, $4}' "$NLOG" | sort -rn | head -8; }
grep -E "dsconv_ext setup:" "$OUT/build.txt" | sort -u
echo "link command:"; grep -E -- "-shared .*_C[.]" "$OUT/build.txt" | tail -1 | cut -c1-3000
rm -f "$OUT/build.txt"  # keep the file count low; the log has the interesting parts

section "linkage"
# The first H200 run (2026-11-26) built a _C.so with its own static copy of libstdc++: every
# error message with a number in it segfaulted. Record how this build linked libstdc++.
SO=$(ls dsconv_ext/_C*.so 2>/dev/null | head -1)
readelf -d "$SO" 2>/dev/null | grep NEEDED
echo "LDFLAGS=${LDFLAGS:-} CXXFLAGS=${CXXFLAGS:-} LDSHARED=${LDSHARED:-} CXX=${CXX:-} CC=${CC:-}"
for cc in ${CXX:-} c++ g++; do command -v "$cc" >/dev/null && echo "$cc -> $(command -v "$cc"): libstdc++.so = $("$cc" -print-file-name=libstdc++.so)"; done
$PY -c "import sysconfig as s; print('sysconfig LDSHARED:', s.get_config_var('LDSHARED'))"
${CXX:-c++} -dumpspecs 2>/dev/null | grep -n "static-libstdc" || echo "no static-libstdc++ in the compiler's specs"
if nm -C --defined-only "$SO" 2>/dev/null | grep -q "ostream::_M_insert<long>"; then
  check "libstdc++: STATIC copy inside $SO (error messages with numbers will crash)"
else
  check "libstdc++: shared ($(readelf -d "$SO" 2>/dev/null | grep -o 'libstdc++[^]]*' | head -1))"
fi

section "tests/test_cuda_fused.py"
# The fused kernel's tests (~1 min) in their own call, so each file keeps its own summary line.
# Under xdist (when installed) a test that crashes takes only its worker down, not the file.
# One CPU thread per xdist worker: 8+ workers each with a 16-thread pool made the CPU-side
# float64 references crawl (first runs: ~3 tests/s).
XDIST=$($PY -c "import xdist" 2>/dev/null && echo "-n 12" || echo "")
[ -n "$XDIST" ] && export OMP_NUM_THREADS=1
timeout "$(budget 130 60)" $PY -m pytest tests/test_cuda_fused.py -q -p no:cacheprovider $XDIST --tb=short -rfE \
  >"$OUT/pytest_cuda_fused.txt" 2>&1
RC=$?
tail -25 "$OUT/pytest_cuda_fused.txt"
check "tests/test_cuda_fused.py: $(tail -1 "$OUT/pytest_cuda_fused.txt" | sed 's/=//g;s/^ *//') (rc $RC)"

section "tests/test_cuda_fused.py, DSCONV_FUSED_STAGE=2"
# The same file with the staging loops instead of the cp.async pipeline (the default, stage 3,
# runs the pipeline wherever its alignment holds). Appended to the same file (8 files at most come
# back from the device machine).
if want stagetests; then
  echo "===== DSCONV_FUSED_STAGE=2 =====" >>"$OUT/pytest_cuda_fused.txt"
  DSCONV_FUSED_STAGE=2 timeout "$(budget 130 60)" $PY -m pytest tests/test_cuda_fused.py -q -p no:cacheprovider $XDIST \
    --tb=short -rfE >>"$OUT/pytest_cuda_fused.txt" 2>&1
  RC=$?
  tail -15 "$OUT/pytest_cuda_fused.txt"
  check "tests/test_cuda_fused.py (DSCONV_FUSED_STAGE=2): $(tail -1 "$OUT/pytest_cuda_fused.txt" | sed 's/=//g;s/^ *//') (rc $RC)"
fi

section "profile"
# Why the kernels run at their speed, before changing them: Nsight Compute on a few
# benchmark-sized calls (one profiled launch each after a warm-up; --clock-control none leaves the
# card's clocks alone). SourceCounters names the source lines (-lineinfo) where warps stall.
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if want ncu && [ -n "$NCU" ] && (($(budget 999 40) > 60)); then
  timeout "$(budget 120 40)" "$NCU" --clock-control none --section SpeedOfLight --section Occupancy \
    --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
    --section ComputeWorkloadAnalysis --section InstructionStats --section SourceCounters \
    -k regex:'plane|nhwc|fused' $PY bench/ncu_targets.py >"$OUT/ncu.txt" 2>&1
  check "ncu: rc $?, $(grep -c 'Section: GPU Speed Of Light' "$OUT/ncu.txt") kernels profiled (ncu.txt)"
elif [ -z "$NCU" ]; then
  check "ncu: not found"
fi

section "fused sweep"
if want sweep; then
  timeout "$(budget 90 30)" $PY bench/gpu_fused_sweep.py
  check "fused sweep: rc $?"
fi

section "tests/test_cuda.py"
if want cudatests; then
  timeout "$(budget 120 30)" $PY -m pytest tests/test_cuda.py -q -p no:cacheprovider $XDIST --tb=short -rfE \
    >"$OUT/pytest_cuda.txt" 2>&1
  RC=$?
  tail -40 "$OUT/pytest_cuda.txt"
  check "tests/test_cuda.py: $(tail -1 "$OUT/pytest_cuda.txt" | sed 's/=//g;s/^ *//') (rc $RC)"
fi

section "CPU tests (error paths)"
# The full CPU suite is CI's job (it takes minutes); here the files whose error messages exercise
# this build's linkage (see "linkage") and the CPU side of the same .so.
if want cputests; then
  timeout "$(budget 60 30)" $PY -m pytest tests/test_errors.py tests/test_fused_op.py -q -p no:cacheprovider $XDIST \
    --tb=short -rfE >"$OUT/pytest_cpu.txt" 2>&1
  RC=$?
  tail -5 "$OUT/pytest_cpu.txt"
  check "CPU tests (test_errors.py, test_fused_op.py): $(tail -1 "$OUT/pytest_cpu.txt" | sed 's/=//g;s/^ *//') (rc $RC)"
  rm -f "$OUT/pytest_cpu.txt"
fi

section "benchmark"
unset OMP_NUM_THREADS
if want bench; then
  LEFT=$(budget 240 20)
  BENCH_BUDGET=$((LEFT - 40))
  ((BENCH_BUDGET < 20)) && BENCH_BUDGET=20
  # DSCONV_BENCH_STAGE: the fused kernel's staging (DSCONV_FUSED_STAGE) for the benchmark only
  env ${DSCONV_BENCH_STAGE:+DSCONV_FUSED_STAGE=$DSCONV_BENCH_STAGE} timeout "$LEFT" $PY bench/gpu_bench.py \
    --out "$OUT" --budget-s "$BENCH_BUDGET" --checks "$CHECKS"
  check "bench: rc $? (budget ${BENCH_BUDGET} s, DSCONV_FUSED_STAGE=${DSCONV_BENCH_STAGE:-default})"
fi

section "compute-sanitizer"
SAN=$(command -v compute-sanitizer || echo "$CUDA_HOME/bin/compute-sanitizer")
if [ ! -x "$SAN" ]; then
  check "compute-sanitizer: not found"
elif want memcheck; then
  # Without the caching allocator every tensor is its own allocation, so memcheck sees overruns.
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "$(budget 150 5)" "$SAN" --tool memcheck --error-exitcode 9 \
    --print-limit 20 $PY bench/sanitize_kernels.py >"$OUT/sanitizer.txt" 2>&1
  RC=$?
  tail -25 "$OUT/sanitizer.txt"
  check "memcheck: rc $RC, $(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.txt" | tail -1), $(grep -E 'cases within tolerance' "$OUT/sanitizer.txt" | tail -1)"
  if want racecheck && (($(budget 999 5) > 100)); then
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "$(budget 120 5)" "$SAN" --tool racecheck --error-exitcode 9 \
      --print-limit 20 $PY bench/sanitize_kernels.py >>"$OUT/sanitizer.txt" 2>&1
    RC=$?
    check "racecheck: rc $RC, $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/sanitizer.txt" | tail -1)"
  fi
fi

section "summary"
cat "$CHECKS"
[ -f "$OUT/results.md" ] && sed -n '/^| layer/,$p' "$OUT/results.md"
echo "total $(($(date +%s) - START)) s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
