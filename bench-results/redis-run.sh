#!/usr/bin/env bash
# The Redis protocol benchmark of BENCHMARKS.md: a 3-node keel cluster with
# --redis, redis-benchmark against its leader (and a follower), keel bench
# against etcd, and one non-replicated redis-server as a ceiling.
set -u
K=$(realpath "${KEEL:-./target/release/keel}")
D=/tmp/rbench
OUT=$(realpath -m "${1:-redis-bench.txt}")
RB() { redis-benchmark -h 127.0.0.1 "$@" -q 2>&1 | tr '\r' '\n' | grep "requests per second"; }
: > "$OUT"
log() { echo "$*" | tee -a "$OUT"; }

start() {
  rm -rf $D; mkdir -p $D
  IC="1=127.0.0.1:17101,2=127.0.0.1:17102,3=127.0.0.1:17103"
  for i in 1 2 3; do
    $K serve --id $i --data-dir $D/n$i --listen 127.0.0.1:1710$i \
      --redis 127.0.0.1:1638$i --initial-cluster $IC --io-threads=1 > $D/n$i.log 2>&1 &
    echo $! >> $D/pids
  done
  for t in $(seq 1 100); do
    for i in 1 2 3; do
      if redis-cli -p 1638$i INFO replication 2>/dev/null | grep -q "role:master"; then LEADER=$i; return 0; fi
    done
    sleep 0.2
  done
  echo "no leader"; exit 1
}
stop() {
  for p in $(cat $D/pids); do kill $p 2>/dev/null; done
  for p in $(cat $D/pids); do while kill -0 $p 2>/dev/null; do sleep 0.1; done; done
  rm -rf $D
}

log "== $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg) commit: $(git rev-parse --short HEAD)"
start
F=$(( LEADER % 3 + 1 ))
log "keel leader: node $LEADER (port 1638$LEADER), follower used: node $F"
for run in 1 2; do
  log "-- keel leader, no pipelining, run $run"
  RB -p 1638$LEADER -t set,get -c 50 -n 200000 -d 256 | tee -a "$OUT"
  log "-- keel leader, -P 16, run $run"
  RB -p 1638$LEADER -t set,get -c 50 -n 200000 -d 256 -P 16 | tee -a "$OUT"
done
log "-- keel follower, no pipelining"
RB -p 1638$F -t set,get -c 50 -n 200000 -d 256 | tee -a "$OUT"
log "-- keel follower, -P 16"
RB -p 1638$F -t set,get -c 50 -n 200000 -d 256 -P 16 | tee -a "$OUT"
log "-- keel leader, INCR, no pipelining and -P 16"
RB -p 1638$LEADER -t incr -c 50 -n 200000 | tee -a "$OUT"
RB -p 1638$LEADER -t incr -c 50 -n 200000 -P 16 | tee -a "$OUT"
stop

log "-- redis-server (one process, no persistence)"
redis-server --port 16400 --save "" --appendonly no --daemonize no > /tmp/redis-server-bench.log 2>&1 &
RS=$!; sleep 0.5
RB -p 16400 -t set,get -c 50 -n 200000 -d 256 | tee -a "$OUT"
RB -p 16400 -t set,get -c 50 -n 200000 -d 256 -P 16 | tee -a "$OUT"
kill $RS; wait $RS 2>/dev/null
log "-- redis-server (one process, appendonly yes, appendfsync always)"
rm -rf /tmp/rs-aof; mkdir -p /tmp/rs-aof
redis-server --port 16400 --save "" --appendonly yes --appendfsync always --dir /tmp/rs-aof --daemonize no > /tmp/redis-server-bench.log 2>&1 &
RS=$!; sleep 0.5
RB -p 16400 -t set,get -c 50 -n 200000 -d 256 | tee -a "$OUT"
RB -p 16400 -t set,get -c 50 -n 200000 -d 256 -P 16 | tee -a "$OUT"
kill $RS; wait $RS 2>/dev/null; rm -rf /tmp/rs-aof

log "-- keel bench vs etcd, 64 clients"
cd /tmp && GOMAXPROCS=1 $K bench --cluster local --against etcd --sweep-clients 64 --duration 10s \
  --warmup 3s --value-size 256 --keel-arg=--io-threads=1 2>&1 | tee -a "$OUT"
log "== done $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
