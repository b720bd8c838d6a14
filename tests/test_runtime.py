import os
import platform
import subprocess
import sys

import keras
import numpy as np
import pytest

from kerasface.models import build_branch_model
from kerasface.train.runtime import resolve_runtime


@pytest.mark.backend
def test_auto_runtime_follows_the_measured_defaults_of_this_backend_and_device():
    runtime = resolve_runtime()
    precision = {"tpu": "mixed_bfloat16", "gpu": "mixed_float16"}.get(runtime.accelerator, "float32")
    assert runtime.precision == precision
    # XLA: always on JAX (else every step runs op by op); on TensorFlow off on CPU only
    assert runtime.jit_compile == (keras.backend.backend() == "jax" or runtime.accelerator != "cpu")
    assert runtime.global_batch_size(32) == 32 * runtime.num_replicas
    assert resolve_runtime(jit_compile="on").jit_compile is True
    assert resolve_runtime(jit_compile="off").jit_compile is False
    assert resolve_runtime(mixed_precision="off").precision == "float32"


@pytest.mark.backend
def test_mixed_precision_policy_stays_inside_the_scope_and_outputs_stay_float32():
    before = keras.config.dtype_policy().name
    runtime = resolve_runtime(mixed_precision="bfloat16")
    with runtime.scope():
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        model = build_branch_model("vit", 2, input_shape=(16, 16, 3), num_outputs=3, backbone_kwargs=dict(
            patch_size=8, dim=8, depth=1, heads=1, dim_head=8, mlp_dim=8))
    assert keras.config.dtype_policy().name == before
    assert model.get_layer("head_hidden").compute_dtype == "bfloat16"
    out = model([np.zeros((2, 16, 16, 3), np.float32)] * 2)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


def test_unknown_choices_are_refused_by_name():
    with pytest.raises(ValueError, match="mixed_precision"):
        resolve_runtime(mixed_precision="fp8")


def test_graph_optimizer_switch_stays_inside_the_scope():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("Grappler is TensorFlow's")
    import tensorflow as tf

    runtime = resolve_runtime(jit_compile="off")
    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    with runtime.scope():
        inside = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    assert inside == (not runtime.graph_optimizer)
    assert runtime.graph_optimizer == (runtime.accelerator != "cpu")
    assert tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False) == before


@pytest.mark.parametrize("user_setting", [None, "0"])
def test_importing_kerasface_first_turns_on_onednn_on_x86_unless_the_user_chose(user_setting):
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the oneDNN default is for x86 CPUs")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if user_setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = user_setting
    env["KERAS_BACKEND"] = "tensorflow"
    code = ("import kerasface, tensorflow\n"
            "from kerasface.train.runtime import resolve_runtime\n"
            "print(resolve_runtime().describe()['onednn'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == ("True" if user_setting is None else "False")
    if user_setting is None:  # TensorFlow's notice that oneDNN is on is left out, nothing else
        assert "oneDNN custom operations" not in out.stderr and "absl::InitializeLog" not in out.stderr


def test_stderr_without_leaves_out_the_notice_lines_and_keeps_the_rest(capfd):
    from kerasface._tensorflow_import import stderr_without

    with stderr_without():
        os.write(2, b"first\nWARNING: All log messages before absl::InitializeLog() is called are written to "
                    b"STDERR\nI0000 port.cc:153] oneDNN custom operations are on. You may see ...\nlast\n")
    assert capfd.readouterr().err == "first\nlast\n"
