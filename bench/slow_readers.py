"""Clients that ask for the largest page and never read it, for bench/slow-clients.sh:
seeds 100 tasks whose 10 KiB descriptions JSON escapes sixfold (about 6.2 MB a page)
unless they are there, then keeps READERS connections open, each with a 4 KiB
receive window, each having sent `GET /api/tasks?limit=100`, for SECONDS; while
they are open it samples the host's resident memory (PID) every 100 ms. Prints a
JSON summary: the peak, and how the host answered the first bytes it could send.

    python bench/slow_readers.py HOST:PORT PID READERS SECONDS
"""

import json
import socket
import sys
import time
import urllib.request

HOST, PORT = sys.argv[1].rsplit(":", 1)
PID, READERS, SECONDS = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
PAGE = b"GET /api/tasks?limit=100 HTTP/1.1\r\nHost: x\r\n\r\n"


def rss_kib():
    with open(f"/proc/{PID}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def seed():
    base = f"http://{HOST}:{PORT}/api/tasks"
    with urllib.request.urlopen(base + "?limit=100&q=largest-page") as r:
        if len(json.load(r)["items"]) >= 100:
            return
    description = "\u0001" * 10240
    for i in range(100):
        body = json.dumps({"title": f"largest-page {i}", "description": description}).encode()
        req = urllib.request.Request(base, data=body, headers={"content-type": "application/json"})
        urllib.request.urlopen(req).read()


seed()
before = rss_kib()
readers = []
for _ in range(READERS):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((HOST, int(PORT)))
    s.sendall(PAGE)
    readers.append(s)
peak = before
end = time.monotonic() + SECONDS
while time.monotonic() < end:
    peak = max(peak, rss_kib())
    time.sleep(0.1)
# What the host answered, from the first bytes each connection can read now.
answers = {}
for s in readers:
    s.settimeout(0.01)
    try:
        status = s.recv(16).split(b" ")[1].decode()
    except (OSError, IndexError):
        status = "none"
    answers[status] = answers.get(status, 0) + 1
    s.close()
print(json.dumps({"readers": READERS, "rss_kib": {"before": before, "peak": peak}, "answers": answers}))
