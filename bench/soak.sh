#!/usr/bin/env bash
# `make soak`: the live daemon (`xferwatch run`) for SOAK_SECONDS on a veth pair inside a network
# namespace this script creates, fed without pause by tcpreplay (the bundled pcaps/*.pcap and two
# captures from xferwatch-gen, each looped at a bounded rate), with the EVE file rotated (rename +
# SIGHUP, as logrotate does) every SOAK_ROTATE seconds. Every SOAK_INTERVAL seconds it samples the
# daemon's resident memory (VmRSS) and open descriptors (/proc/PID/fd). At the end: a summary of the
# samples and the least-squares slope after the warm-up, in KiB/min and fds/min; it fails when the
# daemon died or exited non-zero, memory keeps growing beyond the tolerance, or descriptors leak.
#
# Root only (network namespace, packet capture); otherwise it says "skipped" and exits 0.
# The namespace (xwsoak-<pid>: lo, veth xwcap/xwsend, no address, no route, IPv6 off) and every
# process started here are removed on exit, also on Ctrl-C; namespaces left by a killed earlier run
# are reaped at start.
#
# What to expect (2 cores, default settings): VmRSS ~84 MiB after the warm-up, of which the heap is
# ~14 MiB and the rest mostly the 64 MiB capture ring; 11 descriptors whatever the rotations. The heap
# still settles for several minutes (allocator arenas): +300 KiB/min over a 300 s run, flat (+8
# KiB/min over the last half) in a 900 s run. For a sharp verdict use SOAK_SECONDS=900.
#
# Environment (defaults):
#   SOAK_SECONDS=300         how long traffic runs
#   SOAK_INTERVAL=5          seconds between samples
#   SOAK_WARMUP=60           seconds left out of the slopes (tables fill, timeouts start expiring)
#   SOAK_PPS=2000            packets per second of each of the three tcpreplay loops
#   SOAK_ROTATE=60           seconds between EVE rotations (0: never)
#   SOAK_RSS_SLOPE_MAX=512   KiB/min of resident memory growth tolerated after the warm-up
#   SOAK_FD_SLOPE_MAX=0.1    fds/min tolerated after the warm-up
#   SOAK_DIR=target/soak     working directory (config, EVE, samples, daemon log)
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TOTAL=${SOAK_SECONDS:-300}
INTERVAL=${SOAK_INTERVAL:-5}
WARMUP=${SOAK_WARMUP:-60}
PPS=${SOAK_PPS:-2000}
ROTATE=${SOAK_ROTATE:-60}
RSS_SLOPE_MAX=${SOAK_RSS_SLOPE_MAX:-512}
FD_SLOPE_MAX=${SOAK_FD_SLOPE_MAX:-0.1}
DIR=${SOAK_DIR:-target/soak}
SHARED=${SHARED:-../shared}
BIN=target/release/xferwatch
GEN=target/release/xferwatch-gen
METRICS=127.0.0.1:9727

say() { echo "soak: $*"; }

. bench/rig.sh
rig_preflight soak
[ "$SECONDS_TOTAL" -gt "$WARMUP" ] || { say "SOAK_SECONDS ($SECONDS_TOTAL) must exceed SOAK_WARMUP ($WARMUP)"; exit 2; }
rig_reap xwsoak

NS=xwsoak-$$
DAEMON=""
REPLAYS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${REPLAYS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then kill -KILL "$DAEMON" 2>/dev/null || true; fi
  rig_down
  wait 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rm -rf "$DIR"
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

# Generated traffic: a mix of every transfer kind among background flows, and many short flows.
say "generating traffic with xferwatch-gen"
"$GEN" --quiet --profile mixed --bytes 30MB --seed 7 -o "$DIR/gen-mixed.pcap"
"$GEN" --quiet --profile many-flows --bytes 30MB --seed 8 -o "$DIR/gen-many-flows.pcap"

# The bundled captures' thresholds, short timeouts so that the flow table reaches its steady state
# well within the warm-up, periodic stats, baselines saved to a state file.
cat pcaps/demo.toml - > "$DIR/sensor.toml" <<EOF

[detect.baseline]
state_file = "$DIR/baselines.json"

[timeouts]
tcp_new = "10s"
tcp_established = "30s"
tcp_closed = "5s"
udp_new = "10s"
udp_established = "30s"

[capture]
interfaces = ["xwcap"]
promisc = true
buffer_size = "64MiB"

[output]
eve_path = "$DIR/eve.json"
stats_interval = "10s"

[metrics]
enabled = true
listen = "$METRICS"
allow = ["127.0.0.0/8"]

[log]
format = "text"
level = "info"
EOF
"$BIN" check-config "$DIR/sensor.toml" >/dev/null

rig_up

ip netns exec "$NS" "$BIN" run -c "$DIR/sensor.toml" 2>"$DIR/daemon.log" &
DAEMON=$!
for _ in $(seq 100); do
  ip netns exec "$NS" curl -sf --max-time 1 "http://$METRICS/metrics" >/dev/null 2>&1 && break
  kill -0 "$DAEMON" 2>/dev/null || { say "FAIL: the daemon exited at start"; cat "$DIR/daemon.log"; exit 1; }
  sleep 0.2
done

replay() { # replay NAME FILES...: tcpreplay looped without end at PPS
  local name=$1
  shift
  ip netns exec "$NS" tcpreplay -q --loop=0 --pps="$PPS" -i xwsend "$@" >"$DIR/tcpreplay-$name.log" 2>&1 &
  REPLAYS+=($!)
}
replay bundled pcaps/*.pcap
replay mixed "$DIR/gen-mixed.pcap"
replay many-flows "$DIR/gen-many-flows.pcap"

metric() { # metric BODY NAME: sum of the series NAME
  awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%.0f", s }' <<<"$1"
}

say "daemon pid $DAEMON in $NS; 3 tcpreplay loops at $PPS pps each; $SECONDS_TOTAL s, a sample every $INTERVAL s (warm-up $WARMUP s)"
printf 't_s\trss_kib\tfds\tthreads\tpackets\tkernel_drops\tflows_active\trss_anon_kib\n' >"$DIR/samples.tsv"
start=$(date +%s)
last_rotate=$start
rotations=0
while :; do
  now=$(date +%s)
  t=$((now - start))
  if ! kill -0 "$DAEMON" 2>/dev/null; then
    say "FAIL: the daemon died after $t s"
    tail -n 30 "$DIR/daemon.log"
    exit 1
  fi
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$DAEMON/status")
  # The heap alone (the capture ring is a shared mapping, counted in VmRSS as it is touched).
  anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$DAEMON/status")
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$DAEMON/status")
  fds=$(find "/proc/$DAEMON/fd" -mindepth 1 -maxdepth 1 | wc -l)
  body=$(ip netns exec "$NS" curl -sf --max-time 2 "http://$METRICS/metrics" 2>/dev/null || true)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$rss" "$fds" "$threads" \
    "$(metric "$body" xferwatch_capture_packets_total)" \
    "$(awk '/^xferwatch_capture_drops_total/ && /where="kernel"/ { s += $NF } END { printf "%.0f", s }' <<<"$body")" \
    "$(metric "$body" xferwatch_flows_active)" "$anon" >>"$DIR/samples.tsv"
  [ "$t" -ge "$SECONDS_TOTAL" ] && break
  if [ "$ROTATE" -gt 0 ] && [ $((now - last_rotate)) -ge "$ROTATE" ]; then
    mv "$DIR/eve.json" "$DIR/eve.json.$rotations"
    kill -HUP "$DAEMON"
    rotations=$((rotations + 1))
    last_rotate=$now
  fi
  # In the background, so that a signal ends the wait at once (and the trap cleans up).
  sleep "$INTERVAL" &
  wait $!
done

for p in "${REPLAYS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
kill -TERM "$DAEMON"
status=0
wait "$DAEMON" || status=$?
DAEMON=""
fail=0
if [ "$status" != 0 ]; then
  say "FAIL: the daemon exited with status $status"
  tail -n 30 "$DIR/daemon.log"
  fail=1
fi

# The samples, then least squares over those after the warm-up: slope = cov(t, y) / var(t). The
# gate is on VmRSS and descriptors; the heap's slope and the slope of the last half are shown to
# tell a leak (steady) from a settling allocator (slowing down).
awk -F'\t' -v warm="$WARMUP" -v rss_max="$RSS_SLOPE_MAX" -v fd_max="$FD_SLOPE_MAX" '
  function slope(a, from, to,    i, k, st, sy, stt, sty, d) {
    for (i = from; i <= to; i++) { k++; st += T[i]; sy += a[i]; stt += T[i] * T[i]; sty += T[i] * a[i] }
    d = k * stt - st * st
    return d > 0 ? (k * sty - st * sy) / d : 0
  }
  NR == 1 { next }
  {
    n++
    if (n == 1 || $2 < rmin) rmin = $2; if ($2 > rmax) rmax = $2
    if (n == 1 || $3 < fmin) fmin = $3; if ($3 > fmax) fmax = $3
    pk = $5; kd = $6
    if ($1 >= warm) { m++; T[m] = $1 / 60; R[m] = $2; F[m] = $3; A[m] = $8; if ($2 > wmax) wmax = $2 }
  }
  END {
    printf "samples: %d (%d after the %d s warm-up)\n", n, m, warm
    printf "resident memory: min %.1f MiB, max %.1f MiB; after warm-up %.1f -> %.1f MiB (max %.1f), heap %.1f -> %.1f MiB\n", rmin / 1024, rmax / 1024, R[1] / 1024, R[m] / 1024, wmax / 1024, A[1] / 1024, A[m] / 1024
    printf "open descriptors: min %d, max %d; after warm-up %d -> %d\n", fmin, fmax, F[1], F[m]
    printf "packets captured: %d, kernel drops: %d\n", pk, kd
    if (m < 4) { print "FAIL: too few samples after the warm-up for a slope"; exit 1 }
    rs = slope(R, 1, m); fs = slope(F, 1, m)
    printf "slope after warm-up: %+.1f KiB/min resident (tolerance %s), %+.3f fds/min (tolerance %s)\n", rs, rss_max, fs, fd_max
    printf "  heap %+.1f KiB/min; last half: resident %+.1f KiB/min, heap %+.1f KiB/min\n", slope(A, 1, m), slope(R, int(m / 2), m), slope(A, int(m / 2), m)
    bad = 0
    if (rs > rss_max) { printf "FAIL: resident memory keeps growing (%+.1f KiB/min)\n", rs; bad = 1 }
    if (fs > fd_max && F[m] > F[1]) { printf "FAIL: descriptors leak (%+.3f fds/min, %d -> %d)\n", fs, F[1], F[m]; bad = 1 }
    exit bad
  }' "$DIR/samples.tsv" || fail=1

events=$(cat "$DIR"/eve.json* 2>/dev/null | wc -l)
alerts=$(cat "$DIR"/eve.json* 2>/dev/null | grep -c '"event_type":"alert"' || true)
say "EVE: $events events ($alerts alerts) in $((rotations + 1)) files, $rotations rotations (rename + SIGHUP)"
warnings=$(grep -c ' WARN \| ERROR ' "$DIR/daemon.log" || true)
say "daemon log: $(wc -l <"$DIR/daemon.log") lines, $warnings warnings/errors ($DIR/daemon.log)"
if [ -f "$SHARED/tools/eve_check.py" ] && python3 -c 'import jsonschema' 2>/dev/null; then
  for f in "$DIR"/eve.json*; do
    python3 "$SHARED/tools/eve_check.py" "$f" >/dev/null || { say "FAIL: $f does not validate"; fail=1; }
  done
fi
if [ "$fail" = 0 ]; then say "PASS ($DIR/samples.tsv)"; else say "FAIL ($DIR/samples.tsv)"; fi
exit "$fail"
