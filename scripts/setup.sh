#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: apt toolchains + QEMU, then the Python package.
# Prints each step; skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# libnewlib-arm-none-eabi: libm/libc for the fp32 comparison builds only (integer builds are freestanding).
APT_PACKAGES=(gcc-arm-none-eabi gcc-riscv64-unknown-elf qemu-system-arm qemu-system-misc
              libnewlib-arm-none-eabi dataset-fashion-mnist)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "[setup] apt-get install ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "[setup] apt packages present: ${APT_PACKAGES[*]}"
fi

PYTHON=${PYTHON:-python3}
stamp=.cache/setup-pip.stamp
mkdir -p .cache
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "[setup] pip install -e .[dev,train,peers]"
    "$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[dev,train,peers]"
    touch "$stamp"
else
    echo "[setup] python packages up to date (pyproject.toml unchanged since last install)"
fi
echo "[setup] QEMU instruction-count plugin (tools/qemu_plugin -> .cache/qemu_plugin)"
make -s -C tools/qemu_plugin OUT="$PWD/.cache/qemu_plugin"
echo "[setup] done"
