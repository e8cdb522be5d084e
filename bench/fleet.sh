#!/usr/bin/env bash
# `make bench-fleet`: what sharing detection state in Redis ([fleet]) costs a sensor, and what it
# asks of Redis. The two workloads of bench/run.sh (bulk, many-flows; generated once into
# bench-data/ and reused) are replayed with `xferwatch replay -q --force`, with one worker and
# with the default workers, in three modes:
#   no-fleet      the configuration bench/run.sh replays with (the defaults: sha256 of every file)
#   fleet         the same plus [fleet] redis = a redis-server this script starts
#   fleet+stream  the same plus [output.redis] enabled, mode "stream" (every EVE event is XADDed)
# Redis is emptied (FLUSHALL) before every run. Per row: the median wall seconds of REPEAT runs,
# the ratio to no-fleet, the replay's own counters (stats record: xfer.fleet_round_trips,
# xfer.fleet_ops), the commands Redis executed (INFO commandstats after minus before: EVALSHA,
# XADD, ...; INFO, FLUSHALL, DBSIZE and CONFIG, the script's own, are left out), those commands
# per second of wall time (cmd/s wall: a sensor replaying flat out) and per second of the
# capture's packet time (cmd/s pkt: a sensor on a live link carrying this traffic at its
# original rate), peak RSS of the replay, and Redis's used_memory and DBSIZE after the run.
# Nothing is built here: the Makefile target builds xferwatch and xferwatch-gen first.
# Environment: BENCH_BYTES (default 1GiB), REPEAT (3), BENCH_DIR (bench-data),
# SYNC_INTERVAL ([fleet] sync_interval, default "5s" as the sensor's), PROFILES ("bulk many-flows"),
# REDIS_SERVER (redis-server), REDIS_CLI (redis-cli).
set -euo pipefail
cd "$(dirname "$0")/.."
BYTES=${BENCH_BYTES:-1GiB}
REPEAT=${REPEAT:-3}
DIR=${BENCH_DIR:-bench-data}
SYNC=${SYNC_INTERVAL:-5s}
PROFILES=${PROFILES:-bulk many-flows}
CORES=$(nproc)
REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}
XW=target/release/xferwatch
GEN=target/release/xferwatch-gen
TIME=/usr/bin/time

for b in "$XW" "$GEN"; do
  [ -x "$b" ] || { echo "bench-fleet: $b is missing (make bench-fleet builds it)" >&2; exit 1; }
done
for b in "$REDIS_SERVER" "$REDIS_CLI" python3; do
  command -v "$b" >/dev/null || { echo "bench-fleet: $b is not installed (apt-get install redis-server redis-tools python3)" >&2; exit 1; }
done
[ -x "$TIME" ] || TIME=""  # no peak RSS without /usr/bin/time

mkdir -p "$DIR"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/xferwatch-bench-fleet.XXXXXX")
REDIS_PID=""
cleanup() {
  if [ -n "$REDIS_PID" ]; then
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A redis-server of its own on a free loopback port, persisting nothing.
start_redis() {
  local port
  for _ in 1 2 3 4 5; do
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --dir "$TMP" --save "" --appendonly no \
      --daemonize no --logfile "$TMP/redis.log" &
    REDIS_PID=$!
    for _ in $(seq 50); do
      if "$REDIS_CLI" -p "$port" ping 2>/dev/null | grep -q PONG; then
        PORT=$port
        return 0
      fi
      kill -0 "$REDIS_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
  done
  echo "bench-fleet: could not start $REDIS_SERVER (see its log above)" >&2
  cat "$TMP/redis.log" >&2 2>/dev/null || true
  exit 1
}
PORT=""
start_redis
rcli() { "$REDIS_CLI" -p "$PORT" "$@"; }
URL="redis://127.0.0.1:$PORT/0"

# Configurations: the defaults (as bench/run.sh's main rows), then the fleet on top.
: > "$TMP/no-fleet.toml"
cat > "$TMP/fleet.toml" <<EOF
[sensor]
name = "bench"

[fleet]
redis = "$URL"
key_prefix = "xwbench"
sync_interval = "$SYNC"
EOF
{
  cat "$TMP/fleet.toml"
  printf '\n[output.redis]\nenabled = true\nmode = "stream"\nkey = "xwbench:events"\nspool_dir = "%s/spool"\n' "$TMP"
} > "$TMP/fleet+stream.toml"

gen() { # gen PROFILE (as bench/run.sh: reused while the arguments and the generator are the same)
  local f="$DIR/$1.pcap" stamp="$DIR/$1.args"
  local args="--profile $1 --bytes $BYTES --seed 42"
  if [ ! -f "$f" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$args $(md5sum < "$GEN" | cut -c1-12)" ]; then
    echo "generating $f ($args)" >&2
    # shellcheck disable=SC2086
    $GEN $args -o "$f" --expect "$DIR/$1.expect.json" >&2
    echo "$args $(md5sum < "$GEN" | cut -c1-12)" > "$stamp"
  fi
}

# Packets and packet-time seconds (last timestamp minus first) of a classic pcap -> "pkts secs".
pcap_span() {
  python3 - "$1" <<'EOF'
import struct, sys
with open(sys.argv[1], "rb") as f:
    h = f.read(24)
    magic = h[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        sys.exit("not a classic pcap")
    div = 1e9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e6
    n, first, last = 0, None, None
    while True:
        r = f.read(16)
        if len(r) < 16:
            break
        s, frac, incl, _ = struct.unpack(e + "IIII", r)
        t = s + frac / div
        if first is None:
            first = t
        last = t
        n += 1
        f.seek(incl, 1)
print(n, "%.3f" % ((last or 0) - (first or 0)))
EOF
}

# Redis command counts (INFO commandstats) -> "name calls usec" lines.
cmdstats() {
  rcli info commandstats | tr -d '\r' \
    | sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),usec=\([0-9]*\),.*/\1 \2 \3/p'
}

# Commands the scripts (lua/host.lua) run inside an EVALSHA; commandstats counts them too. HSET is
# also the heartbeat's (two per replay: start and end).
IN_SCRIPT='^(hincrby|hgetall|hdel|hget|hset|pexpire)$'

# One replay: prints "wall rss round_trips ops sent evalsha xadd other in_script redis_usec
# used_memory dbsize", and leaves the commands it caused, by name, in $TMP/bynames.
one_run() { # one_run MODE PCAP WORKERS...
  local mode=$1 pcap=$2; shift 2
  local eve="$TMP/eve.json" tf="$TMP/time.out"
  rm -rf "$TMP/spool"
  if [ "$mode" != no-fleet ]; then
    rcli flushall >/dev/null
  fi
  cmdstats > "$TMP/before"
  local t0 t1 wall rss=0
  t0=$(date +%s.%N)
  if [ -n "$TIME" ]; then
    $TIME -f "%e %M" -o "$tf" "$XW" replay -q --force -c "$TMP/$mode.toml" "$@" --eve "$eve" "$pcap" \
      || { echo "bench-fleet: replay failed ($mode $pcap $*)" >&2; exit 1; }
    rss=$(tail -1 "$tf" | cut -d' ' -f2)
  else
    "$XW" replay -q --force -c "$TMP/$mode.toml" "$@" --eve "$eve" "$pcap" \
      || { echo "bench-fleet: replay failed ($mode $pcap $*)" >&2; exit 1; }
  fi
  t1=$(date +%s.%N)
  wall=$(echo "$t1 - $t0" | bc -l)
  cmdstats > "$TMP/after"
  local st rt ops
  st=$(grep '"event_type":"stats"' "$eve" | tail -1)
  rt=$(grep -o '"fleet_round_trips":[0-9]*' <<<"$st" | cut -d: -f2 || true)
  ops=$(grep -o '"fleet_ops":[0-9]*' <<<"$st" | cut -d: -f2 || true)
  # The difference, without this script's own commands.
  awk 'NR == FNR { c[$1] = $2; u[$1] = $3; next }
    $1 ~ /^(info|flushall|dbsize|config)/ { next }
    $2 - c[$1] > 0 { print $1, $2 - c[$1], $3 - u[$1] }' "$TMP/before" "$TMP/after" > "$TMP/bynames"
  local counts mem keys
  counts=$(awk -v in_script="$IN_SCRIPT" '
    $1 ~ in_script { is += $2; next }
    { sent += $2; us += $3
      if ($1 == "evalsha" || $1 == "eval") ev += $2
      else if ($1 == "xadd") xa += $2
      else ot += $2 }
    END { printf "%d %d %d %d %d %d", sent, ev, xa, ot, is, us }' "$TMP/bynames")
  mem=$(rcli info memory | tr -d '\r' | sed -n 's/^used_memory:\([0-9]*\)/\1/p')
  keys=$(rcli dbsize | tr -d '\r')
  echo "$wall $rss ${rt:-0} ${ops:-0} $counts $mem $keys"
}

median() { sort -g | sed -n "$(( (REPEAT + 1) / 2 ))p"; }

printf '\nxferwatch bench-fleet: %s cores, %s, repeat %s (medians), redis %s, sync_interval %s\n' \
  "$CORES" "$(uname -m)" "$REPEAT" "$("$REDIS_SERVER" --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')" "$SYNC"
cat <<'EOF'
trips, ops: the replay's stats record (xfer.fleet_round_trips, xfer.fleet_ops).
sent: commands the sensor sent that Redis executed (INFO commandstats): evalsha (one per host
  per round trip), xadd (one per EVE event), and start-up PINGs; in_lua: the commands those
  scripts ran inside Redis (HINCRBY, HGETALL, ...; plus the two heartbeat HSETs).
cmd/s_wal: sent / the replay's wall seconds (a sensor replaying flat out).
cmd/s_pkt: sent / the capture's packet-time seconds (a sensor on a live link at this rate).
redis_ms: CPU time Redis spent on the sent commands (commandstats usec, scripts included).
EOF
for profile in $PROFILES; do
  gen "$profile"
  f="$DIR/$profile.pcap"
  cat "$f" > /dev/null  # warm the page cache
  read -r pkts span < <(pcap_span "$f")
  printf '\n%s: %s (%s packets, %.0f MB, %s s of packet time)\n' "$profile" "$f" "$pkts" \
    "$(echo "$(stat -c %s "$f") / 1000000" | bc -l)" "$span"
  printf '  %-4s %-12s %6s %5s %5s %6s %7s %7s %6s %8s %8s %9s %7s %6s %6s %7s\n' \
    wkrs mode wall_s x_off trips ops sent evalsha xadd in_lua cmd/s_wal cmd/s_pkt redis_ms rss_MiB red_MiB keys
  : > "$TMP/names"
  for workers in 1 default; do
    wargs=()
    [ "$workers" = 1 ] && wargs=(--workers 1)
    off=""
    label=$workers
    [ "$workers" = default ] && label="$CORES"
    for mode in no-fleet fleet fleet+stream; do
      : > "$TMP/runs"
      for _ in $(seq "$REPEAT"); do
        one_run "$mode" "$f" "${wargs[@]}" >> "$TMP/runs"
      done
      w=$(cut -d' ' -f1 "$TMP/runs" | median)
      r=$(cut -d' ' -f2 "$TMP/runs" | sort -g | tail -1)
      # The counts of the last run (with one worker, the same every run).
      read -r _ _ rt ops sent ev xa _ is us mem keys < <(tail -1 "$TMP/runs")
      [ -z "$off" ] && off=$w
      [ "$mode" = no-fleet ] || echo "  $label $mode: $(sort -k2,2nr "$TMP/bynames" | awk '{ printf "%s%s %d", (NR > 1 ? ", " : ""), $1, $2 }')" >> "$TMP/names"
      awk -v wk="$label" -v m="$mode" -v w="$w" -v off="$off" -v rt="$rt" -v ops="$ops" -v c="$sent" \
        -v ev="$ev" -v xa="$xa" -v is="$is" -v us="$us" -v span="$span" -v r="$r" -v mem="$mem" -v keys="$keys" 'BEGIN {
        if (w <= 0) w = 0.001; if (span <= 0) span = 0.001
        if (m == "no-fleet") { rt = "-"; ops = "-"; c = 0; ev = 0; xa = 0; is = 0; us = 0; mem = 0; keys = 0 }
        printf "  %-4s %-12s %6.2f %5.2f %5s %6s %7d %7d %6d %8d %8.0f %9.0f %7.0f %6.1f %6.1f %7d\n",
          wk, m, w, w / off, rt, ops, c, ev, xa, is, c / w, c / span, us / 1000, r / 1024, mem / 1048576, keys }'
    done
  done
  echo "  commands Redis executed, by name (the last run of each row; in-script ones included):"
  cat "$TMP/names"
done
echo
