"""Data parallelism that actually happens: JAX DataParallel on a forced 2-device CPU mesh."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
import keras
import numpy as np
from kerasface.datasets.demo import DemoConfig, generate_demo_dataset
from kerasface.train.config import TrainConfig
from kerasface.train.run import train

out = sys.argv[1]
demo = generate_demo_dataset(out + "/demo", DemoConfig(identities=6, images_per_identity=6, image_size=32,
                             photometric=False), progress=False)
seen = []

class Probe(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        distribution = keras.distribution.distribution()
        kernel = self.model.trainable_weights[0].value
        seen.append({
            "distribution": type(distribution).__name__ if distribution else None,
            "mesh_devices": int(np.prod(distribution.device_mesh.shape)) if distribution else 0,
            "weight_devices": len(kernel.sharding.device_set),
        })

config = TrainConfig.from_dict(dict(
    backbone="vit", data=str(demo), image_size=16, views="single", batch_size=4, epochs=1, out=out,
    run_id="run", tensorboard=False, validation_fraction=0.0,
    backbone_kwargs=dict(patch_size=8, dim=8, depth=1, heads=1, dim_head=8, mlp_dim=8)))
run_dir = train(config, log=lambda *_: None, callbacks=[Probe()])
card = json.load(open(run_dir / "report.json"))["card"]
print("RESULT " + json.dumps({"seen": seen, "card": card}))
"""


def test_jax_data_parallel_is_active_while_fit_runs(tmp_path):
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    card, seen = result["card"], result["seen"]
    assert (card["strategy"], card["replicas"], card["batch_size"]) == ("data-parallel", 2, 8)
    assert seen and all(s == {"distribution": "DataParallel", "mesh_devices": 2, "weight_devices": 2}
                        for s in seen)
