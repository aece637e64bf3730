#!/usr/bin/env bash
# Installs the Debian packages the local real node needs (deno task cluster and
# the tests on the real node): runc, iptables (nf_tables backend), nftables,
# the CNI plugins (bridge, host-local, loopback), conntrack and iproute2.
# Idempotent: does nothing when every command is there. Needs root (apt-get).
set -euo pipefail
need=()
[[ -x /usr/sbin/runc ]] || need+=(runc)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v nft >/dev/null 2>&1 || need+=(nftables)
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] || need+=(containernetworking-plugins)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if ((${#need[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "scripts/install_node_packages.sh: run as root to apt-get install ${need[*]}" >&2
  exit 1
fi
echo "scripts/install_node_packages.sh: installing Debian's ${need[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
