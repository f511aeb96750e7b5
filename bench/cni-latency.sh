#!/usr/bin/env bash
# CNI ADD/DEL latency of podnet-cni beside the reference bridge + host-local plugins.
# Needs root (throwaway network namespaces only). Prints the table with ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps
podnet_install_deps
cargo build --release --locked --bins
exec target/release/cni-latency target/release/podnet-cni /usr/lib/cni
