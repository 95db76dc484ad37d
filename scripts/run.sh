#!/usr/bin/env bash
# Castor's main job: set up (packages + Release build), then run a single-host cluster
# serving a replicated volume on the embedded store (scripts/cluster-demo.sh: castor-control
# on SQLite, four engines, a 3-replica volume created, published, written and verified,
# an engine killed under a verifying writer and the volume healed by the control plane),
# then a tour of one engine's front ends by hand (scripts/engine-tour.sh: bdevs,
# benchmarks, a pool, NVMe/TCP, NBD and iSCSI exports read by libnbd and libiscsi).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh release
echo "=================== the cluster: castor-control + four engines, a 3-replica volume that heals itself"
scripts/cluster-demo.sh build/release
echo
echo "=================== one engine by hand: bdevs, a pool, NVMe/TCP, NBD, iSCSI"
scripts/engine-tour.sh build/release
