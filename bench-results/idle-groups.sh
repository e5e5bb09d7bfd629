#!/bin/bash
# Idle groups: each node's CPU on a 3-node loopback cluster hosting N idle data
# groups (every group on all three nodes), for BENCHMARKS.md, "Idle groups".
#
# Starts the cluster, then for each count in COUNTS creates groups (`keel shard
# group create --members 1,2,3`) up to that count, waits until every node's
# replica of every group knows a leader, lets it settle for SETTLE seconds, and
# reads each node's utime+stime from /proc/PID/stat over a WINDOW-second window.
# Prints one line per count: groups, then per node CPU % of one core, threads,
# RSS (MiB) and quiesced replicas (keel_quiesced_groups).
#
# usage: idle-groups.sh QUIESCE_AFTER_HEARTBEATS [extra keel serve args...]
#   (0 turns quiescence off; 3 is the default)
# env: B (keel binary, default ./target/release/keel), COUNTS (default
#      "0 10 100 1000"), SETTLE (s, default 10), WINDOW (s, default 20),
#      DIR (work directory, default /tmp/keel-idle-groups), PORT (first port,
#      default 17410), HOLD (s, default 0: keep the cluster up this long after
#      the last count, e.g. to profile a node; the node PIDs are in $DIR/pids).
set -euo pipefail
B=${B:-./target/release/keel}
COUNTS=${COUNTS:-"0 10 100 1000"}
SETTLE=${SETTLE:-10}
WINDOW=${WINDOW:-20}
DIR=${DIR:-/tmp/keel-idle-groups}
PORT=${PORT:-17410}
Q=$1; shift
HZ=$(getconf CLK_TCK)
rm -rf "$DIR" && mkdir -p "$DIR"
grpc() { echo "127.0.0.1:$((PORT + $1))"; }
http() { echo "127.0.0.1:$((PORT + 10 + $1))"; }
IC="1=$(grpc 1),2=$(grpc 2),3=$(grpc 3)"
EP="$(grpc 1),$(grpc 2),$(grpc 3)"
declare -A PID
for i in 1 2 3; do
  "$B" serve --id "$i" --data-dir "$DIR/n$i" --listen "$(grpc $i)" --http "$(http $i)" \
    --initial-cluster "$IC" --quiesce-after-heartbeats "$Q" "$@" > "$DIR/n$i.log" 2>&1 &
  PID[$i]=$!
done
# Only the processes this script started are stopped.
trap 'kill ${PID[1]} ${PID[2]} ${PID[3]} 2>/dev/null; wait' EXIT
for i in 1 2 3; do
  for _ in $(seq 300); do curl -sf "$(http $i)/healthz" > /dev/null && break; sleep 0.1; done
  curl -sf "$(http $i)/healthz" > /dev/null || { echo "node $i did not start" >&2; exit 1; }
done
for _ in $(seq 300); do "$B" shard map --endpoints "$EP" > /dev/null 2>&1 && break; sleep 0.1; done

cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# Replicas on node $1 that know a leader, and that are quiesced.
led() { curl -sf "$(http $1)/v1/status" | python3 -c \
  'import json,sys; g=json.load(sys.stdin)["groups"]; print(sum(1 for x in g if x["leader_id"]))'; }
quiesced() { curl -sf "$(http $1)/metrics" | awk '$1=="keel_quiesced_groups"{print $2}'; }

created=0
echo "# quiesce_after_heartbeats=$Q settle=${SETTLE}s window=${WINDOW}s extra: $*"
echo "# groups | per node: cpu% threads rss_mib quiesced"
for n in $COUNTS; do
  while [ "$created" -lt "$n" ]; do
    "$B" shard group create --members 1,2,3 --endpoints "$EP" --timeout-ms 30000 > /dev/null
    created=$((created + 1))
  done
  # Group 1 and the placement group, plus the created ones.
  want=$((n + 2))
  for i in 1 2 3; do
    for _ in $(seq 1200); do [ "$(led $i)" -ge "$want" ] && break; sleep 0.5; done
    [ "$(led $i)" -ge "$want" ] || { echo "node $i: not every group has a leader" >&2; exit 1; }
  done
  sleep "$SETTLE"
  declare -A before
  for i in 1 2 3; do before[$i]=$(cpu_ticks ${PID[$i]}); done
  sleep "$WINDOW"
  line="$n"
  for i in 1 2 3; do
    after=$(cpu_ticks ${PID[$i]})
    pct=$(awk -v a="$after" -v b="${before[$i]}" -v hz="$HZ" -v w="$WINDOW" \
      'BEGIN { printf "%.1f", (a - b) / hz / w * 100 }')
    threads=$(awk '/^Threads:/{print $2}' "/proc/${PID[$i]}/status")
    rss=$(awk '/^VmRSS:/{printf "%d", $2 / 1024}' "/proc/${PID[$i]}/status")
    line="$line | $pct $threads $rss $(quiesced $i)"
  done
  echo "$line"
done
if [ "${HOLD:-0}" -gt 0 ]; then
  echo "${PID[1]} ${PID[2]} ${PID[3]}" > "$DIR/pids"
  echo "# holding the cluster ${HOLD}s"
  sleep "$HOLD"
fi
