"""check_runtime reports the trainer's own runtime decisions; the install extras give exactly one
TensorFlow distribution per set-up."""

import configparser
import json
import re
from pathlib import Path

import keras
import pytest
from packaging.requirements import Requirement

from kerasface.cli import check_runtime
from kerasface.train.runtime import auto_jit_compile, resolve_runtime

REPO = Path(__file__).resolve().parents[1]
TENSORFLOWS = set(check_runtime.TENSORFLOW_DISTRIBUTIONS)


@pytest.mark.backend
def test_json_report_is_the_runtime_the_trainer_resolves(capsys):
    assert check_runtime.main(["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    runtime = resolve_runtime("auto", "auto", "auto")
    assert report["backend"] == keras.backend.backend()
    assert report["runtime"] == {**runtime.describe(), "accelerator": runtime.accelerator}
    assert report["runtime"]["jit_compile"] == auto_jit_compile(runtime.backend, runtime.accelerator)
    assert report["installed"]["tensorflow"]  # this environment has one
    assert len(report["installed"]["tensorflow"]) == 1, report["installed"]["tensorflow"]
    assert report["tensorflow_details"]["importable"] and report["tensorflow_details"]["devices"]
    if keras.backend.backend() == "jax":
        assert report["jax_details"]["devices"] and report["jax_details"]["process_count"] == 1
    assert report["warnings"] == []


@pytest.mark.backend
def test_text_report_and_expect(capsys):
    runtime = resolve_runtime("auto", "auto", "auto")
    assert check_runtime.main([]) == 0
    out = capsys.readouterr().out
    for label in ("backend", "tensorflow", "jax", "device", "strategy", "XLA", "precision"):
        assert re.search(rf"^{label}\s", out, re.M), label
    assert f"strategy       {runtime.strategy_name} ({runtime.num_replicas} replica" in out
    assert f"precision      {runtime.precision} " in out
    assert check_runtime.main(["--expect", runtime.accelerator]) == 0
    capsys.readouterr()
    other = "tpu" if runtime.accelerator != "tpu" else "gpu"
    assert check_runtime.main(["--expect", other]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: expected a {other.upper()} runtime, found {runtime.accelerator.upper()} ({runtime.device})"


def test_warnings_name_two_tensorflows_none_and_an_invisible_gpu():
    def report(tensorflows, **details):
        return {"installed": {"tensorflow": tensorflows, "jax": {}}, "tensorflow_details": details}

    assert check_runtime.warnings_for(report({"tensorflow-cpu": "2.21.0"}, built_with_cuda=False)) == []
    two = check_runtime.warnings_for(report({"tensorflow": "2.21.0", "tensorflow-cpu": "2.21.0"}))
    assert len(two) == 1 and "2 TensorFlow distributions are installed (tensorflow, tensorflow-cpu)" in two[0]
    assert "no TensorFlow distribution" in check_runtime.warnings_for(report({}))[0]
    blind = check_runtime.warnings_for(report({"tensorflow": "2.21.0"}, built_with_cuda=True, gpus=[]))
    assert len(blind) == 1 and "sees no GPU" in blind[0]


def _requirements(text: str) -> list[Requirement]:
    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    return [Requirement(line) for line in lines if line]


def _tensorflows(requirements, machine: str) -> list[str]:
    """The TensorFlow distributions these requirements install on a Linux machine of this kind."""
    environment = {"platform_machine": machine, "sys_platform": "linux", "extra": ""}
    return sorted(r.name for r in requirements if r.name in TENSORFLOWS
                  and (r.marker is None or r.marker.evaluate(environment)))


def test_every_set_up_installs_exactly_one_tensorflow():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    base = _requirements(config["options"]["install_requires"])
    extras = {name: _requirements(text) for name, text in config["options.extras_require"].items()}
    for machine in ("x86_64", "aarch64"):
        assert _tensorflows(base, machine) == []  # a TPU runtime keeps its own TensorFlow
        assert _tensorflows(base + extras["cpu"], machine) == (["tensorflow-cpu"] if machine == "x86_64"
                                                               else ["tensorflow"])
        assert _tensorflows(base + extras["gpu"], machine) == ["tensorflow"]
        assert _tensorflows(base + extras["gpu"] + extras["jax-gpu"] + extras["test"], machine) == ["tensorflow"]
        assert _tensorflows(base + extras["cpu"] + extras["test"], machine) != []
        assert _tensorflows(extras["serve"] + extras["interop"], machine) == []  # they add none of their own
    assert [str(r) for r in extras["gpu"]] == ["tensorflow[and-cuda]<2.22,>=2.21"]
    assert {r.name: r.extras for r in extras["jax-gpu"]} == {"jax": {"cuda12"}}
    # make install (and CI's make test) installs the cpu extra, with the test, serve and interop ones,
    # unless told otherwise
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^EXTRAS \?= cpu,test,serve,interop$", makefile, re.M) and '-e ".[$(EXTRAS)]"' in makefile


@pytest.mark.backend
def test_a_worker_of_a_cluster_is_described_without_joining_it(monkeypatch, capsys):
    if keras.backend.backend() == "tensorflow":
        cluster = {"cluster": {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2", "127.0.0.1:3"]},
                   "task": {"type": "worker", "index": 0}}
        monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
        expected = {"workers": 3, "worker": 1, "chief": False}
    else:
        monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "127.0.0.1:1")
        monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
        monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "1")
        expected = {"workers": 2, "worker": 1, "chief": False}
    assert check_runtime.main(["--json"]) == 0
    runtime = json.loads(capsys.readouterr().out)["runtime"]
    assert runtime["strategy"] == "multiworker"
    assert {k: runtime[k] for k in expected} == expected
    assert check_runtime.main([]) == 0
    assert f"workers        {expected['workers']} (this is worker 1)" in capsys.readouterr().out
