#!/usr/bin/env bash
# The CAN driver on a real kernel CAN stack: boots Debian's kernel (qemu, TCG: no KVM needed) with
# an initramfs holding the CAN modules and the `can_socket` test binary, which replays the vector
# frames onto vcan0, runs the driver over SocketCAN and checks the battery, the keep-alive frames
# and staleness. Prints the VM console and exits 0 only on the PASS marker.
# Needs: qemu-system-x86_64, a /boot/vmlinuz-* with /lib/modules of the same version (Debian
# linux-image-amd64), busybox-static, cpio. Exit 77 when they are missing (skip).
set -euo pipefail
cd "$(dirname "$0")/../.."
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1 || true)
kver=${kernel#/boot/vmlinuz-}
if ! command -v qemu-system-x86_64 >/dev/null || [ -z "$kernel" ] || [ ! -d "/lib/modules/$kver/kernel/net/can" ] \
   || ! command -v busybox >/dev/null || ! command -v cpio >/dev/null; then
  echo "SKIP: the CAN VM test needs qemu-system-x86_64, a kernel in /boot with its CAN modules, busybox-static and cpio" >&2
  exit 77
fi
binary=$(cargo test --locked --test can_socket --no-run --message-format=json 2>/dev/null \
  | grep '"name":"can_socket"' | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
[ -x "$binary" ] || { echo "cannot build the can_socket test binary" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tests/vm/build-initramfs.sh "$binary" "$kver" "$work/initramfs.cpio.gz"
# TCG by default: /dev/kvm may exist without working (nested virtualisation). CAN_VM_ACCEL=kvm to try.
accel=${CAN_VM_ACCEL:-tcg}
echo "booting $kernel ($accel)"
start=$(date +%s)
timeout 120 qemu-system-x86_64 -accel "$accel" -m 512 -smp 2 -nographic -no-reboot \
  -kernel "$kernel" -initrd "$work/initramfs.cpio.gz" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3" | tee "$work/console.log" || true
echo "VM run took $(( $(date +%s) - start )) s"
if grep -q "BMS_BRIDGE_VM_RESULT: PASS" "$work/console.log"; then
  echo "CAN VM test: PASS"
else
  echo "CAN VM test: FAIL (no PASS marker in the console output above)" >&2
  exit 1
fi
