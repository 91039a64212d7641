#!/bin/bash
# Release build: stripped binaries for armv7 hard-float (Cerbo GX, Venus GX, Ekrano GX: Cortex-A7;
# Raspberry Pi 2 and later on 32-bit Raspberry Pi OS), aarch64 (newer Cerbo GX revisions,
# Raspberry Pi 5, 64-bit Raspberry Pi OS) and x86-64 (PCs), each needing at most GLIBC_2.28
# (Venus OS v2.90 and later, Debian 10 and later), and in dist/:
#   bms-bridge-venus-<armv7|aarch64>.tar.gz  one GX architecture: unpacks to bms-bridge-venus/
#                                            (install.sh, bin/<arch>/, service, example config)
#   bms-bridge-<version>-venus.tar.gz        both GX architectures (install.sh picks by uname -m)
#   bms-bridge_<version>_<armhf|arm64|amd64>.deb   Debian / Raspberry Pi OS (scripts/make-deb.sh)
#   bms-bridge-linux-<arch>                  the plain binary
#   SHA256SUMS                               of every file above
# The release workflow (.github/workflows/release.yml) runs this script as it is.
# Route (docs/reference/cross-compile.md): Debian's rustc-web + rust-web-src, -Zbuild-std,
# cargo-zigbuild with zig from PyPI pinning glibc 2.28.
# Every binary is checked: ELF architecture, highest GLIBC_ symbol version, and under qemu-user
# `bms-bridge --version` plus the decode of a JBD vector.
# Usage: scripts/release.sh [--setup] [--targets "TRIPLE ..."]
#   --setup    installs the toolchain first (Debian bookworm, as root)
#   --targets  only these (default: all three; e.g. --targets x86_64-unknown-linux-gnu)
# Takes a few minutes per target on 2 cores: not part of `cargo test` or .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

ZIG_VERSION=0.17.1
ZIGBUILD_VERSION=0.24.1
MAX_GLIBC=2.28
MAX_ARMV7_BYTES=2500000
# 32-bit ARM is built as Thumb-2 with NEON (thumbv7neon): the same armv7 hard-float ABI and
# instruction set family as armv7-unknown-linux-gnueabihf, 27 % smaller code (3.83 -> 2.80 MB).
# Every armv7 GX device (CCGX and Venus GX: Cortex-A8; Cerbo GX, Ekrano GX: Cortex-A7/A53) and
# every Raspberry Pi from the 2 on has NEON (docs/performance.md, "Binary size").
TARGETS=(thumbv7neon-unknown-linux-gnueabihf aarch64-unknown-linux-gnu x86_64-unknown-linux-gnu)
# The whole build, std included (-Zbuild-std), without what a stripped, panic=abort binary never
# uses: unwind tables (only backtraces read them; -70 KB), position independence (the relocation
# table; -190 KB with the former) and std's backtrace symbolizer (gimli, addr2line, an inflater;
# it cannot name frames in a stripped binary anyway; -110 KB). A panic still prints its message
# and location.
RELEASE_RUSTFLAGS="-C force-unwind-tables=no -C relocation-model=static"
STD_FEATURES="-Zbuild-std-features="
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
        qemu-user-static libc6-armhf-cross libc6-arm64-cross binutils file \
        python3-pip ca-certificates >/dev/null
    # Debian's pip refuses system-wide installs (PEP 668) unless told; on a build host that is fine.
    python3 -m ziglang version 2>/dev/null | grep -qx "$ZIG_VERSION" \
        || PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q "ziglang==$ZIG_VERSION"
    cargo-zigbuild --version 2>/dev/null | grep -q "$ZIGBUILD_VERSION" \
        || cargo install --locked "cargo-zigbuild@$ZIGBUILD_VERSION"
}

# cargo install puts cargo-zigbuild here (also where rustup is not installed).
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
while [ $# -gt 0 ]; do
    case $1 in
        --setup) setup ;;
        --targets) shift; read -r -a TARGETS <<<"${1:-}" ;;
        *) die "unknown option $1 (usage: scripts/release.sh [--setup] [--targets \"TRIPLE ...\"])" ;;
    esac
    shift
done
[ ${#TARGETS[@]} -gt 0 ] || die "--targets needs at least one target"

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

declare -A ARCH_DIR=([thumbv7neon-unknown-linux-gnueabihf]=armv7 [aarch64-unknown-linux-gnu]=aarch64
    [x86_64-unknown-linux-gnu]=x86_64)
declare -A DEB_ARCH=([thumbv7neon-unknown-linux-gnueabihf]=armhf [aarch64-unknown-linux-gnu]=arm64
    [x86_64-unknown-linux-gnu]=amd64)
declare -A ELF_MACHINE=([thumbv7neon-unknown-linux-gnueabihf]="ARM, EABI5" [aarch64-unknown-linux-gnu]="ARM aarch64"
    [x86_64-unknown-linux-gnu]="x86-64")
# How each binary is run for its check: qemu-user for the ARM ones, directly on an x86-64 host.
declare -A QEMU=([thumbv7neon-unknown-linux-gnueabihf]="qemu-arm-static -L /usr/arm-linux-gnueabihf"
    [aarch64-unknown-linux-gnu]="qemu-aarch64-static -L /usr/aarch64-linux-gnu"
    [x86_64-unknown-linux-gnu]="")
if [ "$(uname -m)" != x86_64 ]; then
    QEMU[x86_64-unknown-linux-gnu]="qemu-x86_64-static -L /usr/x86_64-linux-gnu"
fi
# The GX architectures: Venus OS tarballs are made for these.
declare -A VENUS=([armv7]=1 [aarch64]=1)
BUNDLE_ARGS=()
SUMMARY=""
# A fresh dist/: SHA256SUMS covers exactly this run's files.
rm -rf "$DIST"
mkdir -p "$DIST"
for target in "${TARGETS[@]}"; do
    [ -n "${ARCH_DIR[$target]:-}" ] || die "unknown target $target (known: ${!ARCH_DIR[*]})"
done

for target in "${TARGETS[@]}"; do
    step "build $target (glibc $MAX_GLIBC)"
    start=$(date +%s)
    # --no-default-features: no `plots` (simulate-charge PNGs, a developer tool): docs/performance.md.
    PATH="/usr/bin:$PATH" RUSTFLAGS="$RELEASE_RUSTFLAGS" cargo-zigbuild zigbuild --locked \
        -Zbuild-std=std,panic_abort "$STD_FEATURES" --release --no-default-features \
        --target "$target.$MAX_GLIBC" --bin bms-bridge
    bin=$CARGO_TARGET_DIR/$target/release/bms-bridge
    elapsed=$(($(date +%s) - start))

    step "check $target"
    description=$(file -b "$bin")
    echo "file: $description"
    grep -qF "${ELF_MACHINE[$target]}" <<<"$description" || die "$bin is not ${ELF_MACHINE[$target]}"
    if ! grep -q ", stripped" <<<"$description"; then die "$bin is not stripped"; fi
    if [ "$target" = thumbv7neon-unknown-linux-gnueabihf ]; then
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
    echo "run${qemu[0]:+ under ${qemu[0]}}: $version"
    [ "$version" = "bms-bridge $VERSION" ] || die "--version under qemu printed '$version'"
    # shellcheck disable=SC2086 # the vector is a list of hex words
    decoded=$("${qemu[@]}" "$bin" decode --protocol jbd $VECTOR)
    echo "decode: $decoded"
    grep -q '"voltage_v":15.6' <<<"$decoded" || die "decode under qemu gave the wrong voltage"
    size=$(stat -c %s "$bin")
    # The GX budget (issue 26): the 32-bit ARM binary, every user-facing feature in it.
    if [ "${ARCH_DIR[$target]}" = armv7 ] && [ "$size" -gt "$MAX_ARMV7_BYTES" ]; then
        die "$bin is $size bytes, over the $MAX_ARMV7_BYTES-byte budget of GX binaries (docs/performance.md)"
    fi
    SUMMARY="$SUMMARY$(printf '%-32s %9s bytes  %s  build %ss' "$target" "$size" "$glibc" "$elapsed")"$'\n'
    arch=${ARCH_DIR[$target]}
    step "package $target"
    cp "$bin" "$DIST/bms-bridge-linux-$arch"
    if [ -n "${VENUS[$arch]:-}" ]; then
        BUNDLE_ARGS+=(--bin "$arch=$bin")
        tarball=$(scripts/make-bundle.sh --out "$DIST" --version "$VERSION" --name bms-bridge-venus \
            --tarball "bms-bridge-venus-$arch.tar.gz" --bin "$arch=$bin")
        echo "$tarball ($(stat -c %s "$tarball") bytes)"
    fi
    deb=$(scripts/make-deb.sh --out "$DIST" --version "$VERSION" --arch "${DEB_ARCH[$target]}" --bin "$bin")
    dpkg-deb -I "$deb" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\):/deb: \1:/p'
    echo "$deb ($(stat -c %s "$deb") bytes)"
done

if [ ${#BUNDLE_ARGS[@]} -gt 2 ]; then  # two or more GX architectures
    step "bundle of every GX architecture"
    tarball=$(scripts/make-bundle.sh --out "$DIST" --version "$VERSION" "${BUNDLE_ARGS[@]}")
    echo "$tarball ($(stat -c %s "$tarball") bytes)"
fi
# The staging directories are in the tarballs; the release is the files.
rm -rf "$DIST/bms-bridge-venus" "$DIST/bms-bridge-$VERSION-venus"

step "checksums"
(
    cd "$DIST"
    rm -f ./*.sha256
    mapfile -t files < <(find . -maxdepth 1 -type f -printf '%f\n' | LC_ALL=C sort)
    sha256sum "${files[@]}" >SHA256SUMS
)
cat "$DIST/SHA256SUMS"

step "summary"
printf '%s' "$SUMMARY"
