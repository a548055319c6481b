#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs build/benchmarks/fill_sandboxes in a fresh memory cgroup, as root:
#   benchmarks/limits/memcg.sh LIMIT_MIB [kill|refuse] [fill_sandboxes options...]
# kill: the kernel's default at the limit (the OOM killer). refuse: the cgroup's OOM killer off
# (cgroup v1 only), so that the kernel refuses the allocation instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
limit_mib=${1:?usage: memcg.sh LIMIT_MIB [kill|refuse] [fill_sandboxes options...]}
mode=${2:-kill}
shift $(($# >= 2 ? 2 : 1))
fill=${FILL:-build/benchmarks/fill_sandboxes}
if [[ -d /sys/fs/cgroup/memory ]]; then
  cg=/sys/fs/cgroup/memory/hl-fill-$$
  mkdir "$cg"
  echo $((limit_mib << 20)) > "$cg/memory.limit_in_bytes"
  [[ $mode == refuse ]] && echo 1 > "$cg/memory.oom_control"
elif [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
  [[ $mode == refuse ]] && { echo "error: cgroup v2 cannot turn its OOM killer off; use kill" >&2; exit 2; }
  cg=/sys/fs/cgroup/hl-fill-$$
  mkdir "$cg"
  echo $((limit_mib << 20)) > "$cg/memory.max"
else
  echo "error: no memory cgroup hierarchy under /sys/fs/cgroup" >&2
  exit 2
fi
trap 'rmdir "$cg" 2>/dev/null || true' EXIT
status=0
(echo "$BASHPID" > "$cg/cgroup.procs" && exec "$fill" "$@") || status=$?
echo "== fill_sandboxes exited with $status in a $limit_mib MiB cgroup ($mode)"
((status == 137)) && dmesg 2>/dev/null | grep -i 'memory cgroup out of memory' | tail -1
exit 0
