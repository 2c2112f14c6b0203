"""Measures SailPoint's Python SDK on one payload: ProvisioningCompleted.from_json and to_json.

Usage: python3 sdk_model.py PAYLOAD
Prints one JSON line {"sdk_version", "python"}, then answers each command read from standard
input, `parse SECONDS` or `serialize SECONDS`, with one line {"per_s": rate}. The bench drives it
so that the SDK's slices of time alternate with its own: a change in the machine's load then
weighs on both alike.
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
    path = sys.argv[1]
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    event = ProvisioningCompleted.from_json(text)
    if event is None:
        raise SystemExit("the SDK returned no event for " + path)
    ops = {
        "parse": lambda: ProvisioningCompleted.from_json(text),
        "serialize": event.to_json,
    }
    print(json.dumps({
        "sdk_version": metadata.version("sailpoint"),
        "python": platform.python_version(),
    }), flush=True)
    for line in sys.stdin:
        op, seconds = line.split()
        print(json.dumps({"per_s": rate(float(seconds), ops[op])}), flush=True)


main()
