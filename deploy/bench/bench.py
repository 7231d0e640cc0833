#!/usr/bin/env python3
"""Throughput and latency of the bridge against the HTTP ceiling of this machine.

One command (not run by CI):

    deploy/bench/bench.py                     # about 12 minutes with the defaults
    deploy/bench/bench.py --soak 300          # adds a 5-minute RSS soak in kafka mode

It builds the release binary and the baseline (examples/http_baseline.rs: the same HTTP stack
reading the body and answering 200, no Kafka), starts the local Apache Kafka broker
(deploy/kafka/local-kafka.sh) unless KAFKA_BOOTSTRAP_SERVERS names one, and drives each server
with wrk (deploy/bench/fixtures.lua: the TeleCMI fixtures in turn, each request with its own
conversation id, keep-alive connections). For every round, concurrency and mode (baseline,
kafka, spool, embedded) a fresh server process is started, warmed up, measured, and stopped;
the report gives the median over rounds of events/s, latency percentiles, the server's peak
RSS and its CPU seconds per 1,000 events, and each mode's ratio to the baseline of the same
concurrency. Two extra runs: a new connection per request (kafka mode and baseline), and
kafka mode at half of its best throughput (the latency a non-saturated bridge gives).

Mode `goref` is the Go reference peer (../shared/peers/go-franz: net/http and one franz-go
producer, acks=all, idempotent, the same topics and keys; a smaller envelope), built on demand
with its build.sh (Go and the Go module proxy) into target/peers/go-franz and run with the
bridge's producer settings (linger 5 ms, lz4), so that every run shows the bridge, the
reference and the bare endpoint side by side. For the modes that write to Kafka the report also
gives the broker's CPU and the bytes the broker stored per event (the growth of the telecmi.*
partitions' log segments: records as compressed and batched on disk).

Output: a markdown report on stdout and in OUT/report.md, everything in OUT/results.json.
Needs wrk (Debian: apt-get install wrk; installed automatically when running as root).
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "deploy" / "bench"
FIXTURES = REPO / "tests" / "fixtures" / "telecmi"
BRIDGE = REPO / "target" / "release" / "telecmi-bridge"
BASELINE = REPO / "target" / "release" / "examples" / "http_baseline"
LISTEN = "127.0.0.1:18080"
ADMIN = "127.0.0.1:19090"
GOREF = REPO / "target" / "peers" / "go-franz"
GOREF_BUILD = REPO.parent / "shared" / "peers" / "go-franz" / "build.sh"
MODES = ("baseline", "kafka", "spool", "embedded", "goref")
# The modes whose events a broker on this machine stores.
BROKER_MODES = ("kafka", "spool", "goref")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def ensure_wrk():
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("bench: wrk not found; install it (Debian: apt-get install wrk)")
    log("installing wrk from Debian's packages")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)


def build(modes):
    log("building the release binary and the baseline")
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--bin", "telecmi-bridge",
         "--example", "http_baseline"],
        cwd=REPO, check=True)
    if "goref" in modes:
        if not GOREF_BUILD.is_file():
            sys.exit(f"bench: {GOREF_BUILD} not found (the reference peer lives in ../shared); "
                     "leave goref out of --modes")
        log("building the Go reference peer")
        subprocess.run(["bash", str(GOREF_BUILD)], cwd=REPO, check=True,
                       env=dict(os.environ, OUT=str(GOREF)), stdout=subprocess.DEVNULL)


def local_kafka(action):
    subprocess.run(["bash", str(REPO / "deploy/kafka/local-kafka.sh"), action], check=True)


def write_templates(work):
    """Each fixture as compact JSON, its conversation ids replaced by wrk's placeholder."""
    lines = []
    for path in sorted(FIXTURES.glob("*.json")):
        payload = json.loads(path.read_text())
        for key in ("conversation_uuid", "cmiuuid"):
            if key in payload:
                payload[key] = "@ID@"
        lines.append(json.dumps(payload, separators=(",", ":")))
    target = work / "templates.txt"
    target.write_text("\n".join(lines) + "\n")
    return target, len(lines)


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of the whole line; 12 and 13 after the name.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def broker_pid():
    """The local broker's pid (local-kafka.sh's pid file), to count its CPU; None if the broker
    is elsewhere."""
    data_dir = Path(os.environ.get("KAFKA_DATA_DIR", "/tmp/telecmi-bridge-kafka"))
    try:
        pid = int((data_dir / "broker.pid").read_text().strip())
        cpu_seconds(pid)
        return pid
    except (OSError, ValueError):
        return None


def stored_bytes():
    """Bytes in the local broker's telecmi.* partition logs; None if the broker is elsewhere."""
    logs = Path(os.environ.get("KAFKA_DATA_DIR", "/tmp/telecmi-bridge-kafka")) / "logs"
    if not logs.is_dir():
        return None
    return sum(segment.stat().st_size for segment in logs.glob("telecmi.*/*.log"))


def memory_kb(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def wait_until(condition, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not within {timeout} s")


def answers(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def accepts(address):
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


class Server:
    """One server process for one measured run."""

    def __init__(self, mode, bootstrap, work, log_level, binary=BRIDGE, settings=None):
        self.mode = mode
        self.log_path = work / f"server-{mode}.log"
        if mode == "baseline":
            command, env = [str(BASELINE), LISTEN], dict(os.environ)
        elif mode == "goref":
            command = [str(GOREF)]
            env = dict(os.environ, PEER_LISTEN=LISTEN, KAFKA_BOOTSTRAP=bootstrap,
                       KAFKA_LINGER_MS="5", KAFKA_COMPRESSION="lz4")
        else:
            spool = work / "spool"
            shutil.rmtree(spool, ignore_errors=True)
            command = [str(binary)]
            env = dict(os.environ)
            env.pop("TELECMI_BRIDGE_PROFILE", None)
            env.update({
                "TELECMI_BRIDGE_SERVER__LISTEN": LISTEN,
                "TELECMI_BRIDGE_SERVER__ADMIN_LISTEN": ADMIN,
                "TELECMI_BRIDGE_KAFKA__BOOTSTRAP_SERVERS":
                    "embedded" if mode == "embedded" else bootstrap,
                "TELECMI_BRIDGE_DELIVERY__MODE": "spool" if mode == "spool" else "kafka",
                "TELECMI_BRIDGE_SPOOL__PATH": str(spool / "spool.redb"),
                "TELECMI_BRIDGE_LOGGING__LEVEL": log_level,
            })
            env.update(settings or {})
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT)
        if mode in ("baseline", "goref"):
            wait_until(lambda: accepts(LISTEN), f"{mode} listening")
        else:
            wait_until(lambda: answers(f"http://{ADMIN}/readyz"), f"bridge ready ({mode})")

    @property
    def pid(self):
        return self.process.pid

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"{self.mode} did not stop within 40 s of SIGTERM")


def wrk(connections, seconds, work, templates, threads, close=False, delay_ms=0,
        background=False):
    result = work / "wrk-result.json"
    result.unlink(missing_ok=True)
    env = dict(os.environ, BENCH_TEMPLATES=str(templates), BENCH_RESULT=str(result),
               BENCH_CLOSE="1" if close else "0", BENCH_DELAY_MS=str(delay_ms))
    command = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s",
               "--timeout", "10s", "-s", str(BENCH / "fixtures.lua"),
               f"http://{LISTEN}/webhooks/telecmi"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    if background:
        return process, result
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = 0
    summary = json.loads(result.read_text())
    summary["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return summary


def measure(mode, connections, args, bootstrap, work, templates, close=False, delay_ms=0,
            binary=BRIDGE, settings=None):
    server = Server(mode, bootstrap, work, args.log_level, binary, settings)
    try:
        wrk(connections, args.warmup, work, templates, args.threads, close, delay_ms)
        broker = broker_pid() if mode in BROKER_MODES else None
        cpu_before = cpu_seconds(server.pid)
        broker_before = cpu_seconds(broker) if broker else None
        stored_before = stored_bytes() if broker else None
        summary = wrk(connections, args.duration, work, templates, args.threads, close,
                      delay_ms)
        cpu = cpu_seconds(server.pid) - cpu_before
        broker_cpu = cpu_seconds(broker) - broker_before if broker else None
        if mode == "spool":
            # What the spool took must reach the broker before its growth is read.
            wait_until(lambda: answers(f"http://{ADMIN}/readyz"), "spool ready", timeout=60)
            time.sleep(2)
        stored = stored_bytes() - stored_before if stored_before is not None else None
        peak_rss_kb = memory_kb(server.pid, "VmHWM")
    finally:
        server.stop()
    errors = summary["errors"]
    events = summary["requests"] - errors["status"]
    seconds = summary["duration_us"] / 1e6
    run = {
        "mode": mode,
        "connections": connections,
        "new_connection_per_request": close,
        "delay_ms": delay_ms,
        "events_per_second": events / seconds,
        "requests": summary["requests"],
        "errors": errors,
        "latency_ms": {k: v / 1000 for k, v in summary["latency_us"].items()},
        "peak_rss_mb": peak_rss_kb / 1024,
        "cpu_seconds_per_1k_events": cpu / events * 1000 if events else None,
        "broker_cpu_seconds_per_1k_events":
            broker_cpu / events * 1000 if events and broker_cpu is not None else None,
        "stored_bytes_per_event": stored / summary["requests"] if stored and events else None,
        "load_generator_cpu_seconds_per_1k_events":
            summary["cpu_seconds"] / events * 1000 if events else None,
    }
    failed = sum(errors.values())
    log(f"{mode:9} c={connections:<3}{' new-conn' if close else ''}"
        f"{f' delay={delay_ms}ms' if delay_ms else ''}: {run['events_per_second']:8.0f} ev/s, "
        f"p99 {run['latency_ms']['p99']:.1f} ms, RSS {run['peak_rss_mb']:.1f} MB"
        f"{f', {failed} errors' if failed else ''}")
    return run


def soak(args, bootstrap, work, templates):
    """kafka mode at full load for args.soak seconds; RSS sampled every second."""
    server = Server("kafka", bootstrap, work, args.log_level)
    samples = []
    try:
        process, result = wrk(64, args.soak, work, templates, args.threads, background=True)
        started = time.monotonic()
        while process.poll() is None:
            samples.append((time.monotonic() - started, memory_kb(server.pid, "VmRSS") / 1024))
            time.sleep(1)
        summary = json.loads(result.read_text())
        peak = memory_kb(server.pid, "VmHWM") / 1024
    finally:
        server.stop()
    after_first_minute = next(rss for at, rss in samples if at >= 60)
    at_end = samples[-1][1]
    return {
        "seconds": args.soak,
        "connections": 64,
        "events_per_second": (summary["requests"] - summary["errors"]["status"])
        / (summary["duration_us"] / 1e6),
        "errors": summary["errors"],
        "rss_mb_after_first_minute": after_first_minute,
        "rss_mb_at_end": at_end,
        "end_over_first_minute": at_end / after_first_minute,
        "peak_rss_mb": peak,
        "rss_mb_samples": [round(rss, 1) for _, rss in samples],
    }


def median_run(runs):
    """The medians over rounds of every figure of one (mode, connections, variant)."""
    def med(get):
        values = [get(run) for run in runs if get(run) is not None]
        return statistics.median(values) if values else None
    first = runs[0]
    return {
        "mode": first["mode"],
        "connections": first["connections"],
        "new_connection_per_request": first["new_connection_per_request"],
        "delay_ms": first["delay_ms"],
        "rounds": len(runs),
        "events_per_second": med(lambda r: r["events_per_second"]),
        "latency_ms": {k: med(lambda r, k=k: r["latency_ms"][k])
                       for k in ("p50", "p99", "p999")},
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "cpu_seconds_per_1k_events": med(lambda r: r["cpu_seconds_per_1k_events"]),
        "broker_cpu_seconds_per_1k_events":
            med(lambda r: r.get("broker_cpu_seconds_per_1k_events")),
        "stored_bytes_per_event": med(lambda r: r.get("stored_bytes_per_event")),
        "load_generator_cpu_seconds_per_1k_events":
            med(lambda r: r.get("load_generator_cpu_seconds_per_1k_events")),
        "errors": sum(sum(r["errors"].values()) for r in runs),
    }


def machine():
    model = next((line.split(":", 1)[1].strip()
                  for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    memory_kib = next(int(line.split()[1]) for line in
                      Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(memory_kib / 2**20),
            "kernel": platform.release(), "commit": commit}


def cpu_split(row):
    """CPU seconds per 1,000 events of the server, the broker and the load generator: on a
    shared machine their sum is what bounds the rate."""
    figures = [row["cpu_seconds_per_1k_events"], row.get("broker_cpu_seconds_per_1k_events"),
               row.get("load_generator_cpu_seconds_per_1k_events")]
    return ", ".join("–" if figure is None else f"{figure:.3f}" for figure in figures)


def stored_per_event(row):
    figure = row.get("stored_bytes_per_event")
    return "–" if figure is None else f"{figure:,.0f}"


def report(results):
    lines = []
    host = results["machine"]
    lines.append(f"{host['cpus']} CPUs ({host['cpu_model']}), {host['memory_gib']} GiB, "
                 f"Linux {host['kernel']}, commit {host['commit']}; broker, load generator and "
                 f"server share the machine. {results['rounds']} rounds of "
                 f"{results['duration_seconds']} s per row (medians; peak RSS: the highest).")
    lines.append("")
    lines.append("| mode | connections | events/s | vs baseline | p50 ms | p99 ms | p99.9 ms "
                 "| peak RSS MB | CPU s / 1k events: server, broker, wrk "
                 "| broker bytes / event | errors |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    baseline = {(row["connections"], row["new_connection_per_request"]): row["events_per_second"]
                for row in results["rows"] if row["mode"] == "baseline" and not row["delay_ms"]}
    for row in results["rows"]:
        label = row["mode"]
        if row["new_connection_per_request"]:
            label += ", new connection per request"
        if row["delay_ms"]:
            label += f", paced ({row['delay_ms']} ms between requests per connection)"
        reference = baseline.get((row["connections"], row["new_connection_per_request"]))
        ratio = (f"{row['events_per_second'] / reference:.2f}"
                 if reference and not row["delay_ms"] else "")
        lines.append(
            f"| {label} | {row['connections']} | {row['events_per_second']:,.0f} | {ratio} | "
            f"{row['latency_ms']['p50']:.2f} | {row['latency_ms']['p99']:.2f} | "
            f"{row['latency_ms']['p999']:.2f} | {row['peak_rss_mb']:.1f} | "
            f"{cpu_split(row)} | {stored_per_event(row)} | {row['errors']} |")
    lines.append("")
    for line in results["summary_lines"]:
        lines.append(f"- {line}")
    return "\n".join(lines) + "\n"


def summarise(results):
    rows = [row for row in results["rows"]
            if not row["new_connection_per_request"] and not row["delay_ms"]]

    def best(mode):
        mine = [row for row in rows if row["mode"] == mode]
        return max(mine, key=lambda row: row["events_per_second"]) if mine else None

    lines, figures = [], {}
    best_rows = {mode: best(mode) for mode in MODES}
    for mode, row in best_rows.items():
        if row:
            figures[f"best_{mode}_events_per_second"] = row["events_per_second"]
    if best_rows["baseline"] and best_rows["kafka"]:
        ratio = best_rows["kafka"]["events_per_second"] / best_rows["baseline"]["events_per_second"]
        figures["kafka_over_baseline_at_best"] = ratio
        lines.append(f"kafka mode at its best concurrency ({best_rows['kafka']['connections']}): "
                     f"{ratio:.2f} of the baseline at its best "
                     f"({best_rows['baseline']['connections']}) (target ≥ 0.50)")
    if best_rows["kafka"] and best_rows["spool"]:
        ratio = best_rows["spool"]["events_per_second"] / best_rows["kafka"]["events_per_second"]
        figures["spool_over_kafka_at_best"] = ratio
        lines.append(f"spool mode at its best: {ratio:.2f} of kafka mode at its best "
                     f"(target ≥ 1.00: no slower)")
    for conns in sorted({row["connections"] for row in rows}):
        pair = {row["mode"]: row for row in rows if row["connections"] == conns}
        if "kafka" in pair and "goref" in pair:
            bridge, goref = pair["kafka"], pair["goref"]
            ratio = bridge["events_per_second"] / goref["events_per_second"]
            cpu = (bridge["cpu_seconds_per_1k_events"] / goref["cpu_seconds_per_1k_events"]
                   if bridge["cpu_seconds_per_1k_events"] and goref["cpu_seconds_per_1k_events"]
                   else None)
            broker = (bridge["broker_cpu_seconds_per_1k_events"]
                      / goref["broker_cpu_seconds_per_1k_events"]
                      if bridge.get("broker_cpu_seconds_per_1k_events")
                      and goref.get("broker_cpu_seconds_per_1k_events") else None)
            figures[f"kafka_over_goref_c{conns}"] = ratio
            lines.append(
                f"c={conns}: kafka mode {ratio:.2f}× the Go reference's events/s (target ≥ 1.3 "
                f"at 64 and 256); p99 {bridge['latency_ms']['p99']:.1f} against "
                f"{goref['latency_ms']['p99']:.1f} ms (target: not higher); CPU per event "
                + (f"{cpu:.2f}×" if cpu else "–") + " (target ≤ 0.75); broker CPU per event "
                + (f"{broker:.2f}×" if broker else "–") + " (target ≤ 1.5); broker bytes per "
                f"event {stored_per_event(bridge)} against {stored_per_event(goref)}")
    bridge_rows = [row for row in results["rows"] if row["mode"] not in ("baseline", "goref")]
    if bridge_rows:
        peak = max(row["peak_rss_mb"] for row in bridge_rows)
        figures["bridge_peak_rss_mb"] = peak
        lines.append(f"highest peak RSS of the bridge in any run: {peak:.1f} MB (target < 64)")
    paced = [row for row in results["rows"] if row["delay_ms"]]
    if paced:
        row = paced[0]
        figures["paced_kafka_p99_ms"] = row["latency_ms"]["p99"]
        lines.append(f"kafka mode offered about half its best rate: "
                     f"{row['events_per_second']:,.0f} events/s, p99 "
                     f"{row['latency_ms']['p99']:.2f} ms (target < 20)")
    if results.get("soak"):
        soak_result = results["soak"]
        lines.append(f"soak, kafka mode, {soak_result['seconds']} s at 64 connections "
                     f"({soak_result['events_per_second']:,.0f} events/s): RSS "
                     f"{soak_result['rss_mb_after_first_minute']:.1f} MB after the first minute, "
                     f"{soak_result['rss_mb_at_end']:.1f} MB at the end "
                     f"(×{soak_result['end_over_first_minute']:.2f}; target within 10%), "
                     f"peak {soak_result['peak_rss_mb']:.1f} MB")
    results["summary"] = figures
    results["summary_lines"] = lines


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", default="16,64,256",
                        help="concurrency sweep (default 16,64,256)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds before measuring")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--soak", type=int, default=0,
                        help="seconds of the kafka-mode RSS soak (0: none; the target is 300)")
    parser.add_argument("--log-level", default="info",
                        help="the bridge's logging.level (default: info, as shipped)")
    parser.add_argument("--out", default=str(REPO / "target" / "bench"))
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    connections = [int(c) for c in args.connections.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        sys.exit(f"bench: unknown modes {sorted(unknown)}; choose from {MODES}")

    ensure_wrk()
    if not args.no_build:
        build(modes)
    started_kafka = False
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap and (set(BROKER_MODES) & set(modes) or args.soak):
        local_kafka("start")
        started_kafka = True
        bootstrap = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="telecmi-bridge-bench."))
    try:
        templates, count = write_templates(work)
        log(f"{count} fixture templates; modes {modes}; connections {connections}; "
            f"{args.rounds} rounds of {args.duration} s")
        if "goref" in modes:
            # The reference creates no topics: a bridge start creates every one it writes to.
            Server("kafka", bootstrap, work, args.log_level).stop()
        runs = []
        for round_number in range(1, args.rounds + 1):
            log(f"round {round_number} of {args.rounds}")
            for conns in connections:
                for mode in modes:
                    runs.append(measure(mode, conns, args, bootstrap, work, templates))
            for mode in [m for m in ("baseline", "kafka") if m in modes]:
                runs.append(measure(mode, 64, args, bootstrap, work, templates, close=True))
        if "kafka" in modes:
            kafka_rows = [run for run in runs if run["mode"] == "kafka"
                          and not run["new_connection_per_request"]]
            best_conns = max(connections, key=lambda c: statistics.median(
                run["events_per_second"] for run in kafka_rows if run["connections"] == c))
            best_rate = statistics.median(run["events_per_second"] for run in kafka_rows
                                          if run["connections"] == best_conns)
            # Each connection waits so that all of them together offer half the best rate.
            delay_ms = max(1, round(64 * 1000 / (best_rate / 2)))
            for _ in range(args.rounds):
                runs.append(measure("kafka", 64, args, bootstrap, work, templates,
                                    delay_ms=delay_ms))
        groups = {}
        for run in runs:
            key = (run["mode"], run["connections"], run["new_connection_per_request"],
                   run["delay_ms"])
            groups.setdefault(key, []).append(run)
        order = {mode: index for index, mode in enumerate(MODES)}
        rows = [median_run(group) for _, group in sorted(
            groups.items(), key=lambda item: (item[0][2], item[0][3], item[0][1],
                                              order[item[0][0]]))]
        results = {
            "machine": machine(),
            "rounds": args.rounds,
            "duration_seconds": args.duration,
            "log_level": args.log_level,
            "rows": rows,
            "runs": runs,
        }
        if args.soak:
            log(f"soak: kafka mode, {args.soak} s")
            results["soak"] = soak(args, bootstrap, work, templates)
        summarise(results)
        text = report(results)
        (out / "report.md").write_text(text)
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(text)
        log(f"written {out / 'report.md'} and {out / 'results.json'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if started_kafka:
            local_kafka("stop")


if __name__ == "__main__":
    main()
