#!/usr/bin/env python3
"""Aggregate writes/s of one Raft group against three on the same 3 nodes
(BENCHMARKS.md, "One group against three").

For each layout and run: a fresh 3-node cluster (`keel serve`, one network
thread per node). With three groups, groups 2 and 3 are created on all three
nodes and slots are moved so that each group owns a contiguous third of them
(the mover copies each slot; they are empty, so a move is a handful of entries),
then `keel bench --endpoints ...` writes 256-byte values to 10,000 keys with
64 clients. Layouts alternate (1, 3, 1, 3, ...) so that the machine's drift
hits both alike.

usage: groups-run.py [KEEL[,KEEL2...]] [RUNS] [OUTDIR]

With several binaries, each run goes through every binary (and, for each,
both layouts; LAYOUTS=3 in the environment for three groups only), so that
builds are compared under the same drift. CLIENTS sets the bench's clients
(default 64); KEEL_ARGS adds arguments to every `keel serve` (split on spaces);
COLOCATE=N hands every group's leadership to node N before the bench
(`keel leader transfer --group G --to N`), the layout an operator would pick
for nodes that share one machine's disk.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

KEELS = [os.path.realpath(k) for k in
         (sys.argv[1] if len(sys.argv) > 1 else "target/release/keel").split(",")]
KEEL = KEELS[0]
LAYOUTS = [int(x) for x in os.environ.get("LAYOUTS", "1,3").split(",")]
CLIENTS = os.environ.get("CLIENTS", "64")
KEEL_ARGS = os.environ.get("KEEL_ARGS", "").split()
COLOCATE = os.environ.get("COLOCATE")
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
OUT = os.path.realpath(sys.argv[3] if len(sys.argv) > 3 else "bench-results")
DATA = "/tmp/gbench"
GRPC = {i: f"127.0.0.1:{17200 + i}" for i in (1, 2, 3)}
HTTP = {i: f"127.0.0.1:{17300 + i}" for i in (1, 2, 3)}
MAX_IN_FLIGHT = 200  # the map holds at most 256 moves


def http(node, method, path, body=None, timeout=10):
    req = urllib.request.Request(f"http://{HTTP[node]}{path}", method=method, data=body)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError as e:
        return 0, str(e)


def cluster_map(node=1):
    code, body = http(node, "GET", "/v1/cluster/map")
    if code != 200:
        return None
    m = body.get("map", body)
    return json.loads(m) if isinstance(m, str) else m


def change(command):
    body = json.dumps({"format": 1, "command": command}).encode()
    for _ in range(100):
        code, answer = http(1, "POST", "/v1/cluster/map", body)
        if code == 200:
            return answer
        time.sleep(0.1)
    raise SystemExit(f"map change {command} failed: {code} {answer}")


def start():
    shutil.rmtree(DATA, ignore_errors=True)
    os.makedirs(DATA)
    ic = ",".join(f"{i}={GRPC[i]}" for i in GRPC)
    procs = []
    for i in GRPC:
        log = open(f"{DATA}/n{i}.log", "w")
        procs.append(subprocess.Popen(
            [KEEL, "serve", "--id", str(i), "--data-dir", f"{DATA}/n{i}",
             "--listen", GRPC[i], "--http", HTTP[i], "--initial-cluster", ic,
             "--io-threads=1", *KEEL_ARGS], stdout=log, stderr=subprocess.STDOUT))
    deadline = time.time() + 60
    while time.time() < deadline:
        if cluster_map() is not None:
            return procs
        time.sleep(0.2)
    raise SystemExit("no cluster map")


def stop(procs):
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait()
    shutil.rmtree(DATA, ignore_errors=True)


def owners(m):
    """slot -> owner group, from the map's runs."""
    out = {}
    for run in m["slots"]:
        for s in range(run["first"], run["last"] + 1):
            out[s] = run["group"]
    return out


def third(slot):
    """Group of `slot` with three groups: contiguous thirds of the slots, so
    the map keeps three runs (an interleaved layout makes every map version,
    which placement writes whole, hundreds of KiB)."""
    return min(3, slot * 3 // 4096 + 1)


def spread_over_three():
    for _ in range(2):
        change({"op": "create_group", "members": [1, 2, 3], "target_replicas": 3})
    t0 = time.time()
    pending = [s for s in range(4096) if third(s) != 1]
    while pending or (cluster_map() or {}).get("moves"):
        m = cluster_map() or {}
        in_flight = len(m.get("moves") or [])
        room = max(0, MAX_IN_FLIGHT - in_flight)
        for s in pending[:room]:
            change({"op": "begin_slot_move", "slot": s, "to": third(s)})
        pending = pending[room:]
        time.sleep(0.2)
    m = cluster_map()
    o = owners(m)
    counts = {g: sum(1 for s in o if o[s] == g) for g in (1, 2, 3)}
    return time.time() - t0, counts


def metric_lines(prefix):
    """Every node's /metrics lines that start with `prefix` (a node that does
    not answer gives none)."""
    for node in GRPC:
        try:
            with urllib.request.urlopen(f"http://{HTTP[node]}/metrics", timeout=10) as r:
                page = r.read().decode()
        except OSError:
            continue
        yield from (line for line in page.splitlines() if line.startswith(prefix))


def put_requests():
    """Put requests every node has answered (any outcome), by outcome."""
    out = {}
    for line in metric_lines('keel_client_request_seconds_count{op="Put"'):
        outcome = line.split('outcome="')[1].split('"')[0]
        out[outcome] = out.get(outcome, 0) + float(line.rsplit(" ", 1)[1])
    return out


def metric_sum(name):
    """A metric's value summed over every node (and every label set)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metric_lines(name)
               if line.startswith(name + " ") or line.startswith(name + "{"))


def disk_work():
    """WAL fsyncs and state machine flushes every node has made, and the
    seconds each took, summed over the nodes."""
    return [metric_sum(f"keel_{m}_seconds_{k}")
            for m in ("wal_fsync", "state_flush") for k in ("count", "sum")]


def cpu_seconds(procs):
    """utime + stime of each node process, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    out = []
    for p in procs:
        fields = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
        out.append((int(fields[11]) + int(fields[12])) / tick)
    return out


def colocate(groups, node):
    """Hands each group's leadership to `node`."""
    for g in range(1, groups + 1):
        cmd = [KEEL, "leader", "transfer", "--group", str(g), "--to", str(node),
               "--endpoints", ",".join(GRPC.values())]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"transfer of group {g} to node {node} failed: {out.stderr.strip()}", flush=True)


def leaders():
    """group -> the node leading it, as `keel shard status` sees it."""
    cmd = [KEEL, "shard", "status", "--endpoints", ",".join(GRPC.values()),
           "--load-sample-ms", "0", "--json"]
    try:
        out = json.loads(subprocess.run(cmd, capture_output=True, text=True).stdout)
        return {g["group"]: g["leader"] for g in out["groups"]}
    except (ValueError, KeyError, TypeError):
        return {}


def bench(tag):
    path = f"{OUT}/groups-{tag}.json"
    cmd = [KEEL, "bench", "--endpoints", ",".join(GRPC.values()), "--clients", CLIENTS,
           "--duration", "10s", "--warmup", "3s", "--value-size", "256", "--json", path]
    text = subprocess.run(cmd, capture_output=True, text=True).stdout
    with open(f"{OUT}/groups-{tag}.txt", "w") as f:
        f.write(text)
    with open(path) as f:
        return json.load(f)


def writes_per_second(result):
    writes = result["results"][0]["writes"]
    return writes["ops_per_sec"], writes["p99_ms"]


def main():
    os.makedirs(OUT, exist_ok=True)
    load = open("/proc/loadavg").read().split()[:3]
    print(f"== {time.strftime('%FT%TZ', time.gmtime())} load {' '.join(load)}")
    global KEEL
    for run in range(1, RUNS + 1):
        for b, KEEL in enumerate(KEELS):
            label = f" (binary {b + 1})" if len(KEELS) > 1 else ""
            for groups in LAYOUTS:
                procs = start()
                try:
                    extra = ""
                    if groups == 3:
                        secs, counts = spread_over_three()
                        extra = f" (moved {4096 - counts[1]} slots in {secs:.1f} s: {counts})"
                    if COLOCATE:
                        colocate(groups, int(COLOCATE))
                    extra += f"; leaders {leaders()}"
                    puts0, cpu0, disk0 = put_requests(), cpu_seconds(procs), disk_work()
                    result = bench(f"{groups}-{run}" + (f"-b{b + 1}" if len(KEELS) > 1 else ""))
                    puts1, cpu1, disk1 = put_requests(), cpu_seconds(procs), disk_work()
                    # Requests the nodes answered per write the bench made
                    # (warm-up included, so slightly above the window's count),
                    # and each node's CPU over the warm-up and the window.
                    answered = {k: puts1.get(k, 0) - puts0.get(k, 0) for k in puts1}
                    cpu = [round(y - x, 1) for x, y in zip(cpu0, cpu1)]
                    extra += f"; Put requests by outcome {answered}; node CPU s {cpu}"
                    fs, fs_s, fl, fl_s = (y - x for x, y in zip(disk0, disk1))
                    extra += f"; fsyncs {fs:.0f} ({fs_s:.1f} s); state flushes {fl:.0f} ({fl_s:.1f} s)"
                finally:
                    stop(procs)
                try:
                    ops, p99 = writes_per_second(result)
                    print(f"run {run}{label}, {groups} group(s): {ops:,.0f} writes/s, p99 {p99} ms{extra}",
                          flush=True)
                except (KeyError, TypeError) as e:
                    print(f"run {run}{label}, {groups} group(s): see groups-{groups}-{run}.json ({e}){extra}",
                          flush=True)


if __name__ == "__main__":
    main()
