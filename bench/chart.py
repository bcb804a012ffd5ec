"""Charts of the bench/ results: bench/results/NAME.json -> bench/results/NAME.png.

    python bench/chart.py peers|scaling|cold-start|wasmtime-serve|sandbox-cost

Each chart says the machine and the date of its run; the numbers are the JSON's.
"""

import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# The same directory bench/lib.sh writes to (RESULTS, default bench/results).
RESULTS = Path(os.environ.get("RESULTS", Path(__file__).resolve().parent / "results"))


def footer(fig, data):
    fig.text(0.01, 0.01, f"{data['machine']} - {data['date']}", fontsize=7, color="gray")


def bars(ax, labels, values, fmt="{:.0f}"):
    b = ax.bar(labels, values, color=["#1f77b4" if l.startswith("host") else "#aaaaaa" for l in labels])
    ax.bar_label(b, labels=[fmt.format(v) for v in values], fontsize=7)
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)


def peers(data):
    med = data["median"]
    servers = ["host-embedded", "flask-memory-sync", "flask-memory-gthread",
               "host-ferretdb", "flask-ferretdb-sync", "flask-ferretdb-gthread"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for col, req in enumerate(("one", "list")):
        bars(axes[0][col], servers, [med[f"{s}/{req}"]["rps"] for s in servers])
        axes[0][col].set_title(f"GET {'one task' if req == 'one' else 'a list of 20'}: req/s (higher is better)")
        bars(axes[1][col], servers, [med[f"{s}/{req}"]["p99_ms"] for s in servers], "{:.1f}")
        axes[1][col].set_title("p99 latency, ms (lower is better)")
        axes[1][col].set_yscale("log")
    fig.suptitle(f"tasks API vs Flask + gunicorn, wrk {data['connections']} connections, median of rounds")
    return fig


def scaling(data):
    pts = data["points"]
    conns = [p["connections"] for p in pts]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 4))
    a.plot(conns, [p["rps"] for p in pts], marker="o")
    a.set_title("req/s")
    b.plot(conns, [p["p99_ms"] for p in pts], marker="o", color="tab:red")
    b.set_title("p99 ms")
    b.set_yscale("log")
    c.plot(conns, [p["rss_mib"] for p in pts], marker="o", color="tab:green")
    c.set_title("RSS MiB after the round")
    for ax in (a, b, c):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("connections")
        ax.grid(alpha=0.3)
    fig.suptitle(f"GET one task vs open connections ({data['store']} store)")
    return fig


def cold_start(data):
    modes = list(data["median_ms"])
    fig, ax = plt.subplots(figsize=(8, 4))
    bars(ax, modes, [data["median_ms"][m] for m in modes], "{:.1f}")
    ax.set_yscale("log")
    ax.set_title("process start to first answered request, ms (median)")
    return fig


def wasmtime_serve(data):
    med = data["median"]
    names = list(med)
    fig, ax = plt.subplots(figsize=(8, 4))
    bars(ax, names, [med[n]["rps"] for n in names])
    ax.set_title("the same wasi:http component, req/s (higher is better)")
    return fig


def sandbox_cost(data):
    r = data["ratios"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(range(1, len(r) + 1), [x["get_one"] for x in r], marker="o", label="GET one")
    ax.plot(range(1, len(r) + 1), [x["list_20"] for x in r], marker="o", label="list 20")
    ax.axhline(0.5, color="gray", ls="--", lw=0.8, label="target 0.5")
    ax.set_ylim(0, 1)
    ax.set_xlabel("round")
    ax.set_title(f"component req/s / native req/s; instantiate {data['instantiate_mean_us']:.1f} us")
    ax.legend()
    return fig


CHARTS = {"peers": peers, "scaling": scaling, "cold-start": cold_start,
          "wasmtime-serve": wasmtime_serve, "sandbox-cost": sandbox_cost}


def main():
    name = sys.argv[1]
    data = json.loads((RESULTS / f"{name}.json").read_text())
    fig = CHARTS[name.split("-ferretdb")[0]](data)
    footer(fig, data)
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    out = RESULTS / f"{name}.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
