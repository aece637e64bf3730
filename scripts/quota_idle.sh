#!/usr/bin/env bash
# How much of the node a CFS quota below a thread's reach leaves idle (cgroup v1, as root):
# two single-thread busy loops at the lowest CPU weight (cpu.shares 2), each under QUOTA_US
# per 100 ms (-1: none), next to a thread busy 2 ms of every 10 ms at the default weight.
# Prints the CPU each got and the node's idle CPU over SECONDS (default 8), in millicores.
# Usage: sudo bash scripts/quota_idle.sh QUOTA_US [SECONDS]
set -euo pipefail
quota=${1:?usage: quota_idle.sh QUOTA_US [SECONDS]}
seconds=${2:-8}
[[ "$quota" =~ ^(-1|[0-9]+)$ ]] || { echo "quota_idle: QUOTA_US must be -1 or a whole number, got \"$quota\"" >&2; exit 2; }
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "quota_idle: SECONDS must be a positive whole number, got \"$seconds\"" >&2; exit 2; }
cpu=/sys/fs/cgroup/cpu acct=/sys/fs/cgroup/cpuacct
[[ -f $cpu/cpu.shares && -f $acct/cpuacct.usage ]] || { echo "quota_idle: needs cgroup v1 cpu and cpuacct at $cpu and $acct" >&2; exit 1; }
name="mbcas-quota-idle-$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for d in a b w; do rmdir "$cpu/$name/$d" "$acct/$name/$d" 2>/dev/null || true; done
  rmdir "$cpu/$name" "$acct/$name" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for d in a b w; do mkdir -p "$cpu/$name/$d" "$acct/$name/$d"; done
for d in a b; do
  echo 2 > "$cpu/$name/$d/cpu.shares"
  echo "$quota" > "$cpu/$name/$d/cpu.cfs_quota_us"
done
start() { # cgroup, command...
  (echo "$BASHPID" > "$cpu/$name/$1/cgroup.procs" && echo "$BASHPID" > "$acct/$name/$1/cgroup.procs" && exec "${@:2}") &
  pids+=($!)
}
start a sh -c 'while :; do :; done'
start b sh -c 'while :; do :; done'
start w python3 -c '
import time
while True:
    t = time.monotonic()
    while time.monotonic() - t < 0.002: pass
    time.sleep(0.008)'
sleep 2
usage() { cat "$acct/$name/$1/cpuacct.usage"; }
idle() { awk '/^cpu /{print $5}' /proc/stat; }
a0=$(usage a) b0=$(usage b) w0=$(usage w) i0=$(idle)
sleep "$seconds"
a1=$(usage a) b1=$(usage b) w1=$(usage w) i1=$(idle)
hz=$(getconf CLK_TCK)
echo "quota ${quota}us/100ms: job a $(((a1 - a0) / seconds / 1000000))m, job b $(((b1 - b0) / seconds / 1000000))m," \
  "20% thread $(((w1 - w0) / seconds / 1000000))m, node idle $(((i1 - i0) * 1000 / hz / seconds))m"
