#!/usr/bin/env bash
# The operator's package, end to end (make test-deb; root only): builds it with `make deb`, checks
# its contents, conffiles and control data, runs lintian (errors fail), installs it with dpkg -i
# without starting anything, checks the binary, the man page, the user, the directories and the
# configuration's owner, purges it and checks that nothing is left.
#
# Without root, dpkg, dpkg-deb or lintian it prints "test-deb: skipped: <why>" and exits 0. It
# also skips, and touches nothing, where xferwatch is installed already (the package, a
# /usr/bin/xferwatch or a user xferwatch): the purge at the end would remove them.
set -euo pipefail

T=test-deb
cd "$(dirname "$0")/.."
# `make deb` (the Makefile does not pass $MAKE: `make -n test-deb` would then run this script).
MAKE=${MAKE:-make}

skip() {
  echo "$T: skipped: $*"
  exit 0
}
fail() {
  echo "$T: FAIL: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || skip "needs root (installs and purges the package); run 'sudo make test-deb'"
for tool in dpkg dpkg-deb dpkg-query lintian; do
  command -v "$tool" >/dev/null || skip "$tool not found (make deps-test as root installs lintian)"
done
# dpkg's state of the package: empty or "... not-installed" when it is not on the machine.
pkg_state() {
  local st
  st=$(dpkg-query -W -f='${Status}' xferwatch 2>/dev/null || true)
  case "$st" in "" | *" not-installed") echo absent ;; *) echo "$st" ;; esac
}
if [ "$(pkg_state)" != absent ]; then
  skip "an xferwatch package is installed here already; the test would replace and purge it"
fi
[ ! -e /usr/bin/xferwatch ] || skip "/usr/bin/xferwatch exists already; the test would replace it"
! getent passwd xferwatch >/dev/null || skip "a user xferwatch exists already; the purge would remove it"
! getent group xferwatch >/dev/null || skip "a group xferwatch exists already; the purge would remove it"

t0=$SECONDS
"$MAKE" --no-print-directory deb
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
deb=target/debian/xferwatch_${version}-1_$(dpkg --print-architecture).deb
[ -f "$deb" ] || fail "make deb did not write $deb"
size=$(stat -c %s "$deb")

# --- contents -----------------------------------------------------------------------------------
listing=$(dpkg-deb -c "$deb")
paths=(
  /usr/bin/xferwatch
  /usr/lib/systemd/system/xferwatch.service
  /etc/xferwatch/sensor.toml
  /etc/logrotate.d/xferwatch
  /usr/share/man/man1/xferwatch.1.gz
  /usr/share/bash-completion/completions/xferwatch
  /usr/share/zsh/vendor-completions/_xferwatch
  /usr/share/fish/vendor_completions.d/xferwatch.fish
  /usr/share/xferwatch/grafana/xferwatch.json
  /usr/share/xferwatch/prometheus/xferwatch-rules.yml
  /usr/share/doc/xferwatch/copyright
  /usr/share/doc/xferwatch/changelog.Debian.gz
)
for p in "${paths[@]}"; do
  grep -qE "[[:space:]]\.${p}\$" <<<"$listing" || fail "$deb has no $p"
done
grep -qE '^-rwxr-xr-x 0/0 .* \./usr/bin/xferwatch$' <<<"$listing" \
  || fail "/usr/bin/xferwatch is not root-owned 0755: $(grep 'usr/bin/xferwatch' <<<"$listing")"
conffiles=$(dpkg-deb -I "$deb" conffiles)
for c in /etc/xferwatch/sensor.toml /etc/logrotate.d/xferwatch; do
  grep -qxF "$c" <<<"$conffiles" || fail "$c is not a conffile (conffiles: $conffiles)"
done
info=$(dpkg-deb -I "$deb")
for field in Package Version Architecture Maintainer Depends Description; do
  grep -qE "^ $field: " <<<"$info" || fail "control has no $field field"
done
grep -qE '^ Depends: .*adduser' <<<"$info" || fail "Depends lacks adduser"
grep -qE '^ Depends: .*libpcap' <<<"$info" || fail "Depends lacks libpcap (is dpkg-dev installed?)"
unit=$(dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ./usr/lib/systemd/system/xferwatch.service)
grep -qx 'ExecStart=/usr/bin/xferwatch run -c /etc/xferwatch/sensor.toml' <<<"$unit" \
  || fail "the packaged unit does not start /usr/bin/xferwatch"
echo "$T: $deb: $size bytes, $(grep -c '^-' <<<"$listing") files, conffiles: $(tr '\n' ' ' <<<"$conffiles")"

# --- lintian --------------------------------------------------------------------------------------
lint=$(lintian --allow-root --display-info "$deb" 2>&1) || true
errors=$(grep -c '^E: ' <<<"$lint" || true)
warnings=$(grep -c '^W: ' <<<"$lint" || true)
infos=$(grep -c '^I: ' <<<"$lint" || true)
[ -z "$lint" ] || printf '%s\n' "$lint" | sed 's/^/  lintian: /'
echo "$T: lintian: $errors errors, $warnings warnings, $infos info"
[ "$errors" = 0 ] || fail "lintian reports errors"

# --- install --------------------------------------------------------------------------------------
# Nothing may start: the package does not start the unit, and a policy-rc.d that refuses every
# start makes sure of it (deb-systemd-invoke honours it) where none exists already.
made_policy=0
cleanup() {
  if [ "$(pkg_state)" != absent ]; then
    echo "$T: purging the package after a failure"
    dpkg --purge xferwatch >/dev/null 2>&1 || true
  fi
  if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
fi
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb failed"
[ "$(pkg_state)" = "install ok installed" ] || fail "not installed after dpkg -i: $(pkg_state)"

got=$(/usr/bin/xferwatch --version) || fail "xferwatch --version failed"
grep -qF "$version" <<<"$got" || fail "xferwatch --version says '$got', not $version"
manpage=$(man -w xferwatch 2>/dev/null) || fail "man -w xferwatch finds no page"
[ "$manpage" = /usr/share/man/man1/xferwatch.1.gz ] || fail "man -w xferwatch: $manpage"
/usr/bin/xferwatch check-config /etc/xferwatch/sensor.toml >/dev/null \
  || fail "the installed /etc/xferwatch/sensor.toml does not pass check-config"
getent passwd xferwatch >/dev/null || fail "no user xferwatch after installing"
user=$(getent passwd xferwatch)
IFS=: read -r _ _ uid _ _ home shell <<<"$user"
[ "$uid" -lt 1000 ] || fail "xferwatch is not a system user: $user"
[ "$home" = /var/lib/xferwatch ] && [ "$shell" = /usr/sbin/nologin ] || fail "user xferwatch: $user"
for d in /var/lib/xferwatch /var/log/xferwatch; do
  st=$(stat -c '%U:%G %a' "$d" 2>/dev/null) || fail "$d was not created"
  [ "$st" = "xferwatch:xferwatch 750" ] || fail "$d is $st, not xferwatch:xferwatch 750"
done
st=$(stat -c '%U:%G %a' /etc/xferwatch/sensor.toml)
[ "$st" = "root:xferwatch 640" ] || fail "/etc/xferwatch/sensor.toml is $st, not root:xferwatch 640"
for wants in /etc/systemd/system/multi-user.target.wants/xferwatch.service; do
  [ ! -e "$wants" ] || fail "the package enabled the unit ($wants)"
done
if [ -d /run/systemd/system ] && systemctl is-active --quiet xferwatch.service; then
  fail "the package started xferwatch.service"
fi
echo "$T: installed: $got; man page $manpage; user $user; nothing enabled or started"

# --- purge ----------------------------------------------------------------------------------------
dpkg --purge xferwatch >/dev/null || fail "dpkg --purge xferwatch failed"
left=()
for p in "${paths[@]}" /etc/xferwatch /var/lib/xferwatch /var/log/xferwatch /usr/share/xferwatch; do
  [ ! -e "$p" ] || left+=("$p")
done
[ ${#left[@]} = 0 ] || fail "left after purge: ${left[*]}"
! getent passwd xferwatch >/dev/null || fail "user xferwatch left after purge"
! getent group xferwatch >/dev/null || fail "group xferwatch left after purge"
! dpkg-statoverride --list /etc/xferwatch/sensor.toml >/dev/null || fail "statoverride left after purge"
[ "$(pkg_state)" = absent ] || fail "dpkg still knows the package after purge: $(pkg_state)"
echo "$T: purged: binary, files, directories, user and group gone ($((SECONDS - t0)) s)"
