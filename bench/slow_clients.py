"""Slow clients at scale, for bench/slow-clients.sh: keeps IDLE connections open
that send nothing, SLOW_HEADERS that send a request head one byte a second, and
SLOW_BODIES that send a whole head announcing a body, then trickle it a byte a
second. Whatever the server closes is opened again at once, as an attacker would,
until SECONDS have passed; then everything is closed. Prints a JSON summary.

    python bench/slow_clients.py HOST:PORT IDLE SLOW_HEADERS SLOW_BODIES SECONDS
"""

import asyncio
import json
import sys
import time

HOST, PORT = sys.argv[1].rsplit(":", 1)
IDLE, SLOW_HEADERS, SLOW_BODIES, SECONDS = map(int, sys.argv[2:6])
stats = {"opened": 0, "closed_by_server": 0, "connect_errors": 0, "peak_open": 0}
open_now = 0
deadline = 0.0


async def one(kind):
    global open_now
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(HOST, int(PORT))
        except OSError:
            stats["connect_errors"] += 1
            await asyncio.sleep(0.1)
            continue
        stats["opened"] += 1
        open_now += 1
        stats["peak_open"] = max(stats["peak_open"], open_now)
        try:
            if kind == "slow_headers":
                head = b"GET /api/tasks HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4096
                for i in range(len(head)):
                    writer.write(head[i:i + 1])
                    await writer.drain()
                    if await closed(reader, 1.0):
                        break
            elif kind == "slow_bodies":
                writer.write(b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100000\r\n\r\n{")
                await writer.drain()
                while not await closed(reader, 1.0):
                    writer.write(b" ")
                    await writer.drain()
            else:
                while not await closed(reader, 1.0):
                    pass
            stats["closed_by_server"] += 1
        except ConnectionAbortedError:
            pass  # our own stop, not the server's doing
        except (ConnectionError, OSError):
            stats["closed_by_server"] += 1
        finally:
            open_now -= 1
            writer.close()


async def closed(reader, wait):
    """True once the server has closed the connection (or answered and closed)."""
    if time.monotonic() >= deadline:
        raise ConnectionAbortedError  # our own stop: not counted as the server's
    try:
        data = await asyncio.wait_for(reader.read(4096), wait)
    except asyncio.TimeoutError:
        return False
    return True if not data else False


async def main():
    global deadline
    deadline = time.monotonic() + SECONDS
    tasks = [one("idle") for _ in range(IDLE)]
    tasks += [one("slow_headers") for _ in range(SLOW_HEADERS)]
    tasks += [one("slow_bodies") for _ in range(SLOW_BODIES)]
    await asyncio.gather(*tasks, return_exceptions=True)


asyncio.run(main())
print(json.dumps(stats))
