#!/usr/bin/env bash
# cargo deny with deny.toml (make check): licences, bans and sources always; advisories against the
# RustSec database, fetched from GitHub. When it cannot be fetched, a copy fetched earlier is used
# (--offline); without one the advisories check is skipped with a message. An advisory found, or
# any other failure, fails. Installs cargo-deny when it is missing.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! cargo deny --version >/dev/null 2>&1; then
  echo "installing cargo-deny"
  cargo install cargo-deny --locked --quiet || { echo "deny: cannot install cargo-deny"; exit 1; }
fi

cargo deny --locked check licenses bans sources || exit 1

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# A run that checked the dependencies ends with the line "advisories ok" or "advisories FAILED";
# a database that could not be fetched (or opened) stops cargo deny before that line, also with
# exit code 1.
advisories() {
  cargo deny "$@" --locked check advisories 2>&1 | tee "$log"
  return "${PIPESTATUS[0]}"
}
checked() { grep -q 'advisories \(ok\|FAILED\)' "$log"; }

advisories && exit 0
checked && exit 1
grep -q 'failed to fetch advisory database' "$log" || exit 1
echo "advisories: database unreachable, trying the copy fetched earlier"
advisories --offline && { echo "advisories: checked against the copy fetched earlier"; exit 0; }
checked && exit 1
echo "SKIP advisories: advisory database unreachable"
exit 0
