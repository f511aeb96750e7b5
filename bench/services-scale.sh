#!/usr/bin/env bash
# The service proxy at 100, 1k, 10k and 30k Services × 10 endpoints, in throwaway namespaces:
# full sync, one added Service, one changed endpoint, connect latency through a ClusterIP
# (ratio to N=100), requests per second through the ClusterIP against straight to the pod, and
# memory. Needs root. Takes a few minutes (most of it nft loading the largest rulesets).
# Flags go to the driver: --sizes 100,1000,10000,30000 --connects 2000 --seconds 3.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps
podnet_install_deps
cargo build --release --locked -p podnet-bench --bin services-scale
target/release/services-scale "$@"
