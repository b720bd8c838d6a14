"""kerasface: multi-branch face recognition and face-attribute models on Keras 3."""

import os
import platform

# TensorFlow's C++ info and warning logs, unless the user sets the level
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# oneDNN kernels for TensorFlow on x86 CPUs, unless the user sets it: TensorFlow turns them on
# by itself only on CPUs with AVX-512 VNNI / AMX. Read when TensorFlow is imported, so it takes
# effect when kerasface is imported first. Faster train steps on CPUs without them (see
# docs/benchmarks.md, "Train step").
# TensorFlow then prints a notice that oneDNN is on whatever the log level; kerasface leaves
# it out (kerasface._tensorflow_import), also where a parent process set the variable.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if os.environ["TF_ENABLE_ONEDNN_OPTS"].lower() not in ("0", "false"):
        from kerasface._tensorflow_import import QuietTensorFlowImport

        QuietTensorFlowImport().install()

__version__ = "0.1.0"
