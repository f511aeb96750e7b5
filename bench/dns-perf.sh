#!/usr/bin/env bash
# Cluster DNS: dnsperf against podnet's DNS server and against NSD serving the same records, on
# 127.0.0.1, in the same run: queries per second per core, latency, both as podnet / NSD ratios,
# and memory per 1,000 Services. The servers run on CPU 0 (this driver, which hosts podnet's
# server, and NSD), dnsperf on CPU 1. Needs root for apt-get. Takes about 2 minutes.
# Flags go to the driver: --services 1000 --seconds 10 --runs 2 --clients 4 --rate 20000
# --memory-services 10000.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for p in nsd dnsperf util-linux; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
cargo build --release --locked -p podnet-bench --bin dns-perf
exec taskset -c 0 target/release/dns-perf "$@"
