"""Step time and peak memory of a margin head, full and Partial FC, against the identities.

    kerasface-benchmark-partial-fc [--identities 10000 100000 1000000] [--sample-rate 1 0.1]
        [--loss arcface] [--batch-size 128] [--embedding-dim 512] [--steps 5]

Each configuration (identities x head) runs in its own process, so the peak memory is its own;
each prints one JSON line: identities, head, sample_rate ("full" for the full head), the
logit columns a step computes, the median step time after warm-up (wall-clock, and CPU time
of all the process's threads), the centres' size, peak host memory (and device memory on a GPU)
and the host memory before the head was built. The full head runs when --sample-rate lists 1
(or "full"); Partial FC for every other rate. --max-memory-gib caps each process's data
memory (RLIMIT_DATA), so a configuration that does not fit fails alone instead of pressing on
the machine; a configuration that fails prints its error and the command goes on.
"""

import argparse
import itertools
import json
import subprocess
import sys

from kerasface.cli.common import add_debug_argument, cli_main, non_negative_int, positive_int
from kerasface.processes import child_environment


def sample_rate(text: str) -> float | None:
    if text.lower() in ("full", "1", "1.0", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a sample rate: {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"a sample rate is in (0, 1], got {text}")
    return value


def _memory_cap(gib: float | None):
    if gib is None:
        return None

    def cap():
        import resource

        limit = int(gib * 2**30)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    return cap


@cli_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=positive_int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--sample-rate", type=sample_rate, nargs="+", default=[None, 0.1],
                        help='"full" (or 1) for the full head, else Partial FC\'s rate (default: full 0.1)')
    parser.add_argument("--loss", default="arcface", help="the margin head (default arcface)")
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--embedding-dim", type=positive_int, default=512)
    parser.add_argument("--steps", type=positive_int, default=5, help="timed steps (default 5)")
    parser.add_argument("--warmup-steps", type=non_negative_int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--jit-compile", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--max-memory-gib", type=float, default=None,
                        help="cap each configuration's data memory (RLIMIT_DATA) at this many GiB")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    import kerasface.losses  # noqa: F401  (registers the margin heads)
    from kerasface.registry import MARGIN_HEADS

    MARGIN_HEADS.get(args.loss)
    combos = list(itertools.product(args.identities, args.sample_rate))
    if args.in_process:
        from kerasface.benchmarks.partial_fc import PartialFCBenchmark, run_partial_fc_benchmark

        (identities, rate), = combos
        bench = PartialFCBenchmark(identities, args.loss, rate, args.batch_size, args.embedding_dim, args.steps,
                                   args.warmup_steps, args.jit_compile)
        print(json.dumps(run_partial_fc_benchmark(bench)), flush=True)
        return 0
    failed = 0
    for identities, rate in combos:
        command = [sys.executable, "-m", "kerasface.cli.benchmark_partial_fc", "--in-process",
                   "--identities", str(identities), "--sample-rate", "full" if rate is None else str(rate),
                   "--loss", args.loss, "--batch-size", str(args.batch_size), "--embedding-dim",
                   str(args.embedding_dim), "--steps", str(args.steps), "--warmup-steps", str(args.warmup_steps),
                   "--jit-compile", args.jit_compile]
        result = subprocess.run(command, capture_output=True, text=True, env=child_environment(),
                                preexec_fn=_memory_cap(args.max_memory_gib))
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode or not lines:
            failed += 1
            reason = result.stderr.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
            if result.returncode < 0:
                reason.append(f"killed by signal {-result.returncode}")
            print(json.dumps({"identities": identities, "head": args.loss,
                              "sample_rate": "full" if rate is None else rate, "error": reason}), flush=True)
        else:
            print(lines[-1], flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
