#!/usr/bin/env bash
# Fill the git-ignored folders that bench/gpu_check.sh needs on a bare GPU machine (no internet
# there, and ../shared/data does not travel). Run here, from the repo root, before the run:
#
#   bash bench/gpu_prepare.sh            # then carry: ["gpu_data", "gpu_wheels"]
#
# gpu_data/   MNIST (all four files, 12 MB: the 60k NNK benchmark), the Fashion-MNIST test files
#             (4.4 MB: the OOD command's out set) and Planetoid Cora (0.6 MB: thermo gnn); whole
#             files, since leafscope verifies their checksums.
# gpu_wheels/ the packages leafscope needs that the machine's image lacks (faiss-cpu, PyWavelets,
#             Dask with its missing dependencies), CPython 3.12 x86-64 wheels (~26 MB).
# Together about 43 MB of the 64 MiB that may travel.
set -euo pipefail

SRC=${GPU_PREPARE_DATA:-/work/shared/data}
PY=${GPU_PREPARE_PYTHON:-python3}
cd "$(git rev-parse --show-toplevel)"

mkdir -p gpu_data/mnist gpu_data/fashion-mnist gpu_data/planetoid gpu_wheels
cp -u "$SRC"/mnist/*-ubyte.gz gpu_data/mnist/
cp -u "$SRC"/fashion-mnist/t10k-*-ubyte.gz gpu_data/fashion-mnist/
cp -u "$SRC"/planetoid/ind.cora.* gpu_data/planetoid/
chmod -R u+w gpu_data

# The versions of the development environment; numpy, torch, scipy, pyarrow, ... are on the image.
WHEELS=(
  faiss-cpu==1.15.1 PyWavelets==1.9.0
  dask==2026.8.0 distributed==2026.8.0 partd==1.4.2 locket==1.0.0 tblib==3.2.2
  tornado==6.6.1 zict==3.0.0
)
have=1
for spec in "${WHEELS[@]}"; do
  name=${spec%%==*}; version=${spec##*==}
  stem=$(echo "$name" | tr 'A-Z-' 'a-z_')
  ls gpu_wheels/ 2>/dev/null | tr 'A-Z' 'a-z' | grep -q "^${stem}-${version}-" || have=0
done
if [ "$have" = 0 ]; then
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d gpu_wheels "${WHEELS[@]}"
fi
du -sh gpu_data gpu_wheels
echo "ready: carry [\"gpu_data\", \"gpu_wheels\"]; run: bash bench/gpu_check.sh"
