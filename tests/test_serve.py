"""The HTTP service through a real HTTP client on 127.0.0.1: a kerasface-serve subprocess with a
tiny embedding model, on scikit-image's astronaut (Eileen Collins) and matplotlib's Grace Hopper."""

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

for package in ("faiss", "fastapi", "uvicorn", "httpx", "multipart"):
    pytest.importorskip(package)

import cv2  # noqa: E402
import httpx  # noqa: E402

from kerasface.faces.imread import encode_photo, read_photo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 240


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tiny_model(path):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((112, 112, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 7, strides=4, activation="relu")(x)
    x = keras.layers.MaxPooling2D(4)(x)
    outputs = keras.layers.Dense(64)(keras.layers.Flatten()(x))
    keras.Model(inputs, outputs).save(path)
    return path


def start_server(model, gallery, log_path, extra=()):
    """A kerasface-serve subprocess on a free port of 127.0.0.1 and its URL, once /health answers."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = open(log_path, "ab")
    process = subprocess.Popen([sys.executable, "-m", "kerasface.cli.serve", "--model", str(model), "--gallery",
                                str(gallery), "--host", "127.0.0.1", "--port", str(port), *extra],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{Path(log_path).read_text()[-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.5)
    process.kill()
    raise AssertionError(f"server did not answer within {STARTUP_S} s:\n{Path(log_path).read_text()[-3000:]}")


def stop(process) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def photos():
    import matplotlib.cbook
    from skimage import data as skdata

    astronaut = cv2.resize(skdata.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    grace = read_photo(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    grace = cv2.resize(grace, (256, 300), interpolation=cv2.INTER_AREA)
    pair = np.zeros((300, 512, 3), np.uint8)
    pair[:256, :256], pair[:, 256:] = astronaut, grace
    coffee = cv2.resize(skdata.coffee(), (200, 133), interpolation=cv2.INTER_AREA)
    moved = cv2.warpAffine(astronaut, np.float32([[0.95, 0, 8], [0, 0.95, 6]]), (256, 256))
    return {name: encode_photo(image, ".png") for name, image in
            (("astronaut", astronaut), ("grace", grace), ("pair", pair), ("coffee", coffee), ("moved", moved))}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    model = _tiny_model(root / "tiny.keras")
    gallery = root / "gallery.npz"
    process, url = start_server(model, gallery, root / "server.log")
    yield {"url": url, "process": process, "model": model, "gallery": gallery, "root": root}
    stop(process)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _left_to_right(faces) -> list[str]:
    return [f["name"] for f in sorted(faces, key=lambda f: f["box"][0])]


def test_health_says_the_threshold_is_the_default(server):
    health = httpx.get(server["url"] + "/health").json()
    assert health["people"] == 0 and health["index"]["kind"] == "hnsw" and health["threshold"] == 0.35
    assert health["threshold_source"].startswith("default") and "--threshold" in health["note"]
    assert not server["gallery"].exists()
    docs = httpx.get(server["url"] + "/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    paths = httpx.get(server["url"] + "/openapi.json").json()["paths"]
    assert {"/embed", "/verify", "/identify", "/enroll", "/people/{name}", "/health"} <= set(paths)
    assert "multipart/form-data" in paths["/enroll"]["post"]["requestBody"]["content"]


def test_enroll_identify_verify_embed_and_remove(server, photos):
    from kerasface.faces.gallery import Gallery

    url = server["url"]
    done = httpx.post(url + "/enroll", data={"name": "eileen"},
                      files=[("image", ("a.png", photos["astronaut"])), ("image", ("m.png", photos["moved"]))])
    assert done.status_code == 200, done.text
    assert done.json() == {"name": "eileen", "photos": 2, "replaced": False, "people": 1}
    done = httpx.post(url + "/enroll", json={"name": "grace", "image": _b64(photos["grace"])})
    assert done.status_code == 200 and done.json()["people"] == 2
    assert Gallery.load(server["gallery"]).names == ["eileen", "grace"]
    assert httpx.get(url + "/people/eileen").json() == {"name": "eileen", "photos": 2, "files": ["image 1", "image 2"]}

    found = httpx.post(url + "/identify", files={"image": ("pair.png", photos["pair"])}).json()["faces"]
    assert _left_to_right(found) == ["eileen", "grace"] and all(f["similarity"] > 0.9 for f in found)
    found = httpx.post(url + "/identify", json={"image": _b64(photos["moved"])}).json()["faces"]
    assert [f["name"] for f in found] == ["eileen"]

    same = httpx.post(url + "/verify", files={"image1": photos["astronaut"], "image2": photos["moved"]}).json()
    other = httpx.post(url + "/verify", json={"image1": _b64(photos["astronaut"]),
                                              "image2": _b64(photos["grace"])}).json()
    assert same["same"] and same["score"] >= same["threshold"] == 0.35 and other["score"] < same["score"]

    (face,) = httpx.post(url + "/embed", files={"image": photos["grace"]}).json()["faces"]
    assert len(face["embedding"]) == 64 and np.linalg.norm(face["embedding"]) == pytest.approx(1.0, abs=1e-4)
    assert set(face) >= {"box", "landmarks", "confidence"}

    assert httpx.delete(url + "/people/grace").json() == {"removed": "grace", "people": 1}
    found = httpx.post(url + "/identify", files={"image": photos["pair"]}).json()["faces"]
    assert sorted(f["closest"] for f in found) == ["eileen", "eileen"]
    assert Gallery.load(server["gallery"]).names == ["eileen"]
    assert httpx.post(url + "/enroll", json={"name": "grace", "images": [_b64(photos["grace"])]}).status_code == 200


def test_concurrent_requests_all_answered(server, photos):
    from concurrent.futures import ThreadPoolExecutor

    def ask(k):
        return httpx.post(server["url"] + "/identify", files={"image": photos["pair" if k % 2 else "moved"]},
                          timeout=120)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    assert all(a.status_code == 200 for a in answers)
    for k, answer in enumerate(answers):
        assert _left_to_right(answer.json()["faces"]) == (["eileen", "grace"] if k % 2 else ["eileen"])
    batches = httpx.get(server["url"] + "/health").json()["batches"]
    assert batches["images"] >= 8 and batches["detection_calls"] <= batches["images"]


def test_bad_input_gets_a_4xx_json_error_naming_the_problem(server, photos):
    url = server["url"]
    cases = [
        (httpx.post(url + "/identify", files={"image": ("notes.txt", b"not an image at all")}), 400,
         "image: not a readable image"),
        (httpx.post(url + "/identify", files={"image": photos["coffee"]}), 422, "image: no face found"),
        (httpx.post(url + "/verify", files={"image1": photos["grace"], "image2": photos["coffee"]}), 422,
         "image2: no face found"),
        (httpx.post(url + "/identify", files={"image": os.urandom(50 * 2 ** 20)}), 413, "over the limit of 20 MB"),
        (httpx.post(url + "/identify", files={"image": encode_photo(np.zeros((9000, 8000, 3), np.uint8), ".png")}),
         400, "more pixels than OPENCV_IO_MAX_IMAGE_PIXELS 67108864"),
        (httpx.delete(url + "/people/nobody"), 404, "nobody: no such person"),
        (httpx.get(url + "/people/nobody"), 404, "nobody: no such person"),
        (httpx.post(url + "/identify", json={"image": "%%% not base64"}), 400, "image: not valid base64"),
        (httpx.post(url + "/identify", json={"picture": _b64(photos["grace"])}), 400, "image: missing"),
        (httpx.post(url + "/identify", content=b"{broken", headers={"content-type": "application/json"}), 400,
         "neither a multipart form nor JSON"),
        (httpx.post(url + "/enroll", files={"image": photos["grace"]}), 400, "name: give the person's name"),
        (httpx.post(url + "/enroll", data={"name": "x"}), 400, "enroll: no image given"),
        (httpx.post(url + "/enroll", data={"name": "nobody"}, files={"image": photos["coffee"]}), 422,
         "image 1: no face found"),
        (httpx.get(url + "/nowhere"), 404, "Not Found"),
    ]
    for answer, status, message in cases:
        assert answer.status_code == status, (message, answer.text)
        assert message in answer.json()["error"]
    assert httpx.get(url + "/health").json()["status"] == "ok"


def test_a_body_without_length_over_the_limit_gets_413(server):
    def chunks():
        for _ in range(30):
            yield b"x" * 2 ** 20

    answer = httpx.post(server["url"] + "/identify", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in answer.request.headers
    assert answer.status_code == 413 and "over the limit" in answer.json()["error"]
    assert httpx.get(server["url"] + "/health").json()["status"] == "ok"


def test_load_test_checks_every_acknowledged_enrolment_and_cleans_up(server, photos):
    from kerasface.serve.load_test import load_test

    before = httpx.get(server["url"] + "/health").json()["people"]
    result = asyncio.run(load_test(server["url"], photos["grace"], clients=2, seconds=2, enroll_fraction=0.5))
    assert result["requests"] == result["identify"]["requests"] + result["enroll"]["requests"] > 0
    assert result["all"]["errors"] == 0 and result["enrolments"]["missing"] == []
    assert result["enrolments"]["removed_after"] == result["enrolments"]["acknowledged"]
    assert httpx.get(server["url"] + "/health").json()["people"] == before


def test_commands_refuse_bad_arguments_with_one_error_line(tmp_path, capsys):
    from kerasface.cli.load_test_serve import main as load_test_main
    from kerasface.cli.serve import main as serve_main

    assert load_test_main(["--url", "http://10.0.0.1:8000", "--seconds", "1"]) == 1
    assert "only targets a service on this machine" in capsys.readouterr().err
    assert serve_main(["--model", str(tmp_path / "missing.keras"), "--gallery", str(tmp_path / "g.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.keras: no such model file" in err and "Traceback" not in err


def test_a_change_that_cannot_be_written_is_undone(tmp_path):
    from types import SimpleNamespace

    from kerasface.faces.gallery import Gallery
    from kerasface.faces.search_benchmark import unit_vectors
    from kerasface.serve.service import Service

    vectors = unit_vectors(np.random.default_rng(0), 4, 16)
    gallery = Gallery(["a", "b"], vectors[:2].copy(), [1, 1], "model", vectors[3], (112, 112))
    gallery.build_index("flat")
    state = SimpleNamespace(gallery=gallery, gallery_path=tmp_path / "no-such-folder" / "g.npz")
    for name, change in (("a", lambda: gallery.add("a", vectors[2])), ("c", lambda: gallery.add("c", vectors[2])),
                         ("b", lambda: gallery.remove("b"))):
        with pytest.raises(OSError):
            Service.change_durably(state, name, change)
        assert sorted(gallery.names) == ["a", "b"]
    rows, scores = gallery.match(vectors[:3])
    assert [gallery.names[r] for r in rows[:2]] == ["a", "b"] and scores[2] < 0.9


def test_threshold_given_else_calibrated_else_the_default(tmp_path):
    from kerasface.serve.service import pick_threshold

    assert pick_threshold(tmp_path / "model.keras", None)[0] == 0.35
    assert "no calibrated threshold" in pick_threshold(tmp_path / "model.keras", None)[1]
    (tmp_path / "report.json").write_text('{"results": {"test": {"threshold": 0.4}}}')
    threshold, where = pick_threshold(tmp_path, None)
    assert threshold == pytest.approx(0.8) and "report.json: test threshold 0.400" in where
    assert pick_threshold(tmp_path, 0.5) == (0.5, "--threshold (the run report's 0.800 overridden)")


def test_batcher_gathers_concurrent_requests_into_one_call():
    from concurrent.futures import ThreadPoolExecutor

    from kerasface.serve.batching import Batcher

    calls = []

    def double(items):
        calls.append(list(items))
        return [2 * x for x in items]

    async def scenario():
        with ThreadPoolExecutor(1) as worker:
            batcher = Batcher(double, worker, max_items=8, max_wait_s=0.5)
            batcher.start()
            results = await asyncio.gather(batcher.submit([1, 2]), batcher.submit([3]), batcher.submit([4, 5]))
            await batcher.stop()
        return results

    assert asyncio.run(scenario()) == [[2, 4], [6], [8, 10]]
    assert calls == [[1, 2, 3, 4, 5]]


def test_killed_during_enrolment_the_gallery_stays_valid_and_keeps_every_acknowledged_one(server, photos):
    from kerasface.faces.gallery import Gallery

    url, acknowledged, stop_sending = server["url"], [], threading.Event()

    def enroll_many(worker):
        with httpx.Client(timeout=30) as client:
            for k in range(200):
                if stop_sending.is_set():
                    return
                try:
                    answer = client.post(url + "/enroll", json={"name": f"w{worker}-{k}",
                                                                "image": _b64(photos["moved"])})
                except httpx.TransportError:
                    return
                if answer.status_code == 200:
                    acknowledged.append(answer.json()["name"])

    threads = [threading.Thread(target=enroll_many, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while len(acknowledged) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    server["process"].send_signal(signal.SIGKILL)
    server["process"].wait()
    stop_sending.set()
    for thread in threads:
        thread.join(timeout=60)
    assert len(acknowledged) >= 4

    gallery = Gallery.load(server["gallery"])
    assert set(acknowledged) <= set(gallery.names) and {"eileen", "grace"} <= set(gallery.names)
    assert gallery.index.faiss_index.ntotal - gallery.index.removed == len(gallery.names)
    process, url = start_server(server["model"], server["gallery"], server["root"] / "restart.log")
    server["process"] = process
    health = httpx.get(url + "/health").json()
    assert health["people"] == len(gallery.names)
    found = httpx.post(url + "/identify", files={"image": photos["grace"]}).json()["faces"]
    assert [f["name"] for f in found] == ["grace"]
    assert health["index"]["kind"] == "hnsw"
    answer = httpx.post(url + "/enroll", json={"name": "after-restart", "image": _b64(photos["grace"])})
    assert answer.status_code == 200
    assert Gallery.load(server["gallery"]).names == gallery.names + ["after-restart"]
