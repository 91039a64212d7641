#!/usr/bin/env bash
# Builds the initramfs of the CAN test VM: busybox, the kernel's CAN modules, the test binary and
# the shared libraries it needs. No root needed (cpio from a file list).
# Usage: build-initramfs.sh TEST_BINARY KERNEL_VERSION OUTPUT.cpio.gz
set -euo pipefail
binary=$1 kver=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,modules,proc,sys,dev,tmp}
cp "$(command -v busybox)" "$root/bin/busybox"
file "$root/bin/busybox" 2>/dev/null | grep -q "statically linked" || ldd "$root/bin/busybox" 2>&1 | grep -q "not a dynamic" \
  || { echo "busybox is not static: install busybox-static" >&2; exit 1; }
cp "$here/init" "$root/init"
chmod +x "$root/init"
moddir=/lib/modules/$kver/kernel
for m in net/can/can net/can/can-raw drivers/net/can/dev/can-dev drivers/net/can/vcan; do
  name=$(basename "$m")
  if [ -f "$moddir/$m.ko" ]; then cp "$moddir/$m.ko" "$root/modules/$name.ko"
  elif [ -f "$moddir/$m.ko.xz" ]; then xz -dc "$moddir/$m.ko.xz" > "$root/modules/$name.ko"
  elif [ -f "$moddir/$m.ko.zst" ]; then zstd -qdc "$moddir/$m.ko.zst" > "$root/modules/$name.ko"
  else echo "module $m not found under $moddir" >&2; exit 1
  fi
done
# The test binary, stripped (debug builds are large), and its shared libraries at their paths.
cp "$binary" "$root/bin/can_socket"
strip "$root/bin/can_socket" 2>/dev/null || true
# iproute2's ip, if the host has it, for `ip link add vcan0 type vcan`.
iproute=$(command -v ip || true)
extra=()
if [ -n "$iproute" ] && ldd "$iproute" >/dev/null 2>&1; then
  mkdir -p "$root/sbin"
  cp "$iproute" "$root/sbin/ip"
  extra=("$iproute")
fi
for lib in $(ldd "$binary" "${extra[@]}" | grep -o '/[^ ]*' | grep -v ':$' | sort -u); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out"
echo "initramfs: $out ($(du -h "$out" | cut -f1))"
