#!/usr/bin/env python3
"""Render each Grafana dashboard's panels as one PNG from the query_range data that
monitoring/live_check.py saved, so a reader sees what the dashboards show without a
Grafana (none can be obtained on these machines). Panels keep their dashboard
layout (gridPos); each series is drawn as its Grafana legend would name it.

    python3 monitoring/render_dashboards.py DATA_DIR OUT_DIR
"""

import json
import pathlib
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent


def legend(fmt, metric):
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt or "") or json.dumps(metric)


def load_data(data_dir):
    """live_check.py's saved query results, by (dashboard uid, panel title, refId)."""
    data = {}
    for f in data_dir.glob("*.json"):
        saved = json.loads(f.read_text())
        data[(saved["dashboard"], saved["title"], saved["ref"])] = saved
    return data


def render(dashboard_file, data, out_dir):
    d = json.loads(dashboard_file.read_text())
    uid = d["uid"]
    panels = d["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = plt.figure(figsize=(16, rows * 0.5 + 1))
    fig.suptitle(f'{d["title"]} (live check run)', fontsize=13)
    spec = fig.add_gridspec(rows, 24, hspace=6, wspace=1.5)
    drawn = 0
    for p in panels:
        g = p["gridPos"]
        ax = fig.add_subplot(spec[g["y"]:g["y"] + g["h"], g["x"]:g["x"] + g["w"]])
        ax.set_title(p["title"], fontsize=9)
        ax.tick_params(labelsize=7)
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        for t in p["targets"]:
            saved = data.get((uid, p["title"], t["refId"]))
            if saved is None:
                continue
            for series in saved["result"]:
                pts = [(float(ts), float(v)) for ts, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
                if not pts:
                    continue
                xs = [ts - saved["start"] for ts, _ in pts]
                ys = [v for _, v in pts]
                ax.plot(xs, ys, linewidth=1, label=legend(t.get("legendFormat"), series["metric"])[:48])
                drawn += 1
        if not ax.lines:
            ax.text(0.5, 0.5, "no data in this run", ha="center", va="center", transform=ax.transAxes, fontsize=8, color="grey")
        else:
            ax.legend(fontsize=6, loc="upper left")
        ax.set_xlabel("seconds into the run", fontsize=7)
        ax.set_ylabel(unit, fontsize=7)
        ax.grid(alpha=0.3)
    out = out_dir / f"{uid}.png"
    fig.savefig(out, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return out, drawn


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data_dir, out_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_data(data_dir)
    for f in sorted((HERE / "dashboards").glob("*.json")):
        out, drawn = render(f, data, out_dir)
        if drawn == 0:
            sys.exit(f"{out}: nothing drawn")
        print(f"{out}: {drawn} series")


if __name__ == "__main__":
    main()
