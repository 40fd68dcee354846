"""Command line: parse options into a runner.Config, run, print and write the results."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import List, Optional

import torch

import dsconv_ext

from . import report, runner, suites
from .timing import TimingConfig

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16", "half": "float16"}
LAYOUTS = {"nchw": ["nchw"], "channels_last": ["channels_last"], "cl": ["channels_last"],
           "both": ["nchw", "channels_last"]}
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
# Timing per comparison (see bench.timing): full runs and --quick.
FULL_TIMING = TimingConfig(min_rounds=3, max_rounds=7, budget_s=0.75, min_round_s=0.01, long_call_s=1.0, first_call_sample_s=3.0)
QUICK_TIMING = TimingConfig(min_rounds=3, max_rounds=3, budget_s=0.3, min_round_s=0.005, long_call_s=0.25, first_call_sample_s=1.0)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _split(values: Optional[List[str]]) -> List[str]:
    return [v.strip() for entry in values or [] for v in entry.split(",") if v.strip()]


def default_device() -> str:
    """CUDA when there is a GPU and the extension was built with CUDA kernels, else CPU."""
    return "cuda" if torch.cuda.is_available() and dsconv_ext.has_kernel(torch.device("cuda")) else "cpu"


def parser() -> argparse.ArgumentParser:
    listed = "\n".join(f"  {n:16} {suites.SUITES[n].description}" for n in suites.DEFAULT_SUITES)
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark dsconv_ext's depthwise convolution against PyTorch's.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"suites:\n{listed}",
    )
    p.add_argument("--quick", action="store_true", help="smaller batches, fewer layers and rounds (about a minute on a CPU)")
    p.add_argument("--suite", action="append", metavar="NAME[,NAME]", help="suites to run (repeatable; default: all)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available (with dsconv CUDA kernels), else cpu")
    p.add_argument("--dtype", action="append", metavar="DTYPE[,DTYPE]", help="float32 (default), bfloat16, float16; repeatable")
    p.add_argument("--layout", default="both", choices=sorted(LAYOUTS), help="memory format of the inputs (default: both)")
    p.add_argument("--threads", type=_positive, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})")
    p.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--batch", type=_positive, default=None, help="override every case's batch size")
    p.add_argument("--repeats", type=_positive, default=None, help="most timed rounds per comparison (default 7, quick 3)")
    p.add_argument("--budget", type=float, default=None, help="seconds of timed rounds per comparison; at least 3 rounds run (default 0.75, quick 0.3)")
    p.add_argument("--copy-mb", type=float, default=None, help="size of the copy-bandwidth buffer in MiB (default: 256 or 4x the last-level cache, the larger)")
    p.add_argument("--isa", default=None, help="force dsconv's CPU instruction set (avx512, avx2, generic, auto) "
                   "with dsconv_ext.set_cpu_isa, where the build has it")
    p.add_argument("--copy-ref", choices=["clone", "copy_"], default="clone",
                   help="the copy that defines 100%% bandwidth: clone (allocates its output, as the ops do; default) "
                        "or copy_ into a preallocated tensor")
    return p


def config(args: argparse.Namespace) -> runner.Config:
    device = args.device or default_device()
    if device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda but torch sees no CUDA device")
        if not dsconv_ext.has_kernel(torch.device("cuda")):
            raise SystemExit("error: this dsconv_ext build has no CUDA kernels (rebuild with a CUDA toolkit, or use --device cpu)")
    dtypes = []
    for d in _split(args.dtype) or ["float32"]:
        if d not in DTYPES:
            raise SystemExit(f"error: unknown dtype {d!r}; choose from float32, bfloat16, float16")
        if DTYPES[d] not in dtypes:
            dtypes.append(DTYPES[d])
    try:
        names = suites.resolve(args.suite or ["all"])
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    if args.isa:
        set_isa = getattr(dsconv_ext, "set_cpu_isa", None)
        if set_isa is None:
            raise SystemExit("error: --isa needs dsconv_ext.set_cpu_isa, which this build does not have")
        try:
            set_isa(args.isa)
        except Exception as e:
            raise SystemExit(f"error: --isa {args.isa}: {e}")
    timing = QUICK_TIMING if args.quick else FULL_TIMING
    if args.repeats is not None:
        timing = dataclasses.replace(timing, max_rounds=args.repeats)
    if args.budget is not None:
        timing = dataclasses.replace(timing, budget_s=args.budget)
    return runner.Config(
        suites=names, device=device, dtypes=dtypes, layouts=LAYOUTS[args.layout], threads=args.threads,
        out=args.out, plots=not args.no_plots, quick=args.quick, batch=args.batch, copy_mb=args.copy_mb, copy_ref=args.copy_ref,
        timing=timing, progress=not args.no_progress,
    )


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark; 0 when every case ran and matched PyTorch, 1 otherwise."""
    cfg = config(parser().parse_args(argv))
    result = runner.run(cfg)
    report.print_terminal(result)
    cfg.out.mkdir(parents=True, exist_ok=True)
    prefix = f"{cfg.device}-latest"
    plots = []
    if cfg.plots:
        try:
            from . import plots as plotting

            plots = plotting.plot(result, cfg.out, cfg.device)
        except ImportError:
            print("notice: matplotlib is not installed, skipping plots (pip install matplotlib)", file=sys.stderr)
    written = [report.write_json(result, cfg.out / f"{prefix}.json"), report.write_markdown(result, cfg.out / f"{prefix}.md", plots)]
    print("wrote " + ", ".join(str(p) for p in written + plots))
    return 0 if not result["errors"] and not result["summary"]["mismatches"] else 1
