#!/usr/bin/env bash
# NetworkPolicy at 10, 1k and 10k policies over 1000 pods on one node, in throwaway namespaces:
# full programming (compile + render + nft load), one added policy and one relabelled pod at 1k
# (the agent's whole sync), TCP connect latency client → server pod with each table installed
# (ratio to 10 policies, and to a node without the table), and memory. Needs root and
# br_netfilter (same-node pod traffic is bridged). Takes a few minutes.
# Flags go to the driver: --sizes 10,1000,10000 --connects 2000 --repeats 5.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps
podnet_install_deps
cargo build --release --locked -p podnet-bench --bin policy-scale
target/release/policy-scale "$@"
