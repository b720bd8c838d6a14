"""Multi-worker training for real: two worker processes on 127.0.0.1 (CPU), TensorFlow's
MultiWorkerMirroredStrategy from TF_CONFIG and JAX's keras.distribution.initialize, against one
process with the same global batch and seed; then both resume."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kerasface.datasets.demo import DemoConfig, generate_demo_dataset
from kerasface.train import multiworker

REPO = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys
import keras
import numpy as np
from kerasface.train.config import TrainConfig
from kerasface.train.run import train

data, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
weights = []

class Keep(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        weights.append([np.asarray(w).tolist() for w in self.model.weights])

tiny = dict(patch_size=8, dim=16, depth=1, heads=2, mlp_dim=32, dim_head=8, dropout=0.0, emb_dropout=0.0)
config = TrainConfig.from_dict(dict(
    backbone="vit", backbone_kwargs=tiny, data=data, image_size=32, batch_size=batch, epochs=1, out=out,
    run_id="run", tensorboard=False, learning_rate=1e-3, validation_fraction=0.0, augment=False,
    max_steps_per_epoch=2))
first = train(config, log=lambda *a: print(*a, flush=True), callbacks=[Keep()])
last = train(resume=first, epochs=2, log=lambda *a: print(*a, flush=True), callbacks=[Keep()])
print("RESULT " + json.dumps({"run_dirs": [str(first), str(last)], "weights": weights}), flush=True)
"""


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_all(commands, folder, timeout=240):
    """Start every command at once (output to files: a full pipe would stall a worker and, through
    the collectives, the others) and return each one's RESULT."""
    logs = [folder / f"process{i}.log" for i in range(len(commands))]
    handles = [open(log, "w") for log in logs]
    processes = [subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True)
                 for (command, env), handle in zip(commands, handles)]
    try:
        for process in processes:
            process.wait(timeout=timeout)
    finally:
        for process, handle in zip(processes, handles):
            if process.poll() is None:
                process.kill()
            handle.close()
    outputs = [log.read_text() for log in logs]
    if any(process.returncode != 0 for process in processes):
        # a worker that dies shows up in the others as aborted collectives: show every log
        pytest.fail("\n".join(f"--- process {i} (exit {process.returncode}) ---\n"
                               f"{output.split('RESULT ', 1)[0][-3000:]}"
                               for i, (process, output) in enumerate(zip(processes, outputs))))
    return [json.loads(output.split("RESULT ", 1)[1].splitlines()[0]) for output in outputs]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return generate_demo_dataset(tmp_path_factory.mktemp("demo") / "demo",
                                 DemoConfig(identities=6, images_per_identity=6, image_size=32, photometric=False),
                                 progress=False)


def cluster_environment(backend, ports, index):
    if backend == "tensorflow":
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
        return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
    return {"KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{ports[0]}", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
            "KERAS_DISTRIBUTION_PROCESS_ID": str(index)}


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_two_workers_train_as_one_process_and_resume(tmp_path, demo, backend):
    if backend == "jax":
        pytest.importorskip("jax")
    base = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", multiworker.JAX_ADDRESSES,
                                                              multiworker.JAX_PROCESSES, multiworker.JAX_PROCESS_ID)}
    base.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO), TMPDIR=str(tmp_path))
    ports = free_ports(2)
    workers_out, single_out = tmp_path / "workers", tmp_path / "single"
    commands = [([sys.executable, "-c", WORKER, str(demo), str(workers_out), "4"],
                 {**base, **cluster_environment(backend, ports, index)}) for index in (0, 1)]
    commands.append(([sys.executable, "-c", WORKER, str(demo), str(single_out), "8"], base))
    chief, other, single = run_all(commands, tmp_path)
    for log in ("process0.log", "process1.log"):  # the resumed run reuses the process's strategy
        assert "Enabling collective ops after program startup" not in (tmp_path / log).read_text()

    # every worker returns the chief's run folder; only the chief wrote one, the other's is gone
    assert chief["run_dirs"] == other["run_dirs"] == [str(workers_out / "run")] * 2
    assert [p.name for p in workers_out.iterdir()] == ["run"]
    assert not list(tmp_path.glob("kerasface-worker*"))
    for epoch in (0, 1):  # after the first epoch, and after the resumed second
        a, b, c = ([np.asarray(w) for w in result["weights"][epoch]] for result in (chief, other, single))
        for x, y, z in zip(a, b, c):
            np.testing.assert_array_equal(x, y)  # the workers hold the same weights
            np.testing.assert_allclose(x, z, rtol=1e-5, atol=1e-6)  # and one process's
    moved = max(np.abs(np.asarray(x) - np.asarray(y)).max() for x, y in zip(chief["weights"][0], chief["weights"][1]))
    assert moved > 1e-4  # the resumed epoch trained

    reports = [json.loads((out / "run" / "report.json").read_text()) for out in (workers_out, single_out)]
    card = reports[0]["card"]
    assert (card["strategy"], card["replicas"], card["batch_size"], card["epochs"]) == ("multiworker", 2, 8, 2)
    assert reports[1]["card"]["batch_size"] == 8 and reports[1]["card"]["strategy"] == "default"
    state = json.loads((workers_out / "run" / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 2
    for key, value in reports[1]["results"]["test"].items():  # the test split's figures, on all its images
        assert reports[0]["results"]["test"][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


def test_cluster_settings_are_read_as_the_engines_define_them(monkeypatch):
    config = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {"type": "worker", "index": 1}}
    assert multiworker.tf_config_workers(config) == 3
    assert multiworker.tf_worker_index(config) == 2 and not multiworker.tf_is_chief(config)
    assert multiworker.tf_is_chief({**config, "task": {"type": "chief", "index": 0}})
    no_chief = {"cluster": {"worker": ["b:1", "c:1"]}, "task": {"type": "worker", "index": 0}}
    assert multiworker.tf_is_chief(no_chief) and multiworker.tf_worker_index(no_chief) == 0
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert multiworker.tf_config_workers() == 0 and multiworker.tf_is_chief()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not JSON"):
        multiworker.tf_config()
    monkeypatch.delenv(multiworker.JAX_ADDRESSES, raising=False)
    monkeypatch.setenv(multiworker.JAX_PROCESSES, "2")
    with pytest.raises(ValueError, match="KERAS_DISTRIBUTION_JOB_ADDRESSES"):
        multiworker.jax_processes_from_environment()
    monkeypatch.delenv(multiworker.JAX_PROCESSES)
    assert multiworker.jax_processes_from_environment() == 1
