#!/bin/bash
# One 64-client write run against a 3-node cluster, keeping each node's /metrics
# (keel_state_flush_seconds). Used for the --state-flush-interval-ms figures in
# BENCHMARKS.md: flush-interval.sh OUT --state-flush-interval-ms=1000, then =10000, alternating.
# usage: flush-interval.sh OUTDIR [extra keel serve args...]
B=${B:-./target/release/keel}
OUT=$1; shift
rm -rf /tmp/tail && mkdir -p /tmp/tail $OUT
IC=1=127.0.0.1:17201,2=127.0.0.1:17202,3=127.0.0.1:17203
for i in 1 2 3; do
  $B serve --id $i --data-dir /tmp/tail/n$i --listen 127.0.0.1:1720$i --http 127.0.0.1:1730$i \
    --initial-cluster $IC --io-threads=1 "$@" > /tmp/tail/n$i.log 2>&1 &
done
# Wait (up to 30 s) until every node answers its health check.
for i in 1 2 3; do
  for _ in $(seq 300); do curl -sf 127.0.0.1:1730$i/healthz > /dev/null && break; sleep 0.1; done
  curl -sf 127.0.0.1:1730$i/healthz > /dev/null || { echo "node $i did not start" >&2; exit 1; }
done
GOMAXPROCS=1 $B bench --endpoints 127.0.0.1:17201,127.0.0.1:17202,127.0.0.1:17203 --clients ${CLIENTS:-64} \
  --duration ${DUR:-20s} --warmup 3s --value-size 256 --json $OUT/bench.json > $OUT/bench.txt 2>&1
for i in 1 2 3; do curl -s 127.0.0.1:1730$i/metrics > $OUT/metrics-$i.txt; done
pkill -f "data-dir /tmp/tail/n"; wait; rm -rf /tmp/tail
