#!/usr/bin/env bash
# Installs the Debian tools the tests and the demo use, when missing:
#   yanglint (libyang2-tools), tshark, pmacct (pmacctd/sfacctd), iproute2 (ip netns, tc),
#   tcpdump (the capture benchmark's peer), tcpreplay (its traffic), Open vSwitch (a real ERSPAN exporter:
#   its userspace datapath runs inside a test's network namespace; nothing is started system-wide).
#   lldpd (lldpd/lldpcli: the topology tests run one per network namespace).
# Needs root and apt-get; elsewhere it says what is missing and carries on,
# and the tests that need a missing tool skip with that reason.
set -u
need=()
command -v yanglint >/dev/null 2>&1 || need+=(libyang2-tools)
command -v tshark   >/dev/null 2>&1 || need+=(tshark)
command -v sfacctd  >/dev/null 2>&1 || need+=(pmacct)
command -v ip       >/dev/null 2>&1 || need+=(iproute2)
command -v tcpdump  >/dev/null 2>&1 || need+=(tcpdump)
command -v tcpreplay >/dev/null 2>&1 || need+=(tcpreplay)
command -v ovs-vswitchd >/dev/null 2>&1 || need+=(openvswitch-switch)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v lldpd    >/dev/null 2>&1 || need+=(lldpd)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: missing ${need[*]} (needs root and apt-get); related tests will skip" >&2
  exit 0
fi
echo "install-system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
apt-get update -qq >/dev/null 2>&1 || apt-get update
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || apt-get install -y --no-install-recommends "${need[@]}"
