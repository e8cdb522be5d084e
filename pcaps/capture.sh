#!/usr/bin/env bash
# Regenerates xferwatch's small test captures of REAL client/server software.
#
#   sudo pcaps/capture.sh
#
# Everything runs inside two throw-away network namespaces joined by one veth
# pair that has no route to any real interface:
#   xw-cli  (veth xw-c)  10.77.0.2/24      fd77::2/64           "internal" client
#   xw-srv  (veth xw-s)  198.51.100.10/24  2001:db8:51::10/64   "external" server
# (RFC 1918 and IPv6 ULA inside; TEST-NET-2 and the IPv6 documentation prefix
# outside.)  For one scenario the server also gets 10.77.0.10/24, an internal
# address.  Each namespace only gets on-link routes to the other one's
# prefixes, so every packet stays on the veth link.  tcpdump captures on xw-s
# (server side).  Servers (vsftpd, tftpd-hpa, atftpd, smbd, python3
# http.server) use config files in a temporary directory; nothing under /etc is
# changed.  See pcaps/README.md.
set -euo pipefail

if [[ ${EUID:-$(id -u)} -ne 0 ]]; then
  echo "capture.sh: must run as root (network namespaces, tcpdump, daemons on ports < 1024)." >&2
  echo "            run: sudo $0" >&2
  exit 1
fi

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE}
CLI_NS=xw-cli SRV_NS=xw-srv
CLI_IF=xw-c SRV_IF=xw-s
CLI_IP=10.77.0.2 SRV_IP=198.51.100.10
CLI_IP6=fd77::2 SRV_IP6=2001:db8:51::10
SRV_IP_INT=10.77.0.10                  # second server address, internal (smb-internal)
CLIENT_TIMEOUT=${CLIENT_TIMEOUT:-60}   # seconds, every client command
PY=/usr/bin/python3

log() { printf '\n=== %s\n' "$*"; }
die() { echo "capture.sh: $*" >&2; exit 1; }

# ---------------------------------------------------------------- packages --
PKGS=(iproute2 ethtool procps tcpdump tshark vsftpd tftpd-hpa tftp-hpa atftp
      samba smbclient curl python3)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  # Do not let the packages start their system-wide daemons (port 21/69/445
  # on the host); we run our own copies inside the namespace.
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
fi
getent passwd ftp >/dev/null || die "user 'ftp' missing (normally created by the vsftpd package)"

# ----------------------------------------------------------------- cleanup --
WORK=$(mktemp -d /tmp/xw-capture.XXXXXX)
chmod 755 "$WORK"
DAEMON_PIDS=()
TCPDUMP_PID=

cleanup() {
  set +e
  [[ -n $TCPDUMP_PID ]] && kill -INT "$TCPDUMP_PID" 2>/dev/null
  for p in "${DAEMON_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  # anything still alive inside our own namespaces (smbd children, ...)
  for ns in "$SRV_NS" "$CLI_NS"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null; done
  done
  sleep 0.5
  for ns in "$SRV_NS" "$CLI_NS"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# atftpd is the only packaged TFTP server here that implements windowsize
# (RFC 7440), for tftp-options.pcap.  It cannot be installed next to tftpd-hpa
# (both packages ship /usr/sbin/in.tftpd and conflict), so its server binary is
# unpacked from the Debian package into the temp dir and run from there.
ATFTPD_DEB=$(ls /var/cache/apt/archives/atftpd_*_"$(dpkg --print-architecture)".deb 2>/dev/null | tail -n 1 || true)
if [[ -z $ATFTPD_DEB ]]; then
  mkdir -p "$WORK/deb"
  getent passwd _apt >/dev/null && chown _apt "$WORK/deb"
  fetch_atftpd() { (cd "$WORK/deb" && apt-get download -qq atftpd) >/dev/null 2>>"$WORK/deb/apt.log"; }
  fetch_atftpd || { apt-get update -qq && fetch_atftpd; } ||
    die "could not download the atftpd package: $(cat "$WORK/deb/apt.log")"
  ATFTPD_DEB=$(ls "$WORK"/deb/atftpd_*.deb)
fi
dpkg-deb -x "$ATFTPD_DEB" "$WORK/atftpd"
ATFTPD=$WORK/atftpd/usr/sbin/atftpd
ATFTPD_VERSION=$(dpkg-deb -f "$ATFTPD_DEB" Version)

# ----------------------------------------------------------------- network --
log "network namespaces $CLI_NS ($CLI_IP) <-> $SRV_NS ($SRV_IP)"
for ns in "$SRV_NS" "$CLI_NS"; do
  ip netns del "$ns" 2>/dev/null || true     # leftovers of an aborted run
done
ip netns add "$CLI_NS"
ip netns add "$SRV_NS"
ip link add "$CLI_IF" netns "$CLI_NS" type veth peer name "$SRV_IF" netns "$SRV_NS"
in_cli() { ip netns exec "$CLI_NS" "$@"; }
in_srv() { ip netns exec "$SRV_NS" "$@"; }
# IPv6 is on (ftp-eprt-ipv6 needs it) but quiet: no link-local addresses, no
# router solicitations, no autoconfiguration, no duplicate address detection.
# IPv4 captures filter on "ip", the IPv6 one on "ip6 and tcp", so neighbour
# discovery and MLD never end up in a pcap.
for pair in "$CLI_NS:$CLI_IF" "$SRV_NS:$SRV_IF"; do
  ns=${pair%%:*} dev=${pair#*:}
  for c in all default "$dev"; do
    ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$c.disable_ipv6=0" \
      "net.ipv6.conf.$c.accept_ra=0" "net.ipv6.conf.$c.autoconf=0" \
      "net.ipv6.conf.$c.accept_dad=0" "net.ipv6.conf.$c.router_solicitations=0"
  done
  ip -n "$ns" link set "$dev" addrgenmode none
  ip -n "$ns" link set lo up
done
ip -n "$CLI_NS" addr add "$CLI_IP/24" dev "$CLI_IF"
ip -n "$SRV_NS" addr add "$SRV_IP/24" dev "$SRV_IF"
ip -n "$CLI_NS" addr add "$CLI_IP6/64" dev "$CLI_IF" nodad
ip -n "$SRV_NS" addr add "$SRV_IP6/64" dev "$SRV_IF" nodad
ip -n "$CLI_NS" link set "$CLI_IF" up
ip -n "$SRV_NS" link set "$SRV_IF" up
ip -n "$CLI_NS" route add 198.51.100.0/24 dev "$CLI_IF"
ip -n "$SRV_NS" route add 10.77.0.0/24 dev "$SRV_IF"
ip -n "$CLI_NS" -6 route add 2001:db8:51::/64 dev "$CLI_IF"
ip -n "$SRV_NS" -6 route add fd77::/64 dev "$SRV_IF"
# No offloads: wire-sized segments (no 64 KB GSO/TSO super-packets) and
# correct checksums in the capture.
in_cli ethtool -K "$CLI_IF" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
in_srv ethtool -K "$SRV_IF" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true

# ---------------------------------------------------------------- helpers --
# gen_file PATH BYTES SEED: deterministic, incompressible content (SHA-256 in
# counter mode), so every regeneration transfers the same bytes.
gen_file() {
  "$PY" - "$1" "$2" "$3" <<'EOF'
import hashlib, sys
path, n, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
out, i = bytearray(), 0
while len(out) < n:
    out += hashlib.sha256(seed + i.to_bytes(8, "big")).digest(); i += 1
open(path, "wb").write(out[:n])
EOF
}

# start_daemon NAME CMD...: run CMD in the server namespace, in the background.
start_daemon() {
  local name=$1; shift
  ip netns exec "$SRV_NS" setsid "$@" >"$WORK/$name.log" 2>&1 &
  DAEMON_PIDS+=($!)
  CUR_DAEMON=$!
  CUR_LOG=$WORK/$name.log
}
stop_daemon() {
  local pid=$CUR_DAEMON
  kill "$pid" 2>/dev/null || true
  for p in $(ip netns pids "$SRV_NS"); do kill "$p" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
  for _ in $(seq 50); do [[ -z $(ip netns pids "$SRV_NS") ]] && break; sleep 0.1; done
}
# wait_listen tcp|udp PORT
wait_listen() {
  local proto=$1 port=$2 flag=-ltn
  [[ $proto == udp ]] && flag=-lun
  for _ in $(seq 100); do
    in_srv ss -H "$flag" "sport = :$port" | grep -q . && return 0
    sleep 0.1
  done
  echo "--- daemon log ($CUR_LOG):"; tail -30 "$CUR_LOG"
  die "nothing listens on $proto/$port in $SRV_NS"
}
# cap_start FILE [FILTER]: FILTER defaults to "ip" (IPv4 only, no ARP).
cap_start() {
  CUR_PCAP=$OUT/$1
  rm -f "$CUR_PCAP"
  ip netns exec "$SRV_NS" tcpdump -i "$SRV_IF" -n -s 0 -U -Z root -w "$CUR_PCAP" "${2:-ip}" \
    2>"$WORK/tcpdump.log" &
  TCPDUMP_PID=$!
  for _ in $(seq 100); do
    grep -q 'listening on' "$WORK/tcpdump.log" && { sleep 0.2; return 0; }
    sleep 0.1
  done
  die "tcpdump did not start: $(cat "$WORK/tcpdump.log")"
}
cap_stop() {
  sleep 1                       # let last ACKs / FINs pass
  kill -INT "$TCPDUMP_PID"
  wait "$TCPDUMP_PID" || true
  TCPDUMP_PID=
  echo "    $(basename "$CUR_PCAP"): $(grep -E 'packets (captured|received by filter)' "$WORK/tcpdump.log" | tr '\n' ' ')"
}
# cli CMD...: a client command in the client namespace, bounded in time.
cli() { timeout "$CLIENT_TIMEOUT" ip netns exec "$CLI_NS" "$@"; }
same() { cmp -s "$1" "$2" || die "transferred file differs: $1 vs $2"; }
# xfer PCAP upload|download ftp|tftp|smb REMOTE-NAME SENT RECEIVED: cmp the file
# as sent with the file as received, and note the transfer for the "files" list
# of expected.json.
xfer() {
  same "$5" "$6"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$4" "$(stat -c %s "$5")" "$2" "$3" \
    "$(sha256sum "$5" | cut -d' ' -f1)" >>"$WORK/files.tsv"
}
: >"$WORK/files.tsv"
STEP=0 STEPS=17
step() { STEP=$((STEP + 1)); log "$STEP/$STEPS $*"; }

CLI_DIR=$WORK/client
mkdir -p "$CLI_DIR"

# ------------------------------------------------------------------ vsftpd --
FTP_ROOT=$WORK/ftp-root
mkdir -p "$FTP_ROOT/pub" "$FTP_ROOT/upload" "$WORK/vsftpd-empty"
chown ftp: "$FTP_ROOT/upload"      # anon root itself must NOT be writable
vsftpd_conf() {   # vsftpd_conf NAME PORT ADDR -> path of config file (IPv6 if ADDR has a ':')
  local conf=$WORK/vsftpd-$1.conf listen
  if [[ $3 == *:* ]]; then
    listen="listen=NO
listen_ipv6=YES
listen_address6=$3"
  else
    listen="listen=YES
listen_ipv6=NO
listen_address=$3"
  fi
  cat >"$conf" <<EOC
$listen
listen_port=$2
background=NO
anonymous_enable=YES
no_anon_password=NO
local_enable=NO
write_enable=YES
anon_upload_enable=YES
anon_mkdir_write_enable=NO
anon_umask=022
anon_root=$FTP_ROOT
ftp_username=ftp
pasv_enable=YES
pasv_address=$SRV_IP
pasv_min_port=40000
pasv_max_port=40009
port_enable=YES
connect_from_port_20=YES
ftp_data_port=20
dirmessage_enable=NO
secure_chroot_dir=$WORK/vsftpd-empty
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
syslog_enable=NO
xferlog_enable=YES
log_ftp_protocol=YES
vsftpd_log_file=$WORK/vsftpd-$1.xfer.log
EOC
  echo "$conf"
}

step "ftp-passive-upload.pcap: vsftpd tcp/21, PASV upload (STOR 600 KB) + LIST (curl --disable-epsv)"
gen_file "$CLI_DIR/report-q3.bin" 614400 ftp-passive-upload
start_daemon vsftpd21 vsftpd "$(vsftpd_conf 21 21 "$SRV_IP")"
wait_listen tcp 21
cap_start ftp-passive-upload.pcap
# one curl run, one control connection: STOR, then LIST of the same directory
cli curl -sS --ftp-pasv --disable-epsv -T "$CLI_DIR/report-q3.bin" "ftp://$SRV_IP/upload/" "ftp://$SRV_IP/upload/" >/dev/null
cap_stop
xfer ftp-passive-upload.pcap upload ftp report-q3.bin "$CLI_DIR/report-q3.bin" "$FTP_ROOT/upload/report-q3.bin"

step "ftp-epsv-upload.pcap: vsftpd tcp/21, EPSV upload (STOR 600 KB) (curl --ftp-pasv)"
gen_file "$CLI_DIR/customers.bin" 614400 ftp-epsv-upload
cap_start ftp-epsv-upload.pcap
cli curl -sS --ftp-pasv -T "$CLI_DIR/customers.bin" "ftp://$SRV_IP/upload/"
cap_stop
xfer ftp-epsv-upload.pcap upload ftp customers.bin "$CLI_DIR/customers.bin" "$FTP_ROOT/upload/customers.bin"

step "ftp-multi-stor.pcap: vsftpd tcp/21, one control connection, 6 x (EPSV + STOR 80 KB) (curl -T 'scan-[1-6].bin')"
for i in 1 2 3 4 5 6; do gen_file "$CLI_DIR/scan-$i.bin" 81920 "ftp-multi-stor-$i"; done
cap_start ftp-multi-stor.pcap
# curl globs the -T argument and reuses the control connection for each file
cli curl -sS --ftp-pasv -T "$CLI_DIR/scan-[1-6].bin" "ftp://$SRV_IP/upload/"
cap_stop
for i in 1 2 3 4 5 6; do
  xfer ftp-multi-stor.pcap upload ftp "scan-$i.bin" "$CLI_DIR/scan-$i.bin" "$FTP_ROOT/upload/scan-$i.bin"
done

step "ftp-active-download.pcap: vsftpd tcp/21, active mode: PORT + RETR 300 KB, EPRT + RETR 30 KB (curl)"
gen_file "$FTP_ROOT/pub/firmware.bin" 307200 ftp-active-download
gen_file "$FTP_ROOT/pub/notes.bin" 30720 ftp-active-download-eprt
cap_start ftp-active-download.pcap
cli curl -sS -P - --disable-eprt -o "$CLI_DIR/firmware.bin" "ftp://$SRV_IP/pub/firmware.bin"
cli curl -sS -P - -o "$CLI_DIR/notes.bin" "ftp://$SRV_IP/pub/notes.bin"
cap_stop
xfer ftp-active-download.pcap download ftp firmware.bin "$FTP_ROOT/pub/firmware.bin" "$CLI_DIR/firmware.bin"
xfer ftp-active-download.pcap download ftp notes.bin "$FTP_ROOT/pub/notes.bin" "$CLI_DIR/notes.bin"
stop_daemon

step "ftp-eprt-ipv6.pcap: vsftpd tcp/21 on IPv6, active mode: EPRT |2| + STOR 300 KB (curl --ftp-port $CLI_IP6)"
gen_file "$CLI_DIR/site-plan.bin" 307200 ftp-eprt-ipv6
start_daemon vsftpd21v6 vsftpd "$(vsftpd_conf 21v6 21 "$SRV_IP6")"
wait_listen tcp 21
cap_start ftp-eprt-ipv6.pcap "ip6 and tcp"
cli curl -sS -g --ftp-port "$CLI_IP6" -T "$CLI_DIR/site-plan.bin" "ftp://[$SRV_IP6]/upload/"
cap_stop
xfer ftp-eprt-ipv6.pcap upload ftp site-plan.bin "$CLI_DIR/site-plan.bin" "$FTP_ROOT/upload/site-plan.bin"
stop_daemon

step "ftp-port80.pcap: vsftpd tcp/80, PASV upload (STOR 400 KB) (curl)"
gen_file "$CLI_DIR/db-dump.bin" 409600 ftp-port80
start_daemon vsftpd80 vsftpd "$(vsftpd_conf 80 80 "$SRV_IP")"
wait_listen tcp 80
cap_start ftp-port80.pcap
cli curl -sS --ftp-pasv --disable-epsv -T "$CLI_DIR/db-dump.bin" "ftp://$SRV_IP:80/upload/"
cap_stop
xfer ftp-port80.pcap upload ftp db-dump.bin "$CLI_DIR/db-dump.bin" "$FTP_ROOT/upload/db-dump.bin"
stop_daemon

# --------------------------------------------------------------- tftpd-hpa --
TFTP_ROOT=$WORK/tftp-root
mkdir -p "$TFTP_ROOT"
chmod 777 "$TFTP_ROOT"             # in.tftpd runs as nobody; -c creates files

step "tftp-rrq-wrq.pcap: tftpd-hpa udp/69, RRQ 100 KB (tftp-hpa, 512-byte blocks) + WRQ 200 KB blksize 1428 (atftp)"
gen_file "$TFTP_ROOT/pxelinux.bin" 102400 tftp-rrq
gen_file "$CLI_DIR/running-config.bin" 204800 tftp-wrq
start_daemon tftpd69 in.tftpd -L -v -c -p -s -u nobody -U 022 -a "$SRV_IP:69" "$TFTP_ROOT"
wait_listen udp 69
cap_start tftp-rrq-wrq.pcap
cli tftp -m binary "$SRV_IP" 69 -c get pxelinux.bin "$CLI_DIR/pxelinux.bin"
cli atftp --option "blksize 1428" -p -l "$CLI_DIR/running-config.bin" -r running-config.bin "$SRV_IP" 69
cap_stop
xfer tftp-rrq-wrq.pcap download tftp pxelinux.bin "$TFTP_ROOT/pxelinux.bin" "$CLI_DIR/pxelinux.bin"
xfer tftp-rrq-wrq.pcap upload tftp running-config.bin "$CLI_DIR/running-config.bin" "$TFTP_ROOT/running-config.bin"
stop_daemon

step "tftp-options.pcap: atftpd udp/69, WRQ 300 KB + RRQ 100 KB, each with blksize 1024, windowsize 4, tsize -> OACK (atftp)"
gen_file "$CLI_DIR/switch-backup.bin" 307200 tftp-options-wrq
gen_file "$TFTP_ROOT/boot.img" 102400 tftp-options-rrq
start_daemon atftpd69 "$ATFTPD" --daemon --no-fork --logfile - --verbose=6 --user nobody --group nogroup \
  --port 69 --bind-address "$SRV_IP" "$TFTP_ROOT"
wait_listen udp 69
cap_start tftp-options.pcap
TFTP_OPTS=(--option "blksize 1024" --option "windowsize 4" --option "tsize")
cli atftp "${TFTP_OPTS[@]}" -p -l "$CLI_DIR/switch-backup.bin" -r switch-backup.bin "$SRV_IP" 69
cli atftp "${TFTP_OPTS[@]}" -g -r boot.img -l "$CLI_DIR/boot.img" "$SRV_IP" 69
cap_stop
xfer tftp-options.pcap upload tftp switch-backup.bin "$CLI_DIR/switch-backup.bin" "$TFTP_ROOT/switch-backup.bin"
xfer tftp-options.pcap download tftp boot.img "$TFTP_ROOT/boot.img" "$CLI_DIR/boot.img"
stop_daemon

step "tftp-port53.pcap: tftpd-hpa udp/53, WRQ 150 KB (tftp-hpa)"
gen_file "$CLI_DIR/exfil.bin" 153600 tftp-port53
start_daemon tftpd53 in.tftpd -L -v -c -p -s -u nobody -U 022 -a "$SRV_IP:53" "$TFTP_ROOT"
wait_listen udp 53
cap_start tftp-port53.pcap
cli tftp -m binary "$SRV_IP" 53 -c put "$CLI_DIR/exfil.bin" exfil.bin
cap_stop
xfer tftp-port53.pcap upload tftp exfil.bin "$CLI_DIR/exfil.bin" "$TFTP_ROOT/exfil.bin"
stop_daemon

# ------------------------------------------------------------------- samba --
SMB_PASS=xw-capture-pw
SMB_SHARE=$WORK/smb-share
mkdir -p "$SMB_SHARE"
# A fixed client NetBIOS name: otherwise the machine's host name would appear in
# the NTLMSSP AUTH message and in the NBSS session request.
cat >"$WORK/smbclient.conf" <<EOF
[global]
  netbios name = XWCLI
  client min protocol = SMB2_02
  client max protocol = SMB3
  cache directory = $WORK/smbclient-cache
  lock directory = $WORK/smbclient-cache
  state directory = $WORK/smbclient-cache
EOF
# SMB1 only, for smb1-port139 (the default client min protocol is SMB2_02).
sed -e 's/^  client min protocol = .*/  client min protocol = NT1/' \
    -e 's/^  client max protocol = .*/  client max protocol = NT1/' \
  "$WORK/smbclient.conf" >"$WORK/smbclient-nt1.conf"
mkdir -p "$WORK/smbclient-cache"
# smb_conf NAME PORT ENCRYPT [ADDR [MIN-PROTOCOL]] -> path of smb.conf
smb_conf() {
  local d=$WORK/samba-$1 addr=${4:-$SRV_IP} minproto=${5:-SMB2_02}
  mkdir -p "$d"/{private,lock,state,cache,run,ncalrpc,bind-dns}
  chmod 700 "$d/private"
  cat >"$d/smb.conf" <<EOF
[global]
  server role = standalone server
  workgroup = XW
  netbios name = XWSRV
  interfaces = $addr/24
  bind interfaces only = yes
  smb ports = $2
  disable netbios = yes
  server min protocol = $minproto
  server smb encrypt = $3
  security = user
  passdb backend = tdbsam:$d/private/passdb.tdb
  private dir = $d/private
  lock directory = $d/lock
  state directory = $d/state
  cache directory = $d/cache
  pid directory = $d/run
  ncalrpc dir = $d/ncalrpc
  binddns dir = $d/bind-dns
  usershare path =
  log file = $d/log.smbd
  log level = 1
  load printers = no
  printcap name = /dev/null
  disable spoolss = yes

[xfer]
  path = $SMB_SHARE
  read only = no
  guest ok = no
EOF
  printf '%s\n%s\n' "$SMB_PASS" "$SMB_PASS" | smbpasswd -c "$d/smb.conf" -s -a root >/dev/null
  echo "$d/smb.conf"
}
smbcli_at() {  # smbcli_at ADDR PORT CLIENT-CONF MAX-PROTOCOL EXTRA-ARGS... -c CMDS
  local addr=$1 port=$2 conf=$3 proto=$4; shift 4
  cli smbclient -s "$conf" "//$addr/xfer" -U "root%$SMB_PASS" -p "$port" -m "$proto" "$@"
}
smbcli() {  # smbcli PORT EXTRA-ARGS... -c CMDS
  local port=$1; shift
  smbcli_at "$SRV_IP" "$port" "$WORK/smbclient.conf" SMB3 "$@"
}

step "smb-upload.pcap: smbd tcp/445, smbclient put 500 KB + ls"
gen_file "$CLI_DIR/payroll.bin" 512000 smb-upload
start_daemon smbd445 smbd --foreground --no-process-group --debug-stdout -s "$(smb_conf 445 445 default)"
wait_listen tcp 445
cap_start smb-upload.pcap
smbcli 445 -c "put $CLI_DIR/payroll.bin payroll.bin; ls"
cap_stop
xfer smb-upload.pcap upload smb payroll.bin "$CLI_DIR/payroll.bin" "$SMB_SHARE/payroll.bin"
stop_daemon

step "smb-port443.pcap: smbd tcp/443, smbclient -p 443 put 300 KB"
gen_file "$CLI_DIR/design.bin" 307200 smb-port443
start_daemon smbd443 smbd --foreground --no-process-group --debug-stdout -s "$(smb_conf 443 443 default)"
wait_listen tcp 443
cap_start smb-port443.pcap
smbcli 443 -c "put $CLI_DIR/design.bin design.bin"
cap_stop
xfer smb-port443.pcap upload smb design.bin "$CLI_DIR/design.bin" "$SMB_SHARE/design.bin"
stop_daemon

step "smb3-encrypted.pcap: smbd tcp/445 'server smb encrypt = required', smbclient --client-protection=encrypt put 300 KB"
gen_file "$CLI_DIR/secret.bin" 307200 smb3-encrypted
start_daemon smbd445e smbd --foreground --no-process-group --debug-stdout -s "$(smb_conf 445e 445 required)"
wait_listen tcp 445
cap_start smb3-encrypted.pcap
smbcli 445 --client-protection=encrypt -c "put $CLI_DIR/secret.bin secret.bin"
cap_stop
xfer smb3-encrypted.pcap upload smb secret.bin "$CLI_DIR/secret.bin" "$SMB_SHARE/secret.bin"
stop_daemon

step "smb1-port139.pcap: smbd tcp/139 'server min protocol = NT1', smbclient -m NT1 -p 139 (NBSS session request) put 300 KB + get"
gen_file "$CLI_DIR/ledger.bin" 307200 smb1-port139
start_daemon smbd139 smbd --foreground --no-process-group --debug-stdout -s "$(smb_conf 139 139 default "$SRV_IP" NT1)"
wait_listen tcp 139
cap_start smb1-port139.pcap
smbcli_at "$SRV_IP" 139 "$WORK/smbclient-nt1.conf" NT1 -c "put $CLI_DIR/ledger.bin ledger.bin; get ledger.bin $CLI_DIR/ledger-back.bin"
cap_stop
xfer smb1-port139.pcap upload smb ledger.bin "$CLI_DIR/ledger.bin" "$SMB_SHARE/ledger.bin"
xfer smb1-port139.pcap download smb ledger.bin "$SMB_SHARE/ledger.bin" "$CLI_DIR/ledger-back.bin"
stop_daemon

step "smb-internal.pcap: smbd tcp/445 on a second, INTERNAL server address $SRV_IP_INT, smbclient put 600 KB"
gen_file "$CLI_DIR/handover.bin" 614400 smb-internal
# Only for this scenario: with it present, replies of unbound server sockets to
# 10.77.0.2 would take it as source address.
ip -n "$SRV_NS" addr add "$SRV_IP_INT/24" dev "$SRV_IF" noprefixroute
start_daemon smbd445i smbd --foreground --no-process-group --debug-stdout -s "$(smb_conf 445i 445 default "$SRV_IP_INT")"
wait_listen tcp 445
cap_start smb-internal.pcap
smbcli_at "$SRV_IP_INT" 445 "$WORK/smbclient.conf" SMB3 -c "put $CLI_DIR/handover.bin handover.bin"
cap_stop
xfer smb-internal.pcap upload smb handover.bin "$CLI_DIR/handover.bin" "$SMB_SHARE/handover.bin"
stop_daemon
ip -n "$SRV_NS" addr del "$SRV_IP_INT/24" dev "$SRV_IF"

# ------------------------------------------------------------------- http ---
HTTP_ROOT=$WORK/http-root HTTP_POSTED=$WORK/http-posted
mkdir -p "$HTTP_ROOT" "$HTTP_POSTED"

step "http-port21.pcap: python3 -m http.server on tcp/21, curl GET 50 KB"
gen_file "$HTTP_ROOT/index.bin" 51200 http-port21
start_daemon http21 "$PY" -m http.server 21 --bind "$SRV_IP" --directory "$HTTP_ROOT"
wait_listen tcp 21
cap_start http-port21.pcap
cli curl -sS -o "$CLI_DIR/index.bin" "http://$SRV_IP:21/index.bin"
cap_stop
same "$CLI_DIR/index.bin" "$HTTP_ROOT/index.bin"
stop_daemon

step "http-port80.pcap: python3 http.server on tcp/80, curl GET 200 KB + POST 8 KB"
gen_file "$HTTP_ROOT/update.bin" 204800 http-port80-get
gen_file "$CLI_DIR/form.bin" 8192 http-port80-post
# http.server's SimpleHTTPRequestHandler answers POST with 501; add do_POST.
# It keeps the body as POSTED-DIR/<last path segment>, for the cmp.
cat >"$WORK/httpd.py" <<'EOF2'
import http.server, os, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        name = os.path.basename(self.path.split("?")[0].rstrip("/")) or "post"
        with open(os.path.join(sys.argv[4], name), "wb") as f:
            f.write(body)
        msg = ("received %d bytes\n" % len(body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(msg)))
        self.end_headers()
        self.wfile.write(msg)
os.chdir(sys.argv[3])
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
EOF2
start_daemon http80 "$PY" "$WORK/httpd.py" "$SRV_IP" 80 "$HTTP_ROOT" "$HTTP_POSTED"
wait_listen tcp 80
cap_start http-port80.pcap
cli curl -sS -o "$CLI_DIR/update.bin" "http://$SRV_IP/update.bin"
cli curl -sS -o /dev/null -H 'Expect:' -H 'Content-Type: application/octet-stream' \
  --data-binary "@$CLI_DIR/form.bin" "http://$SRV_IP/submit"
cap_stop
same "$CLI_DIR/update.bin" "$HTTP_ROOT/update.bin"
same "$CLI_DIR/form.bin" "$HTTP_POSTED/submit"
stop_daemon

step "http-upload.pcap: python3 http.server on tcp/8080, curl POST 600 KB"
gen_file "$CLI_DIR/archive.bin" 614400 http-upload
start_daemon http8080 "$PY" "$WORK/httpd.py" "$SRV_IP" 8080 "$HTTP_ROOT" "$HTTP_POSTED"
wait_listen tcp 8080
cap_start http-upload.pcap
cli curl -sS -o /dev/null -H 'Expect:' -H 'Content-Type: application/octet-stream' \
  --data-binary "@$CLI_DIR/archive.bin" "http://$SRV_IP:8080/upload/archive.bin"
cap_stop
same "$CLI_DIR/archive.bin" "$HTTP_POSTED/archive.bin"
stop_daemon

((STEP == STEPS)) || die "internal: ran $STEP scenarios, expected $STEPS"

# ------------------------------------------------------------ verification --
log "verifying the protocols with tshark $(dpkg-query -W -f='${Version}' tshark)"
# check FILE MIN-COUNT DISPLAY-FILTER [tshark -d ...]: at least MIN-COUNT packets match
# check_n FILE COUNT DISPLAY-FILTER [tshark -d ...]: exactly COUNT packets match
check_range() {
  local f=$1 min=$2 max=$3 filter=$4; shift 4
  local n
  n=$(tshark -n -r "$OUT/$f" "$@" -Y "$filter" 2>/dev/null | wc -l)
  if ((n >= min && (max < 0 || n <= max))); then printf '  ok   %-26s %4d x %s\n' "$f" "$n" "$filter"
  else printf '  FAIL %-26s %4d x %s\n' "$f" "$n" "$filter"; FAILED=1; fi
}
check() { local f=$1 min=$2; shift 2; check_range "$f" "$min" -1 "$@"; }
check_n() { local f=$1 n=$2; shift 2; check_range "$f" "$n" "$n" "$@"; }
FAILED=0
check ftp-passive-upload.pcap 1 'ftp.request.command == "STOR"'
check ftp-passive-upload.pcap 1 'ftp.request.command == "LIST"'
check ftp-passive-upload.pcap 2 'ftp.response.code == 227'          # PASV
check_n ftp-passive-upload.pcap 0 'ftp.request.command == "EPSV"'
check ftp-passive-upload.pcap 1 'ftp-data'
check_n ftp-epsv-upload.pcap 1 'ftp.response.code == 229'           # EPSV
check_n ftp-epsv-upload.pcap 0 'ftp.request.command == "PASV"'
check_n ftp-epsv-upload.pcap 1 'ftp.request.command == "STOR"'
check ftp-epsv-upload.pcap 1 'ftp-data'
check_n ftp-multi-stor.pcap 1 'tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.dstport == 21'
check_n ftp-multi-stor.pcap 6 'ftp.request.command == "STOR"'
check_n ftp-multi-stor.pcap 6 'ftp.response.code == 229'
check_n ftp-multi-stor.pcap 6 'ftp.response.code == 226'            # transfer complete
check ftp-active-download.pcap 1 'ftp.request.command == "PORT"'
check ftp-active-download.pcap 1 'ftp.request.command == "EPRT"'
check ftp-active-download.pcap 2 'ftp.request.command == "RETR"'
check ftp-active-download.pcap 1 'ftp-data'
check_n ftp-eprt-ipv6.pcap 0 'ip'
check_n ftp-eprt-ipv6.pcap 1 'ftp.request.command == "EPRT" && ftp.request.arg contains "|2|"'
check_n ftp-eprt-ipv6.pcap 1 'ftp.request.command == "STOR"'
check_n ftp-eprt-ipv6.pcap 1 'tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.srcport == 20'
check ftp-eprt-ipv6.pcap 1 'ftp-data'
check ftp-port80.pcap 1 'ftp.request.command == "STOR"' -d tcp.port==80,ftp
check ftp-port80.pcap 1 'ftp.request.command == "PASV"' -d tcp.port==80,ftp
check tftp-rrq-wrq.pcap 1 'tftp.opcode == 1'
check tftp-rrq-wrq.pcap 1 'tftp.opcode == 2'
check tftp-rrq-wrq.pcap 1 'tftp.option.name == "blksize"'
check tftp-rrq-wrq.pcap 100 'tftp.opcode == 3'
check_n tftp-options.pcap 1 'tftp.opcode == 1'
check_n tftp-options.pcap 1 'tftp.opcode == 2'
check_n tftp-options.pcap 2 'tftp.opcode == 6'                      # OACK
check_n tftp-options.pcap 2 'tftp.opcode == 6 && tftp.option.name == "blksize" && tftp.option.value == "1024"'
check_n tftp-options.pcap 2 'tftp.opcode == 6 && tftp.option.name == "windowsize" && tftp.option.value == "4"'
check_n tftp-options.pcap 2 'tftp.opcode == 6 && tftp.option.name == "tsize"'
check tftp-options.pcap 400 'tftp.opcode == 3'
check tftp-port53.pcap 1 'tftp.opcode == 2' -d udp.port==53,tftp
check tftp-port53.pcap 100 'tftp.opcode == 3' -d udp.port==53,tftp
check smb-upload.pcap 1 'smb2.cmd == 9'                        # WRITE
check smb-upload.pcap 1 'smb2.cmd == 14'                       # QUERY_DIRECTORY (ls)
check smb-port443.pcap 1 'smb2.cmd == 9' -d tcp.port==443,nbss
check smb3-encrypted.pcap 10 'smb2.header.transform.msg_size'  # \xfdSMB transform
check_n smb1-port139.pcap 1 'nbss.type == 0x81'                # NBSS session request
check_n smb1-port139.pcap 1 'nbss.type == 0x82'                # positive session response
check smb1-port139.pcap 1 'smb.dialect.name == "NT LM 0.12"'
check smb1-port139.pcap 1 'smb.cmd == 0x2f'                    # WRITE_ANDX
check smb1-port139.pcap 1 'smb.cmd == 0x2e'                    # READ_ANDX
check_n smb1-port139.pcap 0 'smb2'
check smb-internal.pcap 1 'smb2.cmd == 9 && ip.dst == 10.77.0.10'
check_n smb-internal.pcap 0 'ip.addr == 198.51.100.10'
check http-port21.pcap 1 'http.request.method == "GET"' -d tcp.port==21,http
check http-port80.pcap 1 'http.request.method == "GET"'
check http-port80.pcap 1 'http.request.method == "POST"'
check_n http-upload.pcap 1 'http.request.method == "POST" && tcp.dstport == 8080'
check_n http-upload.pcap 1 'http.response.code == 200'
# the transform header magic, by bytes, independent of the dissector
if grep -c $'\xfdSMB' "$OUT/smb3-encrypted.pcap" >/dev/null; then
  echo "  ok   smb3-encrypted.pcap contains \\xfdSMB bytes"
else echo "  FAIL smb3-encrypted.pcap has no \\xfdSMB bytes"; FAILED=1; fi
if grep -c $'\xfeSMB' "$OUT/smb3-encrypted.pcap" >/dev/null; then
  echo "  note smb3-encrypted.pcap has cleartext \\xfeSMB (negotiate/session setup happen before encryption)"
fi

# -------------------------------------------------------- expected.json -----
log "writing $OUT/expected.json (payload bytes measured with tshark)"
"$PY" - "$OUT" "$WORK/files.tsv" >"$OUT/expected.json" <<'EOF'
import ipaddress, json, subprocess, sys
out, files_tsv = sys.argv[1], sys.argv[2]
SCEN = {  # name: (decode-as args, alerts)
    "ftp-passive-upload.pcap":  ([], [1173001]),
    "ftp-epsv-upload.pcap":     ([], [1173001]),
    "ftp-multi-stor.pcap":      ([], [1173001]),
    "ftp-active-download.pcap": ([], []),
    "ftp-eprt-ipv6.pcap":       ([], [1173001]),
    "ftp-port80.pcap":          (["-d", "tcp.port==80,ftp"], [1173001, 1173002]),
    "tftp-rrq-wrq.pcap":        ([], [1173001]),
    "tftp-options.pcap":        ([], [1173001]),
    "tftp-port53.pcap":         (["-d", "udp.port==53,tftp"], [1173001, 1173002]),
    "smb-upload.pcap":          ([], [1173001]),
    "smb-port443.pcap":         (["-d", "tcp.port==443,nbss"], [1173001, 1173002]),
    "smb3-encrypted.pcap":      ([], [1173001]),
    "smb1-port139.pcap":        ([], [1173001]),
    "smb-internal.pcap":        ([], []),
    "http-port21.pcap":         (["-d", "tcp.port==21,http"], [1173003]),
    "http-port80.pcap":         ([], []),
    "http-upload.pcap":         ([], []),
}
# The sensor's default internal networks (RFC 1918, RFC 6598, IPv6 ULA).
INTERNAL = [ipaddress.ip_network(n) for n in
            ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")]
F = ["frame.number", "ip.proto", "ip.src", "ip.dst", "ipv6.nxt", "ipv6.src", "ipv6.dst",
     "tcp.stream", "tcp.srcport", "tcp.dstport", "tcp.flags.syn", "tcp.flags.ack", "tcp.seq",
     "tcp.len", "udp.srcport", "udp.dstport", "udp.length"]

def tshark(path, extra, fields, filt=None):
    cmd = ["tshark", "-n", "-r", path, *extra, "-T", "fields", "-E", "separator=/t"]
    if filt: cmd += ["-Y", filt]
    for f in fields: cmd += ["-e", f]
    rows = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()
    return [[c.split(",")[0] for c in r.split("\t")] for r in rows]

def internal(ip):
    a = ipaddress.ip_address(ip)
    return any(a in n for n in INTERNAL)

def direction(cli_ip, srv_ip):
    return {(True, False): "outbound", (False, True): "inbound",
            (True, True): "internal", (False, False): "external"}[(internal(cli_ip), internal(srv_ip))]

def app_proto(name, srv_port):
    # By the scenario's protocol. FTP: the control connection goes to the FTP
    # server's port (21, or 80 in ftp-port80); every other connection in an
    # ftp-* capture is a data connection (passive port, or the client's port
    # for active mode). TFTP: request and transfer flows alike.
    proto = name.split("-")[0]
    if proto == "ftp":
        return "ftp" if srv_port in (21, 80) else "ftp-data"
    return "smb" if proto.startswith("smb") else proto

files = {}
for line in open(files_tsv):
    pcap, fname, size, way, proto, sha256 = line.rstrip("\n").split("\t")
    files.setdefault(pcap, []).append(
        {"name": fname, "bytes": int(size), "direction": way, "protocol": proto,
         "sha256": sha256})

result = {}
for name, (extra, alerts) in SCEN.items():
    path = f"{out}/{name}"
    flows, order = {}, []
    for r in tshark(path, extra, F):
        d = dict(zip(F, r))
        l4 = d["ip.proto"] or d["ipv6.nxt"]
        src, dst = d["ip.src"] or d["ipv6.src"], d["ip.dst"] or d["ipv6.dst"]
        if l4 == "6":
            key = ("tcp", d["tcp.stream"])
            sp, dp = int(d["tcp.srcport"]), int(d["tcp.dstport"])
            ln = int(d["tcp.len"] or 0)
        elif l4 == "17":
            sp, dp = int(d["udp.srcport"]), int(d["udp.dstport"])
            key = ("udp",) + tuple(sorted([(src, sp), (dst, dp)]))
            ln = int(d["udp.length"]) - 8
        else:
            continue
        if key not in flows:
            # TCP: client = sender of the first SYN. UDP (TFTP): client = the
            # internal requester.
            if key[0] == "tcp":
                cli = (src, sp) if d["tcp.flags.syn"] in ("1", "True") and d["tcp.flags.ack"] in ("0", "False") else (dst, dp)
            else:
                cli = (src, sp) if internal(src) else (dst, dp)
            flows[key] = {"cli": cli, "srv": (dst, dp) if cli == (src, sp) else (src, sp),
                          "c2s": 0, "s2c": 0, "end": {"c2s": 0, "s2c": 0}, "pkts": 0}
            order.append(key)
        fl = flows[key]
        fl["pkts"] += 1
        way = "c2s" if (src, sp) == fl["cli"] else "s2c"
        fl[way] += ln
        if key[0] == "tcp" and ln:
            # relative seq: first payload byte is 1 -> seq-range payload count
            fl["end"][way] = max(fl["end"][way], int(d["tcp.seq"]) + ln - 1)
    retrans = {r[0] for r in tshark(path, extra, ["tcp.stream"], "tcp.analysis.retransmission")}
    out_flows = []
    for key in order:
        fl = flows[key]
        e = {"transport": key[0],
             "client_ip": fl["cli"][0], "client_port": fl["cli"][1],
             "server_ip": fl["srv"][0], "server_port": fl["srv"][1],
             "app_proto": app_proto(name, fl["srv"][1]),
             "direction": direction(fl["cli"][0], fl["srv"][0]),
             "packets": fl["pkts"]}
        if key[0] == "tcp":
            e["payload_bytes_c2s"], e["payload_bytes_s2c"] = fl["end"]["c2s"], fl["end"]["s2c"]
            if key[1] in retrans or fl["c2s"] != fl["end"]["c2s"] or fl["s2c"] != fl["end"]["s2c"]:
                e["retransmissions"] = True
                e["payload_bytes_c2s_with_retransmissions"] = fl["c2s"]
                e["payload_bytes_s2c_with_retransmissions"] = fl["s2c"]
        else:
            e["payload_bytes_c2s"], e["payload_bytes_s2c"] = fl["c2s"], fl["s2c"]
        if e["direction"] == "inbound":
            e["note"] = "connection opened by the external server (active-mode FTP data)"
        out_flows.append(e)
    # "files": what the FTP, TFTP and SMB clients transferred (HTTP bodies are
    # not listed: HTTP is not one of the watched file-transfer protocols).
    result[name] = {"flows": out_flows, "alerts": alerts, "files": files.get(name, [])}
unknown = set(files) - set(SCEN)
if unknown:
    sys.exit(f"files.tsv names captures missing from SCEN: {sorted(unknown)}")
json.dump(result, sys.stdout, indent=2)
print()
EOF

# ------------------------------------------------------------------ summary --
log "software used"
dpkg-query -W vsftpd tftpd-hpa tftp-hpa atftp samba smbclient curl python3 tcpdump tshark | sed 's/^/  /'
printf '  atftpd\t%s (unpacked from its package, not installed)\n' "$ATFTPD_VERSION"
log "captures in $OUT"
printf '  %-26s %10s %8s\n' FILE BYTES PACKETS
for f in ftp-passive-upload ftp-epsv-upload ftp-multi-stor ftp-active-download ftp-eprt-ipv6 \
         ftp-port80 tftp-rrq-wrq tftp-options tftp-port53 smb-upload smb-port443 smb3-encrypted \
         smb1-port139 smb-internal http-port21 http-port80 http-upload; do
  printf '  %-26s %10s %8s\n' "$f.pcap" "$(stat -c %s "$OUT/$f.pcap")" \
    "$(tcpdump -nr "$OUT/$f.pcap" 2>/dev/null | wc -l)"
done
((FAILED == 0)) || die "some protocol checks failed (see above)"
echo; echo "done."
