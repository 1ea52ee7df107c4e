#!/usr/bin/env python3
"""Plots cascade's cost against latency across write-coalescing windows.

Input: the rows.jsonl that scripts/bench-compare.sh writes, with runs of
`cascade@W` (and optionally `cascade`, window 0) and `nginx` at the same
player counts. Output: an SVG with, per player count, cascade's core-seconds
per Gbit as a ratio to nginx-rtmp's (y) against its p99 latency (x), each
point labelled with its window; plus the goal points of issue #4 and the
SRS merged-write curve quoted there, for reference. No dependencies.
"""

import json
import sys

GOALS = [(50, 0.5), (110, 0.37), (360, 0.28)]
SRS_QUOTED = [(22, 1.21), (50, 0.64), (107, 0.46), (361, 0.36)]
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def window_of(server):
    if server == "cascade":
        return 0
    if server.startswith("cascade@"):
        return int(server.split("@", 1)[1])
    return None


def main(rows_path, out_path):
    rows = [json.loads(line) for line in open(rows_path) if line.strip()]
    nginx = {r["players"]: r["core_s_per_gbit"] for r in rows if r["server"] == "nginx"}
    series = {}
    for r in rows:
        w = window_of(r["server"])
        base = nginx.get(r["players"])
        if w is None or not base or not r.get("core_s_per_gbit") or r.get("lat_p99") is None:
            continue
        series.setdefault(r["players"], []).append((w, r["lat_p99"], r["core_s_per_gbit"] / base))
    width, height, pad = 720, 460, 60
    xmax = max([400.0] + [p for pts in series.values() for _, p, _ in pts]) * 1.05
    ymax = max([1.3] + [c for pts in series.values() for _, _, c in pts]) * 1.05

    def sx(x):
        return pad + x / xmax * (width - 2 * pad)

    def sy(y):
        return height - pad - y / ymax * (height - 2 * pad)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">cascade: CPU per delivered Gbit vs nginx-rtmp, by write-coalescing window</text>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
        f'<text x="{width / 2}" y="{height - 20}" text-anchor="middle">harness p99 latency (ms)</text>',
        f'<text x="16" y="{height / 2}" transform="rotate(-90 16 {height / 2})" text-anchor="middle">core-s per Gbit / nginx-rtmp</text>',
    ]
    for i in range(0, 5):
        x = xmax * i / 4
        y = ymax * i / 4
        out.append(f'<text x="{sx(x)}" y="{height - pad + 16}" text-anchor="middle">{x:.0f}</text>')
        out.append(f'<text x="{pad - 6}" y="{sy(y) + 4}" text-anchor="end">{y:.2f}</text>')
        out.append(f'<line x1="{pad}" y1="{sy(y)}" x2="{width - pad}" y2="{sy(y)}" stroke="#eee"/>')
    srs = " ".join(f"{sx(x)},{sy(y)}" for x, y in SRS_QUOTED)
    out.append(f'<polyline points="{srs}" fill="none" stroke="#999" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{sx(SRS_QUOTED[-1][0]) + 4}" y="{sy(SRS_QUOTED[-1][1]) - 6}" fill="#777">SRS (quoted in #4)</text>')
    for x, y in GOALS:
        out.append(f'<rect x="{sx(x) - 4}" y="{sy(y) - 4}" width="8" height="8" fill="none" stroke="#ff7f0e"/>')
    out.append(f'<text x="{sx(GOALS[0][0]) + 8}" y="{sy(GOALS[0][1]) + 4}" fill="#ff7f0e">goal</text>')
    for n, (players, pts) in enumerate(sorted(series.items())):
        color = COLORS[n % len(COLORS)]
        pts.sort()
        line = " ".join(f"{sx(p)},{sy(c)}" for _, p, c in pts)
        out.append(f'<polyline points="{line}" fill="none" stroke="{color}"/>')
        for w, p, c in pts:
            out.append(f'<circle cx="{sx(p)}" cy="{sy(c)}" r="3" fill="{color}"/>')
            out.append(f'<text x="{sx(p) + 5}" y="{sy(c) - 5}" fill="{color}">{w} ms</text>')
        out.append(f'<text x="{width - pad - 120}" y="{pad + 16 * n}" fill="{color}">{players} players</text>')
    out.append("</svg>")
    with open(out_path, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"plot: {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
