#!/usr/bin/env bash
# Packs what a bare GPU box needs to run arl with --backend webgpu into .gpu/ (git-ignored):
# the node binary (xz), Dawn's dawn.node (xz), the bundled CLI (npm run build) and the Vulkan
# loader + GL vendor libraries as Debian packages, and data/prepared/brown (carry it for the training stages). Then, on
# the GPU box, from the repo root:
#   bash scripts/gpu-run.sh node dist/cli/arl.mjs bench --backend webgpu ...
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu
npm run --silent build
[ -f .gpu/node.xz ] || xz -T0 -c "$(command -v node)" > .gpu/node.xz
[ -f .gpu/dawn.node.xz ] || xz -T0 -c node_modules/webgpu/dist/linux-x64/dawn.node > .gpu/dawn.node.xz
if ! ls .gpu/libvulkan1_*.deb >/dev/null 2>&1; then
  (cd .gpu && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
# The training stages' corpus, prepared here: preparing needs node_modules, which the GPU box has not. Carry it too.
[ -f data/prepared/brown/meta.json ] || node dist/cli/arl.mjs prepare > /dev/null
du -sh .gpu dist data/prepared/brown
