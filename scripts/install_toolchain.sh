#!/usr/bin/env bash
# Install the Arm cross toolchain, QEMU and CMake from Debian when any piece is missing (lean: no recommends).
# CMake: the exported projects' CMakeLists.txt is tested too (tests/test_cmake.py).
set -euo pipefail
missing=()
command -v arm-none-eabi-gcc >/dev/null || missing+=(gcc-arm-none-eabi)
[ -e /usr/lib/arm-none-eabi/newlib/libc.a ] || [ -e /usr/lib/arm-none-eabi/lib/libc.a ] || missing+=(libnewlib-arm-none-eabi)
command -v qemu-system-arm >/dev/null || missing+=(qemu-system-arm)
command -v cmake >/dev/null || missing+=(cmake)
if [ ${#missing[@]} -eq 0 ]; then
  echo "toolchain present: $(arm-none-eabi-gcc -dumpversion) / $(qemu-system-arm --version | head -n1) / $(cmake --version | head -n1)"
  exit 0
fi
echo "installing: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "error: need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 2; }
  SUDO=sudo
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
echo "toolchain installed: $(arm-none-eabi-gcc -dumpversion) / $(qemu-system-arm --version | head -n1)"
