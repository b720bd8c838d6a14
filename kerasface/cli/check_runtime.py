"""What a run would use on this machine: backend, installed TensorFlow and JAX distributions,
devices, the strategy ``--strategy auto`` picks, XLA and mixed precision.

    kerasface-check-runtime [--strategy auto] [--expect cpu|gpu|tpu] [--json]

The runtime is the one the trainer resolves (``kerasface.train.runtime.resolve_runtime``), so
this prints its decisions rather than repeating them. It warns when more than one TensorFlow
distribution is installed (``tensorflow-cpu`` beside ``tensorflow``: whichever was installed
last owns the files, and a GPU may stay invisible) and, on a GPU build of TensorFlow that sees
no GPU, names the likely cause. ``--expect gpu`` (or tpu, cpu) exits with status 1 when the
runtime's accelerator is another: a set-up script's check.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import metadata

from kerasface.cli.common import add_debug_argument, cli_main

TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tensorflow-macos",
                            "tensorflow-tpu", "tf-nightly", "tf-nightly-cpu")
JAX_DISTRIBUTIONS = ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt", "libtpu", "libtpu-nightly")


def installed(names) -> dict[str, str]:
    """{distribution: version} of those of ``names`` that are installed."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def tensorflow_details() -> dict:
    try:
        import tensorflow as tf
    except ImportError as error:
        return {"importable": False, "error": str(error)}
    build = dict(tf.sysconfig.get_build_info())
    details = {
        "importable": True,
        "version": tf.__version__,
        "built_with_cuda": bool(build.get("is_cuda_build")),
        "devices": [f"{d.device_type}:{d.name.rsplit(':', 1)[-1]}" for d in tf.config.list_physical_devices()],
    }
    if build.get("is_cuda_build"):
        details["cuda"] = build.get("cuda_version")
        details["cudnn"] = build.get("cudnn_version")
    for gpu in tf.config.list_physical_devices("GPU"):
        info = tf.config.experimental.get_device_details(gpu)
        details.setdefault("gpus", []).append(
            {"name": info.get("device_name"), "compute_capability": info.get("compute_capability")})
    return details


def jax_details() -> dict:
    try:
        import jax
    except ImportError as error:
        return {"importable": False, "error": str(error)}
    devices = jax.devices()
    return {"importable": True, "version": jax.__version__, "platform": devices[0].platform,
            "devices": [f"{d.platform}:{d.id} {d.device_kind}" for d in devices],
            "process_count": jax.process_count()}


def warnings_for(report: dict) -> list[str]:
    out = []
    tensorflows = report["installed"]["tensorflow"]
    if len(tensorflows) > 1:
        out.append(f"{len(tensorflows)} TensorFlow distributions are installed ({', '.join(tensorflows)}): they share "
                   "one package folder, so the one installed last wins; uninstall all of them and install one "
                   "extra: pip install -e '.[cpu]' or '.[gpu]'")
    if not tensorflows:
        out.append("no TensorFlow distribution is installed (the input pipelines are tf.data): "
                   "pip install -e '.[cpu]' (or '.[gpu]' on an NVIDIA machine)")
    tf_details = report.get("tensorflow_details") or {}
    if tf_details.get("built_with_cuda") and not tf_details.get("gpus"):
        out.append("TensorFlow is a CUDA build but sees no GPU: check nvidia-smi, the driver version, and that "
                   "tensorflow[and-cuda]'s nvidia-* packages are installed in this environment")
    if "tensorflow-cpu" in tensorflows and os.path.exists("/proc/driver/nvidia/version"):
        out.append("an NVIDIA driver is present but tensorflow-cpu is installed: pip uninstall tensorflow-cpu, "
                   "then pip install -e '.[gpu]'")
    return out


def collect(strategy: str = "auto") -> dict:
    import keras

    from kerasface.train.runtime import resolve_runtime

    report = {
        "python": sys.version.split()[0],
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "installed": {"tensorflow": installed(TENSORFLOW_DISTRIBUTIONS), "jax": installed(JAX_DISTRIBUTIONS)},
        "tensorflow_details": tensorflow_details(),
    }
    if report["backend"] == "jax":
        report["jax_details"] = jax_details()
    from kerasface.train import multiworker

    workers = (multiworker.tf_config_workers() if report["backend"] == "tensorflow"
               else multiworker.jax_processes_from_environment())
    if workers > 1 and strategy in ("auto", "multiworker"):
        # joining the cluster would wait for the other workers: describe this machine alone
        hidden = {name: os.environ.pop(name) for name in ("TF_CONFIG", multiworker.JAX_PROCESSES)
                  if name in os.environ}
        try:
            runtime = resolve_runtime("default", "auto", "auto")
        finally:
            os.environ.update(hidden)
        report["runtime"] = {**runtime.describe(), "accelerator": runtime.accelerator, "strategy": "multiworker",
                             "workers": workers}
        if report["backend"] == "tensorflow":
            report["runtime"].update(worker=multiworker.tf_worker_index(), chief=multiworker.tf_is_chief())
        else:
            process = int(os.environ.get(multiworker.JAX_PROCESS_ID, "0"))
            report["runtime"].update(worker=process, chief=process == 0)
    else:
        runtime = resolve_runtime(strategy, "auto", "auto")
        report["runtime"] = {**runtime.describe(), "accelerator": runtime.accelerator}
    report["warnings"] = warnings_for(report)
    return report


def format_report(report: dict) -> str:
    runtime = report["runtime"]
    tf = report["tensorflow_details"]
    lines = [
        f"backend        {report['backend']} (Keras {report['keras']}, Python {report['python']})",
        "tensorflow     " + (", ".join(f"{k} {v}" for k, v in report["installed"]["tensorflow"].items()) or "none"),
    ]
    if tf.get("importable"):
        build = f"CUDA {tf.get('cuda')}, cuDNN {tf.get('cudnn')}" if tf.get("built_with_cuda") else "CPU build"
        lines.append(f"               {build}; devices: {', '.join(tf['devices'])}")
        for gpu in tf.get("gpus", []):
            capability = ".".join(str(c) for c in gpu.get("compute_capability") or ())
            lines.append(f"               GPU {gpu.get('name')} (compute capability {capability})")
    lines.append("jax            " + (", ".join(f"{k} {v}" for k, v in report["installed"]["jax"].items()) or "none"))
    if "jax_details" in report and report["jax_details"].get("importable"):
        lines.append(f"               devices: {', '.join(report['jax_details']['devices'])}")
    lines += [
        f"device         {runtime['device']}",
        f"strategy       {runtime['strategy']} ({runtime['replicas']} replica{'s' if runtime['replicas'] != 1 else ''})",
        f"XLA            {'on' if runtime['jit_compile'] else 'off'} (jit_compile auto)",
        f"precision      {runtime['mixed_precision']} (mixed_precision auto)",
    ]
    if report["backend"] == "tensorflow":
        lines.append(f"grappler       {'on' if runtime['graph_optimizer'] else 'off'} (TensorFlow's graph optimizer)")
        if runtime.get("onednn") is not None:
            lines.append(f"oneDNN         {'on' if runtime['onednn'] else 'off'} (TF_ENABLE_ONEDNN_OPTS)")
    if runtime.get("workers", 1) > 1:
        lines.append(f"workers        {runtime['workers']} (this is worker {runtime['worker']}"
                     f"{', the chief' if runtime.get('chief') else ''}); the device and replicas above are this "
                     "machine's")
    lines += [f"warning: {w}" for w in report["warnings"]]
    return "\n".join(lines)


@cli_main
def main(argv=None) -> int:
    from kerasface.train.runtime import STRATEGIES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategy", default="auto", choices=STRATEGIES, help="resolve this strategy (default auto)")
    parser.add_argument("--expect", choices=("cpu", "gpu", "tpu"),
                        help="exit with status 1 unless the runtime's accelerator is this")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    report = collect(args.strategy)
    print(json.dumps(report) if args.json else format_report(report), flush=True)
    if args.expect and report["runtime"]["accelerator"] != args.expect:
        print(f"error: expected a {args.expect.upper()} runtime, found {report['runtime']['accelerator'].upper()} "
              f"({report['runtime']['device']})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
