"""The measuring half of bench/cold-start.sh: starts the host STARTS times per mode
and times process start to the first 200 from GET /api/tasks?limit=1 (polled every
0.2 ms on a port chosen beforehand). Prints a table on stderr, JSON on stdout."""

import json
import os
import socket
import statistics
import subprocess
import sys
import time

BIN, WORK, WASM, STARTS = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answered(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET /api/tasks?limit=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def start(args, data_dir):
    port = free_port()
    cmd = [BIN, "--listen", f"127.0.0.1:{port}", "--admin-listen", "127.0.0.1:0",
           "--data-dir", data_dir, *args]
    env = {**os.environ, "RUST_LOG": "warn"}
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not answered(port):
            if p.poll() is not None:
                sys.exit(f"host exited ({p.returncode}): {' '.join(cmd)}")
            if time.perf_counter() - t0 > 30:
                sys.exit(f"no answer in 30 s: {' '.join(cmd)}")
            time.sleep(0.0002)
        return (time.perf_counter() - t0) * 1000
    finally:
        p.terminate()
        p.wait(10)


MODES = {
    "builtin, compiled at start": (["--no-compile-cache"], False),
    "builtin, compile cache warm": ([], True),
    "builtin, --precompiled-dir": (["--precompiled-dir", f"{WORK}/precompiled", "--allow-precompiled"], False),
    ".cwasm": (["--component", f"{WORK}/app.cwasm", "--allow-precompiled"], False),
    ".wasm, compiled at start": (["--component", WASM, "--no-compile-cache"], False),
    ".wasm, compile cache warm": (["--component", WASM], True),
}

results = {}
for mode, (args, warm) in MODES.items():
    data = f"{WORK}/cold-{len(results)}"
    if warm:
        start(args, data)  # fills the cache; not counted
    times = []
    for i in range(STARTS):
        d = data if warm else f"{data}-{i}"
        times.append(start(args, d))
    results[mode] = times
    print(f"{mode:30s} min {min(times):7.1f}  median {statistics.median(times):7.1f}  max {max(times):7.1f} ms",
          file=sys.stderr)

print(json.dumps({"starts": STARTS, "ms": results,
                  "median_ms": {m: statistics.median(t) for m, t in results.items()}}))
