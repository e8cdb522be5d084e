# The rig of the live benches (sourced by bench/soak.sh and bench/live.sh): a network namespace
# with a veth pair, xwcap (the daemon captures there) and xwsend (tcpreplay sends there), no
# address, no route, IPv6 off. The caller defines say() and NS.

# rig_preflight MAKE-TARGET: exits 0 with "skipped" unless root with the tools; 2 unless built.
rig_preflight() {
  if [ "$(id -u)" != 0 ]; then
    say "skipped: needs root (network namespace, packet capture); run \`sudo make $1\`"
    exit 0
  fi
  for tool in ip tcpreplay curl awk; do
    command -v "$tool" >/dev/null || { say "skipped: \`$tool\` not found (\`make deps\` as root installs it)"; exit 0; }
  done
  [ -x "$BIN" ] && [ -x "$GEN" ] || { say "build first: cargo build --release -p xferwatch -p xferwatch-gen"; exit 2; }
}

# rig_reap PREFIX: removes the namespaces PREFIX-<pid> of earlier runs killed before their trap
# ran (their pid is gone).
rig_reap() {
  local ns p
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$1-[0-9]+\$" || true); do
    if [ ! -d "/proc/${ns#"$1"-}" ]; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null && say "removed the stale namespace $ns"
    fi
  done
}

# rig_up: creates $NS with its veth pair, both ends up.
rig_up() {
  ip netns add "$NS"
  ip netns exec "$NS" sh -c 'for f in all default; do echo 1 > /proc/sys/net/ipv6/conf/$f/disable_ipv6; done' 2>/dev/null || true
  ip -n "$NS" link set lo up
  ip -n "$NS" link add xwcap type veth peer name xwsend
  ip -n "$NS" link set xwcap up
  ip -n "$NS" link set xwsend up
}

# rig_down: kills what still runs in $NS and removes it.
rig_down() {
  local p
  if ip netns list | awk '{print $1}' | grep -qx "$NS"; then
    for p in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || say "warning: could not delete the namespace $NS"
  fi
}
