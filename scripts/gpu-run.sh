#!/usr/bin/env bash
# On a GPU box prepared by scripts/gpu-pack.sh (only the repo with .gpu/ and dist/ present):
# installs the Vulkan loader, unpacks node and Dawn into /tmp, then runs the given command with
# `node` on PATH and ARL_DAWN_NODE set. Recipe from ../shared/docs/gpu.md (NVIDIA, Vulkan).
set -euo pipefail
cd "$(dirname "$0")/.."
for f in .gpu/*.deb; do dpkg -x "$f" /; done
ldconfig
mkdir -p /tmp/arl-gpu
xz -dc .gpu/node.xz > /tmp/arl-gpu/node && chmod +x /tmp/arl-gpu/node
xz -dc .gpu/dawn.node.xz > /tmp/arl-gpu/dawn.node
export PATH=/tmp/arl-gpu:$PATH ARL_DAWN_NODE=/tmp/arl-gpu/dawn.node
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$nvidia_icd" ] && export VK_DRIVER_FILES=$nvidia_icd
exec "$@"
