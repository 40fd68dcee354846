"""Build dsconv_ext with torch.utils.cpp_extension against the torch already installed.

    pip install --no-build-isolation -e .

Environment:
  DSCONV_CUDA=0   build the CPU extension only
  DSCONV_CUDA=1   CUDA sources are required: fail loudly when no CUDA toolkit / CUDA torch
  (unset)         add the CUDA sources when a CUDA toolkit and a CUDA build of torch are present
  DSCONV_SANITIZE=1  CPU-only build instrumented with AddressSanitizer + UndefinedBehaviorSanitizer
                  (-O1 -g; for .ci/sanitize, which sets the runtime environment; implies DSCONV_CUDA=0)
  TORCH_CUDA_ARCH_LIST, MAX_JOBS, CUDA_HOME are honoured as in torch.utils.cpp_extension.
"""
import glob
import os
import sys

# torch guesses CUDA_HOME from `which nvcc`; a wrapper script on PATH makes that guess wrong
# (/usr/local instead of /usr/local/cuda). Prefer the standard prefix when it exists. This must
# happen before torch.utils.cpp_extension is imported, which reads CUDA_HOME once.
if "CUDA_HOME" not in os.environ and "CUDA_PATH" not in os.environ and os.path.isdir("/usr/local/cuda"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch  # noqa: E402
from setuptools import find_packages, setup  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def keep_libstdcxx_shared() -> None:
    """Drop -static-libstdc++ from the flags setuptools links with (environment or Python's
    sysconfig). The extension shares C++ objects with libtorch (error messages are built in
    std::ostringstreams that cross the boundary); a second, static copy of libstdc++ inside _C.so
    has its own locale facet ids, and formatting an integer into c10's stream then segfaults.
    Seen once on the H200 image (2026-11-26): every TORCH_CHECK message with a number crashed."""
    flag = "-static-libstdc++"
    for var in ("LDFLAGS", "LDSHARED", "CFLAGS", "CXXFLAGS"):
        val = os.environ.get(var)
        if val and flag in val.split():
            os.environ[var] = " ".join(t for t in val.split() if t != flag)
            print(f"dsconv_ext setup: removed {flag} from ${var}", file=sys.stderr)
    import sysconfig

    ldshared = sysconfig.get_config_var("LDSHARED") or ""
    if "LDSHARED" not in os.environ and flag in ldshared.split():
        os.environ["LDSHARED"] = " ".join(t for t in ldshared.split() if t != flag)
        print(f"dsconv_ext setup: removed {flag} from Python's LDSHARED", file=sys.stderr)


keep_libstdcxx_shared()


def libstdcxx_shared_link_args() -> list:
    """Link arguments that make the linker take libstdc++ from the shared library when the C++
    compiler would otherwise link its static archive: on the H200 image (2026-11-26, twice) the
    link line had no -static-libstdc++ flag at all, yet _C.so carried its own copy of libstdc++
    and no NEEDED libstdc++.so.6: its g++ (/opt/gcc) finds only libstdc++.a on its search path.
    Probe: `$CXX -print-file-name=libstdc++.so` prints a bare name when the compiler has no shared
    libstdc++. Then name the libstdc++.so.6 this process already loaded (the one libtorch uses)
    as a link input: symbols resolve from it first, and _C.so records NEEDED libstdc++.so.6."""
    if not sys.platform.startswith("linux"):
        return []
    import shutil
    import subprocess

    compilers = {os.environ.get("CXX", "").split(" ")[0], "c++", "g++"} - {""}
    static_only = []
    for cc in sorted(compilers):
        exe = shutil.which(cc)
        if exe is None:
            continue
        try:
            found = subprocess.run([exe, "-print-file-name=libstdc++.so"], capture_output=True, text=True,
                                   timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if not os.path.isabs(found) or not os.path.exists(found):
            static_only.append(exe)
    if not static_only:
        return []
    loaded = None
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if os.path.basename(path).startswith("libstdc++.so") and os.path.exists(path):
                    loaded = path
                    break
    except OSError:
        pass
    if loaded is None:
        print(f"dsconv_ext setup: {static_only} link libstdc++ statically and no loaded libstdc++.so was "
              "found; error messages with numbers may crash this build", file=sys.stderr)
        return []
    print(f"dsconv_ext setup: {static_only} find no shared libstdc++; linking {loaded}", file=sys.stderr)
    return [loaded]


def want_sanitize() -> bool:
    flag = os.environ.get("DSCONV_SANITIZE", "").strip()
    if flag not in ("", "0", "1"):
        sys.exit(f"DSCONV_SANITIZE must be 0 or 1, got {flag!r}")
    return flag == "1"


def want_cuda() -> bool:
    flag = os.environ.get("DSCONV_CUDA", "").strip()
    if want_sanitize():
        # Only the CPU kernels are instrumented: host ASan can't see device memory, and nvcc
        # doesn't take -fsanitize.
        if flag == "1":
            sys.exit("DSCONV_SANITIZE=1 builds the CPU extension only: unset DSCONV_CUDA or set it to 0")
        return False
    have_toolkit = cpp_extension.CUDA_HOME is not None and os.path.exists(
        os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc")
    )
    have_torch = torch.version.cuda is not None
    if flag == "0":
        return False
    if flag == "1":
        if not (have_toolkit and have_torch):
            sys.exit(
                "DSCONV_CUDA=1 but CUDA can't be built: "
                f"CUDA toolkit {'found at ' + str(cpp_extension.CUDA_HOME) if have_toolkit else 'not found (set CUDA_HOME)'}, "
                f"torch {torch.__version__} is {'a CUDA build' if have_torch else 'a CPU-only build'}"
            )
        return True
    if flag:
        sys.exit(f"DSCONV_CUDA must be 0 or 1, got {flag!r}")
    return have_toolkit and have_torch


def rel(pattern):
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern)))


def extension():
    sources = rel("csrc/*.cpp") + rel("csrc/cpu/*.cpp")
    cxx = ["-O3", "-fno-math-errno"]
    link = []
    if sys.platform.startswith("linux"):
        cxx.append("-fdiagnostics-color=always")
        link += libstdcxx_shared_link_args()
    if torch._C.has_openmp and not sys.platform.startswith("win"):
        # at::parallel_for is a header template that only runs in parallel when the including file
        # is compiled with OpenMP (ATen/ParallelOpenMP.h checks _OPENMP). Linking -fopenmp records
        # libgomp.so.1, which resolves to the copy torch already loaded: one shared thread pool.
        cxx.append("-fopenmp")
        link.append("-fopenmp")
    if want_sanitize():
        # Flags given later win over -O3 above and Python's own -g -fwrapv:
        #   -O1: accurate reports and a usable speed.
        #   -g1: line tables are enough for symbolized stack traces; full -g makes GCC's variable
        #        tracking on the instrumented SIMD code ~5x slower to compile (minutes per file).
        #   -fno-wrapv: under -fwrapv signed overflow is defined, so UBSan wouldn't check it.
        #   -fno-sanitize-recover=all: any UB aborts, so a finding fails the test run.
        #   -Wno-uninitialized: at -O1 GCC 12 reports the `__Y = __Y` idiom of its own
        #        _mm512_undefined_*() as uninitialized (-O3 only as maybe-uninitialized, which the
        #        AVX-512 files silence): hundreds of lines of false positives. The normal build
        #        still has the warning.
        san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
        cxx += ["-O1", "-g1", "-fno-wrapv", "-Wno-uninitialized"] + san
        link += san
    if not want_cuda():
        return cpp_extension.CppExtension(
            "dsconv_ext._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=link
        )
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        # No GPU to ask: build for Ampere and Hopper rather than every arch torch knows.
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
    sources += rel("csrc/cuda/*.cpp") + rel("csrc/cuda/*.cu")
    nvcc = ["-O3", "-lineinfo", "--expt-relaxed-constexpr"]
    return cpp_extension.CUDAExtension(
        "dsconv_ext._C",
        sources,
        extra_compile_args={"cxx": cxx + ["-DDSCONV_WITH_CUDA"], "nvcc": nvcc},
        extra_link_args=link,
    )


setup(
    name="dsconv_ext",
    version="0.1.0",
    description="Fast depthwise and depthwise-separable convolution for PyTorch (CPU and CUDA)",
    packages=find_packages(include=["dsconv_ext", "dsconv_ext.*"]),
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
    python_requires=">=3.9",
    install_requires=["torch"],
    zip_safe=False,
)
