#!/bin/bash
# Builds the Debian / Raspberry Pi OS package of bms-bridge with plain dpkg-deb (no debhelper,
# no cargo-deb): dist/bms-bridge_<version>_<arch>.deb with
#   /usr/bin/bms-bridge                          the binary given (a scripts/release.sh build)
#   /lib/systemd/system/bms-bridge.service       systemd/bms-bridge.service for the package paths
#   /usr/share/dbus-1/system.d/bms-bridge.conf   lets user bms-bridge own the battery services
#   /etc/bms-bridge/bms-bridge.toml              the example config (a conffile: kept on upgrades)
#   /usr/share/doc/bms-bridge/                   install-linux.md, the example config, copyright
# and the maintainer scripts in packaging/debian/ (system user bms-bridge in group dialout).
# Usage: scripts/make-deb.sh --out DIR --version V --arch amd64|arm64|armhf --bin PATH
#                            [--compression xz|gzip|none]
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="" VERSION="" ARCH="" BIN="" COMPRESSION=xz
while [ $# -gt 0 ]; do
    case $1 in
        --out) shift; OUT=$1 ;;
        --version) shift; VERSION=$1 ;;
        --arch) shift; ARCH=$1 ;;
        --bin) shift; BIN=$1 ;;
        --compression) shift; COMPRESSION=$1 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$OUT" ] || [ -z "$VERSION" ] || [ -z "$ARCH" ] || [ -z "$BIN" ]; then
    echo "usage: $0 --out DIR --version V --arch amd64|arm64|armhf --bin PATH [--compression xz|gzip|none]" >&2
    exit 2
fi
case $ARCH in
    amd64 | arm64 | armhf) ;;
    *) echo "unknown Debian architecture $ARCH (amd64, arm64, armhf)" >&2; exit 2 ;;
esac
die() { printf 'make-deb: ERROR: %s\n' "$*" >&2; exit 1; }

NAME=bms-bridge_${VERSION}_$ARCH
ROOT=$OUT/$NAME
rm -rf "$ROOT"
mkdir -p "$ROOT/DEBIAN" "$ROOT/usr/bin" "$ROOT/lib/systemd/system" "$ROOT/usr/share/dbus-1/system.d" \
    "$ROOT/etc/bms-bridge" "$ROOT/usr/share/doc/bms-bridge"

install -m 755 "$BIN" "$ROOT/usr/bin/bms-bridge"

# The unit of systemd/ with the package's paths, and the static system user the postinst
# creates instead of DynamicUser (the D-Bus policy names the user, so it must exist).
unit=$ROOT/lib/systemd/system/bms-bridge.service
{
    echo "# bms-bridge service (installed by the bms-bridge package; docs: /usr/share/doc/bms-bridge/install-linux.md)"
    echo "# Local changes: systemctl edit bms-bridge. Log level: BMS_BRIDGE_LOG_LEVEL in /etc/default/bms-bridge."
    sed -n '/^\[Unit\]/,$p' systemd/bms-bridge.service \
        | sed -e 's#/usr/local/bin/bms-bridge#/usr/bin/bms-bridge#g' \
            -e 's#file:///usr/local/share/doc/#file:///usr/share/doc/#' \
            -e 's#^DynamicUser=yes$#DynamicUser=no#' \
            -e 's#, created on start ("bms-bridge")# ("bms-bridge", created by the package)#'
} >"$unit"
chmod 644 "$unit"
grep -q '^ExecStart=/usr/bin/bms-bridge ' "$unit" || die "the unit's ExecStart was not rewritten to /usr/bin"
grep -q '/usr/local' "$unit" && die "the packaged unit still names /usr/local"
grep -qx 'User=bms-bridge' "$unit" || die "the unit does not run as user bms-bridge"
grep -qx 'StateDirectory=bms-bridge' "$unit" || die "the unit has no StateDirectory=bms-bridge"

install -m 644 systemd/bms-bridge-dbus.conf "$ROOT/usr/share/dbus-1/system.d/bms-bridge.conf"
# The example config, with the state where the unit's StateDirectory puts it, written out (the
# example leaves state_dir to the per-host default, which is the same path off Venus OS; a
# Venus OS path would not be writable under ProtectSystem=strict).
sed -e 's#^state_dir = "/data/bms-bridge"#state_dir = "/var/lib/bms-bridge"#' \
    -e 's#^\# state_dir = "/var/lib/bms-bridge"#state_dir = "/var/lib/bms-bridge"#' config/bms-bridge.toml \
    >"$ROOT/etc/bms-bridge/bms-bridge.toml"
grep -qx 'state_dir = "/var/lib/bms-bridge"' "$ROOT/etc/bms-bridge/bms-bridge.toml" \
    || die "the packaged config does not set state_dir = \"/var/lib/bms-bridge\""
chmod 644 "$ROOT/etc/bms-bridge/bms-bridge.toml"
grep -q '^state_dir = "/data' "$ROOT/etc/bms-bridge/bms-bridge.toml" && die "the packaged config keeps state in /data"
install -m 644 docs/install-linux.md "$ROOT/usr/share/doc/bms-bridge/install-linux.md"
install -m 644 config/bms-bridge.toml "$ROOT/usr/share/doc/bms-bridge/bms-bridge.toml.example"
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: bms-bridge"
    echo
    echo "Files: *"
    echo "License: $(sed -n 's/^license = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
} >"$ROOT/usr/share/doc/bms-bridge/copyright"
chmod 644 "$ROOT/usr/share/doc/bms-bridge/copyright"

for script in postinst prerm postrm; do
    install -m 755 "packaging/debian/$script" "$ROOT/DEBIAN/$script"
done
echo /etc/bms-bridge/bms-bridge.toml >"$ROOT/DEBIAN/conffiles"
size_kb=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
description=$(sed -n 's/^description = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
cat >"$ROOT/DEBIAN/control" <<CONTROL
Package: bms-bridge
Version: $VERSION
Architecture: $ARCH
Maintainer: bms-bridge developers <bms-bridge@localhost>
Installed-Size: $size_kb
Depends: libc6 (>= 2.28), passwd
Recommends: dbus
Section: electronics
Priority: optional
Description: lithium battery BMS to Victron D-Bus bridge
 $description.
 Reads the BMS over serial, Modbus or CAN and publishes it as a
 com.victronenergy.battery service with charge control (CVL/CCL/DCL).
 The service runs as the system user bms-bridge (group dialout for the
 serial ports); start it once /etc/bms-bridge/bms-bridge.toml names the port.
CONTROL

dpkg-deb --root-owner-group -Z"$COMPRESSION" --build "$ROOT" "$OUT/$NAME.deb" >/dev/null
rm -rf "$ROOT"
echo "$OUT/$NAME.deb"
