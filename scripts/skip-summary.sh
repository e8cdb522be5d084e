#!/usr/bin/env bash
# Prints what a test run skipped, from its log (make test): one line per distinct skip message, or
# "Skipped: none". A skip message is a line (or the end of one: test output interleaves) that starts
# with "SKIP: " or "SKIP <what>: ", or one that says "<test>: skipped: <why>" / "skipped: <why>".
# Always exits 0: the run's own exit status is the verdict.
set -uo pipefail
log=${1:?usage: skip-summary.sh LOG}
skips=$(
  grep -E '(^|[^[:alnum:]_])SKIP[: ]|(^|: )skipped[: ]' "$log" 2>/dev/null \
    | sed -E -e 's/^test .* \.\.\. //' -e 's/^(.*[^[:alnum:]_])?(SKIP[: ])/\2/' \
    | sort -u
)
if [ -n "$skips" ]; then
  echo "Skipped:"
  printf '%s\n' "$skips" | sed 's/^/  /'
else
  echo "Skipped: none"
fi
