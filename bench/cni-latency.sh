#!/usr/bin/env bash
# CNI ADD/DEL latency of podnet-cni beside the reference bridge + host-local plugins.
# Needs root (throwaway network namespaces only). Prints the table with ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps
podnet_install_deps
cargo build --release --locked --bins
# The release plugin is linked statically, like the reference plugins: no dynamic loader at start.
# Not position-independent either: no relocations to apply, fewer pages to copy at each start.
cargo rustc --release --locked -p podnet-cni --bin podnet-cni -- -C target-feature=+crt-static -C relocation-model=static
exec target/release/cni-latency target/release/podnet-cni /usr/lib/cni
