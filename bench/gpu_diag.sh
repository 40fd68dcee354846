#!/usr/bin/env bash
# Focused GPU diagnosis of the fused-op failures seen in the first H200 run (2026-11-26):
# build, native backtrace of the act-code-9 crash, float64 backward tracebacks, then the whole
# fused test file under xdist (a crashing test takes only its worker down).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/diag}"; mkdir -p "$OUT"
exec > >(tee -a "$OUT/diag.log") 2>&1
export PYTHONUNBUFFERED=1 CUDA_HOME=/usr/local/cuda
ARCH=$(python3 -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
export TORCH_CUDA_ARCH_LIST="$ARCH" DSCONV_CUDA=1 MAX_JOBS=$(nproc)
T0=$(date +%s)
timeout 240 python3 -m pip install --no-build-isolation --no-deps --no-index -e . >"$OUT/build.txt" 2>&1 || tail -30 "$OUT/build.txt"
echo "build $(($(date +%s) - T0)) s"
cat > /tmp/crash.py <<'PY'
import torch, dsconv_ext
ops = torch.ops.dsconv
dw = torch.randn(4, 1, 3, 3, device="cuda"); pw = torch.randn(6, 4, 1, 1, device="cuda")
x = torch.randn(1, 4, 5, 5, device="cuda")
for a, b in ((9, 0), (0, 9), (-1, 0)):
    try:
        ops.separable_conv2d(x, dw, None, pw, None, [1, 1], [1, 1, 1, 1], [1, 1], a, b)
        print("no error for", a, b)
    except RuntimeError as e:
        print("raised for", a, b, ":", str(e)[:120])
print("crash script done")
PY
echo "=== act 9 repro (plain)"; timeout 30 python3 -X faulthandler /tmp/crash.py 2>&1 | tail -30
echo "=== act 9 repro (cuda-gdb)"
timeout 75 cuda-gdb -q -batch -ex "set pagination off" -ex run -ex bt -ex "info sharedlibrary dsconv" --args python3 /tmp/crash.py 2>&1 | grep -v "^\[New Thread\|^\[Thread\|Detaching\|^warning" | tail -60
echo "=== float64 backward"
timeout 45 python3 -m pytest tests/test_cuda_fused.py -q -p no:cacheprovider -k "backward and float64" --tb=long -x 2>&1 | tail -70
echo "=== full fused file (xdist)"
timeout 80 python3 -m pytest tests/test_cuda_fused.py -q -p no:cacheprovider -n 6 --tb=short -rfE 2>&1 | tail -60
echo "total $(($(date +%s) - T0)) s"
