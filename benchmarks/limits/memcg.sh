#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs build/benchmarks/fill_sandboxes in a fresh memory cgroup, as root:
#   benchmarks/limits/memcg.sh LIMIT_MIB kill|refuse [fill_sandboxes options...]
# kill: the kernel's default at the limit (the OOM killer). refuse: the cgroup's OOM killer off
# (cgroup v1 only), so that the kernel refuses the allocation instead; a fault of the host's own
# then waits in the kernel for memory and may hang there: end it with kill -9 from outside.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
usage="usage: memcg.sh LIMIT_MIB kill|refuse [fill_sandboxes options...]"
(($# >= 2)) || { echo "$usage" >&2; exit 2; }
limit_mib=$1
mode=$2
shift 2
[[ $limit_mib =~ ^[1-9][0-9]*$ ]] || { echo "error: LIMIT_MIB must be a number of MiB. $usage" >&2; exit 2; }
[[ $mode == kill || $mode == refuse ]] || { echo "error: the mode is kill or refuse. $usage" >&2; exit 2; }
fill=${FILL:-build/benchmarks/fill_sandboxes}
[[ -x $fill ]] || { echo "error: $fill is missing; build the project first" >&2; exit 2; }

if [[ -d /sys/fs/cgroup/memory ]]; then
  cg=/sys/fs/cgroup/memory/hl-fill-$$
  limit_file=memory.limit_in_bytes
elif [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
  [[ $mode == kill ]] || { echo "error: cgroup v2 cannot turn its OOM killer off; use kill" >&2; exit 2; }
  cg=/sys/fs/cgroup/hl-fill-$$
  limit_file=memory.max
else
  echo "error: no memory cgroup hierarchy under /sys/fs/cgroup" >&2
  exit 2
fi
mkdir "$cg"
trap 'rmdir "$cg" || echo "warning: could not remove $cg" >&2' EXIT
echo $((limit_mib << 20)) > "$cg/$limit_file"
if [[ $mode == refuse ]]; then echo 1 > "$cg/memory.oom_control"; fi

status=0
(echo "$BASHPID" > "$cg/cgroup.procs" && exec "$fill" "$@") || status=$?
echo "== fill_sandboxes exited with $status in a $limit_mib MiB cgroup ($mode)"
if [[ $mode == kill ]] && ((status == 137)); then
  dmesg 2>/dev/null | grep -i 'memory cgroup out of memory' | tail -1 || echo "(dmesg shows no OOM kill)"
fi
