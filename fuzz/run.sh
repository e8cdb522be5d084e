#!/usr/bin/env bash
# Runs every fuzz target for a while, one after the other; fails when any target crashed.
#   fuzz/run.sh SECONDS [TARGET...]      (make fuzz FUZZ_SECONDS=..., make fuzz-smoke)
# Seeds are generated first from pcaps/ (and the shared public corpus when present). Needs the
# nightly toolchain (skipped with a message without it); installs cargo-fuzz when it is missing.
# Logs and a summary of executions per target go to fuzz/logs/.
set -uo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(pipeline ftp smb fingerprint defrag reassembly tftp decode)
fi
shared=${SHARED:-../../shared}
# Optimised, with debug assertions and overflow checks (an overflowing length is a bug even where
# the shipped build would wrap), no sanitizer: the code under test is safe Rust, so ASan would
# mostly halve the executions per second and double the build.
build_flags=(-O --debug-assertions --sanitizer none)

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "SKIP fuzz: no nightly toolchain (rustup toolchain install nightly)"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet || { echo "fuzz: cannot install cargo-fuzz"; exit 1; }
fi

seed_from=(../pcaps)
[ -d "$shared/corpus/public/pcaps" ] && seed_from+=("$shared/corpus/public/pcaps")
python3 seed.py corpus "${seed_from[@]}" | tr '\n' ' '
echo

cargo +nightly fuzz build "${build_flags[@]}" || { echo "fuzz: build failed"; exit 1; }

logs=${FUZZ_LOGS:-logs}
mkdir -p "$logs"
summary=$logs/summary.txt
: >"$summary"
failed=()
for t in "${targets[@]}"; do
  log=$logs/$t.log
  start=$(date +%s)
  cargo +nightly fuzz run "${build_flags[@]}" "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1)
  line=$(printf '%-12s %5ss  %12s executions  %s  corpus %s' "$t" "$took" "${execs:-?}" \
    "${cov:-cov: ?}" "$(ls "corpus/$t" | wc -l)")
  if [ $rc -ne 0 ]; then
    line="$line  CRASH (see fuzz/$log, fuzz/artifacts/$t/)"
    failed+=("$t")
  fi
  echo "$line" | tee -a "$summary"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]}"
  exit 1
fi
echo "fuzz: no crash in ${#targets[@]} targets"
