#!/bin/bash
# Release build for Venus OS: stripped binaries for armv7 hard-float (Cerbo GX, Venus GX, Ekrano GX:
# Cortex-A7) and aarch64 (newer Cerbo GX revisions, Raspberry Pi 5), each needing at most
# GLIBC_2.28 (Venus OS v2.90 and later), and the installable bundle in dist/.
# Route (docs/reference/cross-compile.md): Debian's rustc-web + rust-web-src, -Zbuild-std,
# cargo-zigbuild with zig from PyPI pinning glibc 2.28.
# Every binary is checked: ELF architecture, highest GLIBC_ symbol version, and under qemu-user
# `bms-bridge --version` plus the decode of a JBD vector.
# Usage: scripts/release.sh [--setup]   (--setup installs the toolchain first; needs root)
# Takes a few minutes per target on 2 cores: not part of `cargo test` or .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

ZIG_VERSION=0.17.1
ZIGBUILD_VERSION=0.24.1
MAX_GLIBC=2.28
TARGETS=(armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/cross}"
DIST=dist
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# A JBD basic-info frame (4 cells, 15.6 V, SoC 100 %) from tests/cli.rs.
VECTOR="DD 03 00 1D 06 18 00 00 01 F2 01 F4 00 00 2C 7C 00 00 00 00 00 00 80 64 03 04 03 0B 8B 0B 8A 0B 84 FA 8D 77"

step() { printf '\n== %s\n' "$*"; }
die() { printf 'release: ERROR: %s\n' "$*" >&2; exit 1; }

setup() {
    step "installing the toolchain"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends rustc-web cargo-web rust-web-src \
        qemu-user-static libc6-armhf-cross libc6-arm64-cross binutils file >/dev/null
    python3 -m ziglang version 2>/dev/null | grep -qx "$ZIG_VERSION" || pip install -q "ziglang==$ZIG_VERSION"
    cargo-zigbuild --version 2>/dev/null | grep -q "$ZIGBUILD_VERSION" \
        || cargo install --locked "cargo-zigbuild@$ZIGBUILD_VERSION"
}

[ "${1:-}" = --setup ] && setup

# The cross compiler: Debian's rustc in /usr/bin (rustup's toolchain cannot cross-compile here).
RUSTC=/usr/bin/rustc
CARGO=/usr/bin/cargo
if [ ! -x "$RUSTC" ] || [ ! -x "$CARGO" ]; then
    die "Debian's rustc-web is missing: run scripts/release.sh --setup"
fi
command -v cargo-zigbuild >/dev/null || die "cargo-zigbuild is missing: run scripts/release.sh --setup"
ZIG_DIR=$(python3 -c 'import ziglang, os; print(os.path.dirname(ziglang.__file__))' 2>/dev/null) \
    || die "zig (PyPI ziglang) is missing: run scripts/release.sh --setup"
export PATH="$ZIG_DIR:$PATH"
export RUSTC CARGO RUSTC_BOOTSTRAP=1   # -Zbuild-std on Debian's stable rustc

step "toolchain"
"$RUSTC" -V
"$CARGO" -V
echo "cargo-zigbuild $(cargo-zigbuild --version | awk '{print $2}')"
echo "zig $(python3 -m ziglang version)"
echo "qemu-user-static $(dpkg-query -W -f='${Version}' qemu-user-static 2>/dev/null || echo '?')"
echo "rust-web-src $(dpkg-query -W -f='${Version}' rust-web-src 2>/dev/null || echo '?')"

declare -A ARCH_DIR=([armv7-unknown-linux-gnueabihf]=armv7 [aarch64-unknown-linux-gnu]=aarch64)
declare -A ELF_MACHINE=([armv7-unknown-linux-gnueabihf]="ARM, EABI5" [aarch64-unknown-linux-gnu]="ARM aarch64")
declare -A QEMU=([armv7-unknown-linux-gnueabihf]="qemu-arm-static -L /usr/arm-linux-gnueabihf"
    [aarch64-unknown-linux-gnu]="qemu-aarch64-static -L /usr/aarch64-linux-gnu")
BUNDLE_ARGS=()
SUMMARY=""

for target in "${TARGETS[@]}"; do
    step "build $target (glibc $MAX_GLIBC)"
    start=$(date +%s)
    PATH="/usr/bin:$PATH" cargo-zigbuild zigbuild --locked -Zbuild-std=std,panic_abort --release \
        --target "$target.$MAX_GLIBC" --bin bms-bridge
    bin=$CARGO_TARGET_DIR/$target/release/bms-bridge
    elapsed=$(($(date +%s) - start))

    step "check $target"
    description=$(file -b "$bin")
    echo "file: $description"
    grep -qF "${ELF_MACHINE[$target]}" <<<"$description" || die "$bin is not ${ELF_MACHINE[$target]}"
    if ! grep -q ", stripped" <<<"$description"; then die "$bin is not stripped"; fi
    if [ "$target" = armv7-unknown-linux-gnueabihf ]; then
        readelf -A "$bin" | grep -E "Tag_CPU_arch:|Tag_FP_arch:|Tag_Advanced_SIMD_arch:" | sed 's/^ */readelf: /'
        flags=$(readelf -h "$bin" | sed -n 's/^ *Flags: *//p')
        echo "readelf: ELF flags $flags"
        grep -q "hard-float ABI" <<<"$flags" || die "$bin is not hard-float"
    fi
    glibc=$(readelf --dyn-syms -W "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sort -uV | tail -n 1)
    echo "highest glibc symbol version: $glibc"
    [ "$(printf '%s\n%s\n' "${glibc#GLIBC_}" "$MAX_GLIBC" | sort -V | tail -n 1)" = "$MAX_GLIBC" ] \
        || die "$bin needs $glibc, more than GLIBC_$MAX_GLIBC"
    echo "needed: $(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"
    read -r -a qemu <<<"${QEMU[$target]}"
    version=$("${qemu[@]}" "$bin" --version)
    echo "qemu: $version"
    [ "$version" = "bms-bridge $VERSION" ] || die "--version under qemu printed '$version'"
    # shellcheck disable=SC2086 # the vector is a list of hex words
    decoded=$("${qemu[@]}" "$bin" decode --protocol jbd $VECTOR)
    echo "qemu decode: $decoded"
    grep -q '"voltage_v":15.6' <<<"$decoded" || die "decode under qemu gave the wrong voltage"
    size=$(stat -c %s "$bin")
    SUMMARY="$SUMMARY$(printf '%-32s %9s bytes  %s  build %ss' "$target" "$size" "$glibc" "$elapsed")"$'\n'
    BUNDLE_ARGS+=(--bin "${ARCH_DIR[$target]}=$bin")
done

step "bundle"
mkdir -p "$DIST"
tarball=$(scripts/make-bundle.sh --out "$DIST" --version "$VERSION" "${BUNDLE_ARGS[@]}")
echo "$tarball ($(stat -c %s "$tarball") bytes)"
cat "$tarball.sha256"

step "summary"
printf '%s' "$SUMMARY"
