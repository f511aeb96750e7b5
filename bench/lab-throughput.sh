#!/usr/bin/env bash
# iperf3 TCP throughput between pods (same node; cross-node over host-gw and over vxlan) beside
# the raw underlay between the same nodes, in the same lab run, printed as ratios; then the time
# from `apply` of a 100-replica Deployment to all pods Running, and each agent's memory.
# Needs root (lab namespaces only: no traffic leaves them). Takes about 2 minutes; run it on an
# otherwise idle machine (every path is CPU-bound: the report flags runs other programs disturbed).
# Flags go to the driver: --seconds N (per iperf3 run, 2), --repeats N (5), --pods N (100).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps
podnet_install_deps
if ! command -v iperf3 >/dev/null; then
  echo "installing: iperf3"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends iperf3
fi
cargo build --release --locked -p podnet -p podnet-cni -p podnet-bench
# An interrupt ends the driver before its guards bring the labs down: do it here instead.
trap 'target/release/lab-throughput --cleanup; exit 130' INT TERM
target/release/lab-throughput "$@"
