#!/usr/bin/env bash
# `make bench-live`: packet loss of the live daemon at top speed. A veth pair inside a network
# namespace this script creates (no address, no route); `xferwatch run` with the example
# configuration (sensor.toml.example: sha256 of every file, session pcaps on) plus every event to
# a local Redis stream ([output.redis], a redis-server of its own in the namespace) captures on one end,
# `tcpreplay --topspeed` sends each workload out of the other:
#   transfers    real-transfer traffic: the bulk profile of xferwatch-gen (FTP/SMB/TFTP transfers)
#   many-flows   many short flows: the many-flows profile (>= 50,000 concurrent flows)
# generated once (deterministic, seeded) into bench-data/ and reused. For each workload a fresh
# daemon; when tcpreplay is done and the daemon's packet counter has settled, it prints packets
# sent, captured, lost by where (kernel, interface, queue, dead_worker), the loss, the rate
# tcpreplay reached and the daemon's CPU time per packet.
#
# Root only; otherwise it says "skipped" and exits 0. Everything is removed on exit.
# Environment: LIVE_TRANSFERS_BYTES (1GiB), LIVE_MANY_BYTES (1GiB), BENCH_DIR (bench-data),
# LIVE_DIR (target/bench-live), LIVE_EVIDENCE (1; 0: session pcaps off, to see what they cost),
# LIVE_REDIS (1; 0: no Redis output; without redis-server it is off, and said so),
# LIVE_WORKLOADS ("transfers many-flows": which to send, in order).
set -euo pipefail
cd "$(dirname "$0")/.."

T_BYTES=${LIVE_TRANSFERS_BYTES:-1GiB}
M_BYTES=${LIVE_MANY_BYTES:-1GiB}
DATA=${BENCH_DIR:-bench-data}
DIR=${LIVE_DIR:-target/bench-live}
BIN=target/release/xferwatch
GEN=target/release/xferwatch-gen
METRICS=127.0.0.1:9728

say() { echo "bench-live: $*"; }

. bench/rig.sh
rig_preflight bench-live

NS=xwlive-$$
DAEMON=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then kill -KILL "$DAEMON" 2>/dev/null || true; fi
  rig_down
  wait 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
rig_reap xwlive

mkdir -p "$DATA"
gen() { # gen NAME PROFILE BYTES
  local f="$DATA/live-$1.pcap" stamp="$DATA/live-$1.args"
  local args="--profile $2 --bytes $3 --seed 42"
  if [ ! -f "$f" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$args $(md5sum < "$GEN" | cut -c1-12)" ]; then
    say "generating $f ($args)"
    "$GEN" --quiet $args -o "$f"
    echo "$args $(md5sum < "$GEN" | cut -c1-12)" > "$stamp"
  fi
}
gen transfers bulk "$T_BYTES"
gen many-flows many-flows "$M_BYTES"

rm -rf "$DIR"
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
# The example configuration, as shipped, with the capture interface, the metrics listener and the
# output paths of this run.
sed -e "s|^eve_path = \"eve.json\"|eve_path = \"$DIR/eve.json\"|" \
    -e "s|^dir = \"evidence\"|dir = \"$( [ "${LIVE_EVIDENCE:-1}" = 0 ] || echo "$DIR/evidence")\"|" \
    -e "s|^interfaces = \[\]|interfaces = [\"xwcap\"]|" \
    -e "s|^listen = \"127.0.0.1:9727\"|listen = \"$METRICS\"|" sensor.toml.example > "$DIR/sensor.toml"
REDIS_PORT=6399
REDIS=${LIVE_REDIS:-1}
if [ "$REDIS" = 1 ] && ! command -v redis-server >/dev/null; then
  say "redis-server not found: no Redis output (\`make deps-test\` installs it)"
  REDIS=0
fi
if [ "$REDIS" = 1 ]; then
  # [output.redis] on, to the namespace's own redis-server, spooling under this run's directory.
  awk -v url="redis://127.0.0.1:$REDIS_PORT/0" -v spool="$DIR/spool" '
    /^\[/ { sect = $0 }
    sect == "[output.redis]" && /^enabled = / { $0 = "enabled = true" }
    sect == "[output.redis]" && /^url = / { $0 = "url = \"" url "\"" }
    sect == "[output.redis]" && /^spool_dir = / { $0 = "spool_dir = \"" spool "\"" }
    { print }' "$DIR/sensor.toml" > "$DIR/sensor.toml.new" && mv "$DIR/sensor.toml.new" "$DIR/sensor.toml"
  "$BIN" check-config "$DIR/sensor.toml" | grep -q "^url = \"redis://127.0.0.1:$REDIS_PORT/0\"" \
    || { say "could not turn on the Redis output in $DIR/sensor.toml"; exit 2; }
fi
"$BIN" check-config "$DIR/sensor.toml" | grep -q 'interfaces = \["xwcap"\]' \
  || { say "could not set the capture interface in $DIR/sensor.toml"; exit 2; }

rig_up
rcli() { ip netns exec "$NS" redis-cli -p "$REDIS_PORT" "$@"; }
if [ "$REDIS" = 1 ]; then
  ip netns exec "$NS" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --logfile "$DIR/redis.log" &
  for _ in $(seq 50); do rcli ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  rcli ping | grep -q PONG || { say "FAIL: redis-server did not start"; cat "$DIR/redis.log"; exit 1; }
fi

scrape() { ip netns exec "$NS" curl -sf --max-time 2 "http://$METRICS/metrics" 2>/dev/null || true; }
# metric NAME [LABEL-FILTER]: the sum of the samples of NAME whose labels contain the filter.
metric() { awk -v n="$1" -v f="${2:-}" '$1 ~ "^"n"({|$)" && index($1, f) { s += $2 } END { printf "%.0f\n", s }'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

printf '\n%-11s %10s %10s %8s %8s %8s %8s %9s %10s %9s %12s\n' workload sent captured kernel iface queue dead lost_% "sent_kpps" "sent_Gb/s" "cpu_us/pkt"
notes=""
for w in ${LIVE_WORKLOADS:-transfers many-flows}; do
  f="$DATA/live-$w.pcap"
  rm -rf "$DIR/evidence" "$DIR/eve.json" "$DIR/spool"
  [ "$REDIS" = 1 ] && rcli flushall >/dev/null
  ip netns exec "$NS" "$BIN" run -c "$DIR/sensor.toml" 2>"$DIR/daemon-$w.log" &
  DAEMON=$!
  for _ in $(seq 150); do
    scrape | grep -q '^xferwatch_capture_up' && break
    kill -0 "$DAEMON" 2>/dev/null || { say "FAIL: the daemon exited at start"; cat "$DIR/daemon-$w.log"; exit 1; }
    sleep 0.2
  done
  sleep 1
  c0=$(cpu_ticks "$DAEMON")
  out=$(ip netns exec "$NS" tcpreplay --topspeed -i xwsend "$f" 2>&1)
  sent=$(echo "$out" | awk '/Successful packets:/ { print $3 }')
  rate=$(echo "$out" | awk '/Rated:/ { for (i = 1; i <= NF; i++) if ($i ~ /pps/) print $(i-1) }' | head -1)
  mbps=$(echo "$out" | awk '/Rated:/ { for (i = 1; i <= NF; i++) if ($i ~ /Mbps/) print $(i-1) }' | head -1)
  # Wait until everything sent is accounted for (captured or dropped) or the count settles.
  last=-1
  for _ in $(seq 120); do
    body=$(scrape)
    got=$(echo "$body" | metric xferwatch_capture_packets_total)
    lost=$(echo "$body" | metric xferwatch_capture_drops_total)
    [ $((got + lost)) -ge "${sent:-0}" ] && break
    [ "$got" = "$last" ] && break
    last=$got
    sleep 0.5
  done
  sleep 1
  body=$(scrape)
  c1=$(cpu_ticks "$DAEMON")
  hwm=$(awk '/^VmHWM:/ { printf "%d", $2 / 1024 }' "/proc/$DAEMON/status")
  got=$(echo "$body" | metric xferwatch_capture_packets_total)
  k=$(echo "$body" | metric xferwatch_capture_drops_total 'where="kernel"')
  i=$(echo "$body" | metric xferwatch_capture_drops_total 'where="interface"')
  q=$(echo "$body" | metric xferwatch_capture_drops_total 'where="queue"')
  d=$(echo "$body" | metric xferwatch_capture_drops_total 'where="dead_worker"')
  kill -TERM "$DAEMON" 2>/dev/null || true
  wait "$DAEMON" 2>/dev/null || true
  DAEMON=""
  events=$(wc -l < "$DIR/eve.json")
  notes="$notes$w: peak RSS ${hwm} MiB; $events events in the EVE file"
  [ "$REDIS" = 1 ] && notes="$notes, $(rcli xlen xferwatch) in the Redis stream"
  notes="$notes
"
  hz=$(getconf CLK_TCK)
  awk -v w="$w" -v s="${sent:-0}" -v g="$got" -v k="$k" -v i="$i" -v q="$q" -v d="$d" \
      -v r="${rate:-0}" -v m="${mbps:-0}" -v c=$((c1 - c0)) -v hz="$hz" 'BEGIN {
    lost = k + i + q + d; miss = s - g - lost; if (miss < 0) miss = 0; lost += miss
    printf "%-11s %10d %10d %8d %8d %8d %8d %9.3f %10.1f %9.2f %12.2f\n", w, s, g, k, i, q, d,
      (s > 0 ? 100 * lost / s : 0), r / 1000, m / 1000, (s > 0 ? c / hz * 1e6 / s : 0) }'
done
echo
printf '%s' "$notes"
say "lost_% counts kernel, interface, queue and dead-worker drops and any packet sent but never seen."
