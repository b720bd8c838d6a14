"""A bounded load test of a ``kerasface-serve`` on this machine (127.0.0.1 only).

``clients`` concurrent clients send /identify and, with probability ``enroll_fraction``,
/enroll (each under a new name) for ``seconds``; then every acknowledged enrolment is looked up
(GET /people/{name}) and, unless ``keep``, removed again.
"""

from __future__ import annotations

import asyncio
import base64
import time
import urllib.parse
import uuid

import numpy as np

from kerasface.errors import BadInputError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_CLIENTS, MAX_SECONDS = 64, 600.0


def local_url(url: str) -> str:
    """``url`` without a trailing slash; BadInputError unless it is http on this machine."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOCAL_HOSTS:
        raise BadInputError(f"{url}: the load test only targets a service on this machine "
                            f"(http://127.0.0.1:PORT)")
    return url.rstrip("/")


async def _client(http, url, image_b64, deadline, enroll_fraction, rng, prefix, records, acknowledged):
    k = 0
    while time.monotonic() < deadline:
        enrolling = rng.random() < enroll_fraction
        body = {"image": image_b64}
        if enrolling:
            body["name"] = f"{prefix}-{k}"
            k += 1
        tick = time.perf_counter()
        try:
            answer = await http.post(url + ("/enroll" if enrolling else "/identify"), json=body)
            status = answer.status_code
        except Exception as error:
            status = type(error).__name__
        records.append(("enroll" if enrolling else "identify", time.perf_counter() - tick, status))
        if enrolling and status == 200:
            acknowledged.append(answer.json()["name"])


def _summary(records, seconds) -> dict:
    out = {"seconds": round(seconds, 2), "requests": len(records),
           "requests_per_s": round(len(records) / seconds, 2) if seconds > 0 else None}
    for kind in ("all", "identify", "enroll"):
        mine = [r for r in records if kind == "all" or r[0] == kind]
        latency = np.array([r[1] for r in mine]) * 1000.0
        out[kind] = {"requests": len(mine), "errors": sum(r[2] != 200 for r in mine),
                     "p50_ms": round(float(np.percentile(latency, 50)), 1) if len(mine) else None,
                     "p99_ms": round(float(np.percentile(latency, 99)), 1) if len(mine) else None}
    statuses = {}
    for r in records:
        if r[2] != 200:
            statuses[str(r[2])] = statuses.get(str(r[2]), 0) + 1
    out["error_statuses"] = statuses
    return out


async def load_test(url: str, image: bytes, clients: int = 4, seconds: float = 10.0, enroll_fraction: float = 0.2,
                    keep: bool = False, seed: int = 0) -> dict:
    """Requests/s, p50/p99 latency and errors, overall and per endpoint, and the check of the
    acknowledged enrolments (``missing``: acknowledged but not in the gallery)."""
    import httpx

    url = local_url(url)
    if not 1 <= clients <= MAX_CLIENTS:
        raise BadInputError(f"clients must lie in 1..{MAX_CLIENTS}, got {clients}")
    if not 0 < seconds <= MAX_SECONDS:
        raise BadInputError(f"seconds must lie in (0, {MAX_SECONDS:g}], got {seconds}")
    if not 0.0 <= enroll_fraction <= 1.0:
        raise BadInputError(f"enroll fraction must lie in [0, 1], got {enroll_fraction}")
    image_b64 = base64.b64encode(image).decode()
    run = uuid.uuid4().hex[:8]
    records, acknowledged = [], []
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        health = await http.get(url + "/health")
        if health.status_code != 200:
            raise BadInputError(f"{url}/health answered {health.status_code}")
        start = time.monotonic()
        deadline = start + seconds
        rngs = np.random.default_rng(seed).spawn(clients)
        await asyncio.gather(*(_client(http, url, image_b64, deadline, enroll_fraction, rngs[c],
                                       f"load-{run}-{c}", records, acknowledged) for c in range(clients)))
        result = _summary(records, time.monotonic() - start)
        missing = [name for name in acknowledged if (await http.get(url + f"/people/{name}")).status_code != 200]
        result["enrolments"] = {"acknowledged": len(acknowledged), "missing": missing}
        if not keep:
            removed = [name for name in acknowledged if name not in missing]
            for name in removed:
                await http.delete(url + f"/people/{name}")
            result["enrolments"]["removed_after"] = len(removed)
    return result
