#!/usr/bin/env bash
# Installs what building and testing Flotilla needs on Debian 12, skipping what is there.
# Sourced by up.sh and test.sh; safe to run again.
set -euo pipefail

need_pkgs=()
for pkg in protobuf-compiler libclang-dev librocksdb-dev librocksdb7.8 containernetworking-plugins containerd runc busybox-static etcd-server iptables; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${need_pkgs[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  # apt's temp dir occasionally vanishes under parallel use; one retry.
  $sudo_cmd apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need_pkgs[@]}" ||
    $sudo_cmd apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need_pkgs[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "Rust is missing: install it with rustup (https://rustup.rs), then run this again." >&2
  exit 1
fi

# One build directory shared by every checkout on this machine: rebuilds stay incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/flotilla/target}"
mkdir -p "$CARGO_TARGET_DIR" 2>/dev/null || export CARGO_TARGET_DIR="$HOME/.cache/flotilla/target"

# The end-to-end watch test also drives the Python Kubernetes client.
python3 -c "import kubernetes" 2>/dev/null || pip install -q kubernetes || echo "note: Python kubernetes client not installed; its test part is skipped" >&2
