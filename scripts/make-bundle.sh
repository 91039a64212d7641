#!/bin/bash
# Assembles the Venus OS bundle: a directory (default bms-bridge-<version>-venus/) with install.sh,
# bin/<arch>/bms-bridge, the service (run, log/run), the example config, VERSION and SHA256SUMS,
# plus a .tar.gz of it (default <directory>.tar.gz) and its .sha256.
# Usage: scripts/make-bundle.sh --out DIR --version V --bin armv7=PATH [--bin aarch64=PATH ...]
#                               [--name DIRECTORY] [--tarball FILE] [--no-tar]
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="" VERSION="" TAR=1 NAME="" TARBALL=""
declare -a BINS=()
while [ $# -gt 0 ]; do
    case $1 in
        --out) shift; OUT=$1 ;;
        --version) shift; VERSION=$1 ;;
        --bin) shift; BINS+=("$1") ;;
        --name) shift; NAME=$1 ;;
        --tarball) shift; TARBALL=$1 ;;
        --no-tar) TAR=0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$OUT" ] || [ -z "$VERSION" ] || [ ${#BINS[@]} -eq 0 ]; then
    echo "usage: $0 --out DIR --version V --bin ARCH=PATH [--bin ARCH=PATH] [--name DIRECTORY] [--tarball FILE] [--no-tar]" >&2
    exit 2
fi

NAME=${NAME:-bms-bridge-$VERSION-venus}
TARBALL=${TARBALL:-$NAME.tar.gz}
DIR="$OUT/$NAME"
rm -rf "$DIR"
mkdir -p "$DIR/service/log"
for spec in "${BINS[@]}"; do
    arch=${spec%%=*}
    path=${spec#*=}
    mkdir -p "$DIR/bin/$arch"
    cp "$path" "$DIR/bin/$arch/bms-bridge"
    chmod 755 "$DIR/bin/$arch/bms-bridge"
done
cp packaging/venus/install.sh "$DIR/install.sh"
cp packaging/venus/service/run "$DIR/service/run"
cp packaging/venus/service/log/run "$DIR/service/log/run"
cp config/bms-bridge.toml "$DIR/bms-bridge.toml"
chmod 755 "$DIR/install.sh" "$DIR/service/run" "$DIR/service/log/run"
echo "$VERSION" >"$DIR/VERSION"
(cd "$DIR" && find . -type f | sed 's#^\./##' | LC_ALL=C sort | xargs sha256sum >"../$NAME.sums" && mv "../$NAME.sums" SHA256SUMS)
if [ "$TAR" = 1 ]; then
    tar -C "$OUT" -czf "$OUT/$TARBALL" "$NAME"
    (cd "$OUT" && sha256sum "$TARBALL" >"$TARBALL.sha256")
    echo "$OUT/$TARBALL"
else
    echo "$DIR"
fi
