#!/usr/bin/env python3
"""Variants of the bridge (other binaries, other settings) under the same load, run in turn
within every round so that a noisy machine's drift hits them all alike: the A/B behind each
optimisation's before/after figures in docs/performance.md.

    python3 deploy/bench/compare.py \\
        --variant before:bin=/tmp/telecmi-bridge-before --variant after \\
        --variant linger0:TELECMI_BRIDGE_KAFKA__LINGER_MS=0 --modes kafka --connections 64,256

A variant is NAME, then optional `:bin=PATH` (default: target/release/telecmi-bridge, which
this script does not build) and `:ENV=VALUE` settings. Uses bench.py's broker handling
(KAFKA_BOOTSTRAP_SERVERS, else the local broker is started and stopped), its load and its
measures; writes OUT/compare.md and OUT/compare.json.
"""

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import bench


def parse_variant(text):
    name, *parts = text.split(":")
    variant = {"name": name, "binary": str(bench.BRIDGE), "settings": {}}
    for part in parts:
        key, _, value = part.partition("=")
        if key == "bin":
            variant["binary"] = value
        else:
            variant["settings"][key] = value
    return variant


def variants_of(mode, variants):
    """The baseline server and the Go reference have no variants: each runs once per round."""
    return [parse_variant(mode)] if mode in ("baseline", "goref") else variants


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", required=True, type=parse_variant)
    parser.add_argument("--modes", default="kafka")
    parser.add_argument("--connections", default="64,256")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--delay-ms", type=int, default=0,
                        help="pause between requests per connection (paced load)")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--out", default=str(bench.REPO / "target" / "bench"))
    args = parser.parse_args()
    modes = [mode for mode in args.modes.split(",") if mode]
    connections = [int(c) for c in args.connections.split(",")]

    bench.ensure_wrk()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    started_kafka = not bootstrap and bool(set(bench.BROKER_MODES) & set(modes))
    if started_kafka:
        bench.local_kafka("start")
        bootstrap = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
    work = Path(tempfile.mkdtemp(prefix="telecmi-bridge-compare."))
    runs = []
    try:
        templates, _ = bench.write_templates(work)
        for round_number in range(1, args.rounds + 1):
            bench.log(f"round {round_number} of {args.rounds}")
            for conns in connections:
                for mode in modes:
                    for variant in variants_of(mode, args.variant):
                        bench.log(f"variant {variant['name']}")
                        run = bench.measure(mode, conns, args, bootstrap, work, templates,
                                            delay_ms=args.delay_ms, binary=variant["binary"],
                                            settings=variant["settings"])
                        run["variant"] = variant["name"]
                        runs.append(run)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if started_kafka:
            bench.local_kafka("stop")

    rows = []
    for conns in connections:
        for mode in modes:
            first = None
            for variant in variants_of(mode, args.variant):
                group = [run for run in runs if run["variant"] == variant["name"]
                         and run["mode"] == mode and run["connections"] == conns]
                row = bench.median_run(group)
                row["variant"] = variant["name"]
                first = first or row
                row["vs_first"] = row["events_per_second"] / first["events_per_second"]
                rows.append(row)
    host = bench.machine()
    lines = [f"{host['cpus']} CPUs ({host['cpu_model']}), commit {host['commit']}; "
             f"{args.rounds} rounds of {args.duration} s, variants interleaved; medians "
             f"(peak RSS: the highest)"
             + (f"; paced: {args.delay_ms} ms between requests per connection"
                if args.delay_ms else ""), "",
             "| variant | mode | connections | events/s | vs first | p50 ms | p99 ms "
             "| CPU s / 1k events: server, broker, wrk | broker bytes / event | peak RSS MB "
             "| errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['mode']} | {row['connections']} | "
            f"{row['events_per_second']:,.0f} | {row['vs_first']:.2f} | "
            f"{row['latency_ms']['p50']:.2f} | {row['latency_ms']['p99']:.2f} | "
            f"{bench.cpu_split(row)} | {bench.stored_per_event(row)} | "
            f"{row['peak_rss_mb']:.1f} | "
            f"{row['errors']} |")
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(text)
    (out / "compare.json").write_text(json.dumps(
        {"machine": host, "variants": args.variant, "rows": rows, "runs": runs}, indent=2)
        + "\n")
    print(text)


if __name__ == "__main__":
    main()
