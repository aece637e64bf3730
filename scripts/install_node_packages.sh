#!/usr/bin/env bash
# Installs the Debian packages the local real node needs (deno task cluster and
# the tests on the real node): runc, iptables (nf_tables backend), nftables,
# the CNI plugins (bridge, host-local, loopback), conntrack and iproute2; and
# prometheus, whose promtool and server the tests of
# deploy/components/monitoring run (tests/deploy/monitoring_test.ts,
# tests/cluster/prometheus_e2e_test.ts), without its recommended extras and
# without leaving its service running.
# Idempotent: does nothing when every command is there. Needs root (apt-get).
set -euo pipefail
need=()
[[ -x /usr/sbin/runc ]] || need+=(runc)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v nft >/dev/null 2>&1 || need+=(nftables)
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] || need+=(containernetworking-plugins)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
monitoring=()
[[ -x /usr/bin/promtool && -x /usr/bin/prometheus ]] || monitoring+=(prometheus)
if ((${#need[@]} + ${#monitoring[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "scripts/install_node_packages.sh: run as root to apt-get install ${need[*]} ${monitoring[*]}" >&2
  exit 1
fi
echo "scripts/install_node_packages.sh: installing Debian's ${need[*]} ${monitoring[*]}" >&2
apt-get update -qq
if ((${#need[@]} > 0)); then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi
if ((${#monitoring[@]} > 0)); then
  # Not its recommends: prometheus-node-exporter would be one more daemon.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${monitoring[@]}" >&2
  # The tests start their own prometheus on a free port: where the package's
  # service did start (systemd running, no policy-rc.d forbidding it), stop it.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl disable --now prometheus >&2 || true
  fi
fi
