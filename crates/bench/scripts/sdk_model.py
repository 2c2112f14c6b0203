"""Measures SailPoint's Python SDK on one payload: ProvisioningCompleted.from_json and to_json.

Usage: python3 sdk_model.py PAYLOAD SECONDS
Prints one JSON line: {"sdk_version", "python", "parse_per_s", "serialize_per_s"}.
"""
import json
import platform
import sys
import time
from importlib import metadata

from sailpoint.triggers.models.provisioning_completed import ProvisioningCompleted


def rate(seconds, op):
    deadline = time.perf_counter() + seconds / 10
    while time.perf_counter() < deadline:
        op()
    done = 0
    batch = 1
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            op()
        done += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed
        if elapsed < seconds / 100:
            batch *= 2


def main():
    path, seconds = sys.argv[1], float(sys.argv[2])
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    event = ProvisioningCompleted.from_json(text)
    if event is None:
        raise SystemExit("the SDK returned no event for " + path)
    print(json.dumps({
        "sdk_version": metadata.version("sailpoint"),
        "python": platform.python_version(),
        "parse_per_s": rate(seconds, lambda: ProvisioningCompleted.from_json(text)),
        "serialize_per_s": rate(seconds, event.to_json),
    }))


main()
