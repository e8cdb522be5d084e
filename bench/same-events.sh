#!/usr/bin/env bash
# Replays every bundled capture (pcaps/, with pcaps/demo.toml) and every public corpus capture
# (../shared/corpus/public, when present) with 1 and 2 workers, one EVE file per run, into OUT.
# With a second directory, compares the two sets byte for byte and lists the runs that differ.
#
#   bash bench/same-events.sh BIN OUT          # record
#   bash bench/same-events.sh --diff OUT1 OUT2 # compare
set -euo pipefail
if [ "${1:-}" = --diff ]; then
  a=$2 b=$3 bad=0 n=0
  for f in "$a"/*.json; do
    n=$((n + 1))
    if ! cmp -s "$f" "$b/$(basename "$f")"; then echo "differs: $(basename "$f")"; bad=$((bad + 1)); fi
  done
  echo "$n runs compared, $bad differ"
  [ "$bad" = 0 ]
  exit
fi
bin=$1 out=$2
shared=${SHARED:-../shared}
mkdir -p "$out"
for w in 1 2; do
  for p in pcaps/*.pcap; do
    "$bin" replay -q -w "$w" --force -c pcaps/demo.toml --eve "$out/bundled-$(basename "$p" .pcap)-w$w.json" "$p"
  done
  "$bin" replay -q -w "$w" --force -c pcaps/demo.toml --eve "$out/bundled-all-w$w.json" pcaps/*.pcap
  if [ -d "$shared/corpus/public/pcaps" ]; then
    for p in "$shared"/corpus/public/pcaps/*; do
      "$bin" replay -q -w "$w" --force --eve "$out/corpus-$(basename "$p")-w$w.json" "$p" || echo "exit $?: $p"
    done
  fi
done
echo "$(ls "$out" | wc -l) EVE files, $(cat "$out"/*.json | wc -l) records in $out"
