#!/bin/bash
# Tests packaging/venus/install.sh against a temporary directory standing in for the Venus root.
# Usage: tests/installer/venus-install-test.sh PATH-TO-bms-bridge-BINARY
# Fake uname/svc/udevadm/stop-tty.sh/start-tty.sh record their calls in $ROOT/calls.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(realpath "$1")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bms-bridge-install-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root
FAKES=$WORK/fakes
CALLS=$WORK/calls.log
mkdir -p "$ROOT/data" "$ROOT/dev/serial/by-id" "$ROOT/opt/victronenergy/serial-starter" "$FAKES"
touch "$CALLS" "$ROOT/dev/ttyUSB3"
ln -s ../../ttyUSB3 "$ROOT/dev/serial/by-id/usb-FTDI_FT232R_A10K1234-if00-port0"

fake() { # name, body
    printf '#!/bin/bash\n%s\n' "$2" >"$1"
    chmod +x "$1"
}
# shellcheck disable=SC2016 # expands when the fake runs
fake "$FAKES/uname" 'if [ "${1:-}" = -m ]; then echo "${FAKE_MACHINE:-armv7l}"; else /bin/uname "$@"; fi'
fake "$FAKES/svc" "echo \"svc \$*\" >>$CALLS"
fake "$FAKES/udevadm" "echo \"udevadm \$*\" >>$CALLS"
fake "$ROOT/opt/victronenergy/serial-starter/stop-tty.sh" "echo \"stop-tty \$*\" >>$CALLS"
fake "$ROOT/opt/victronenergy/serial-starter/start-tty.sh" "echo \"start-tty \$*\" >>$CALLS"
export PATH="$FAKES:$PATH" VENUS_ROOT=$ROOT

# shellcheck source=tests/installer/checks.sh
. tests/installer/checks.sh
snapshot() { (cd "$ROOT" && find . -printf '%p %s %m %l\n' | LC_ALL=C sort && find . -type f -exec sha256sum {} + | LC_ALL=C sort); }

bundle() { # version -> bundle directory
    scripts/make-bundle.sh --out "$WORK/bundles" --version "$1" --bin "armv7=$BIN" --bin "aarch64=$BIN" --no-tar
}
B1=$(bundle 0.0.1-test)
B2=$(bundle 0.0.2-test)
APP=$ROOT/data/bms-bridge/app
CONF=$ROOT/data/bms-bridge/bms-bridge.toml
RC=$ROOT/data/rc.local

echo "# a pre-existing rc.local of another package"
printf '#!/bin/bash\necho other-package\n' >"$RC"
chmod 755 "$RC"
RC_BEFORE=$(cat "$RC")

echo "# --dry-run changes nothing"
before=$(snapshot)
out=$("$B1/install.sh" --dry-run)
check "dry run prints its plan" grep -q "would run: mv" <<<"$out"
check "dry run leaves the root untouched" [ "$before" = "$(snapshot)" ]

echo "# checksum mismatch: refused, nothing changed"
cp -R "$B1" "$WORK/bad"
printf 'x' >>"$WORK/bad/bin/armv7/bms-bridge"
if out=$("$WORK/bad/install.sh" 2>&1); then fail "a corrupted bundle was installed"; fi
check "mismatch is named" grep -q "checksum mismatch" <<<"$out"
check "root untouched after refusal" [ "$before" = "$(snapshot)" ]

echo "# install"
"$B1/install.sh" >"$WORK/out1"
check "binary installed and runs" "$APP/bin/bms-bridge" --version
check "version recorded" grep -qx 0.0.1-test "$APP/VERSION"
check "installed files match their checksums" bash -c "cd '$APP' && sha256sum -c --quiet SHA256SUMS"
check "example config written" cmp -s "$CONF" config/bms-bridge.toml
check "rc.local keeps the other package" grep -qx "echo other-package" "$RC"
check "rc.local has the hook once" [ "$(grep -c 'bms-bridge/app/install.sh --boot' "$RC")" = 1 ]
check "rc.local backed up" cmp -s "$ROOT/data/bms-bridge/rc.local.before-bms-bridge" <(echo "$RC_BEFORE")
check "service linked" [ "$(readlink "$ROOT/service/bms-bridge")" = /var/volatile/services/bms-bridge ]
check "service run script" grep -q "exec /data/bms-bridge/app/bin/bms-bridge --log-level" "$ROOT/var/volatile/services/bms-bridge/run"
check "multilog to /var/log/bms-bridge" grep -q "multilog t .* /var/log/bms-bridge" "$ROOT/var/volatile/services/bms-bridge/log/run"
check "udev rule keeps serial-starter off ttyUSB0" grep -q 'KERNEL=="ttyUSB0", ENV{VE_SERVICE}="ignore"' "$ROOT/run/udev/rules.d/zz-bms-bridge.rules"
check "stop-tty.sh called for the port" grep -qx "stop-tty ttyUSB0" "$CALLS"
check "udev reloaded" grep -q "udevadm control --reload-rules" "$CALLS"
check "no remount of the root fs" bash -c "! grep -q 'mount -o' '$APP/install.sh'"

echo "# update: config kept, previous version kept"
sed -i 's#^device = "/dev/ttyUSB0"#device = "/dev/serial/by-id/usb-FTDI_FT232R_A10K1234-if00-port0"#' "$CONF"
echo "# user edit" >>"$CONF"
CONF_BEFORE=$(sha256sum <"$CONF")
: >"$CALLS"
"$B2/install.sh" >"$WORK/out2"
check "config not overwritten" [ "$CONF_BEFORE" = "$(sha256sum <"$CONF")" ]
check "says config kept" grep -q "config /data/bms-bridge/bms-bridge.toml kept" "$WORK/out2"
check "new version installed" grep -qx 0.0.2-test "$APP/VERSION"
check "previous version backed up" grep -qx 0.0.1-test "$ROOT/data/bms-bridge/app.previous/VERSION"
check "rc.local hook still once" [ "$(grep -c 'bms-bridge/app/install.sh --boot' "$RC")" = 1 ]
check "by-id port in the udev rule" grep -q 'SYMLINK=="serial/by-id/usb-FTDI_FT232R_A10K1234-if00-port0", ENV{VE_SERVICE}="ignore"' "$ROOT/run/udev/rules.d/zz-bms-bridge.rules"
check "stop-tty.sh gets the by-id port's tty" grep -qx "stop-tty ttyUSB3" "$CALLS"

echo "# firmware update: everything outside /data is gone; rc.local brings it back"
rm -rf "${ROOT:?}/service" "${ROOT:?}/var" "${ROOT:?}/run"
RC_SNAP=$(sha256sum <"$RC")
"$APP/install.sh" --boot >/dev/null
"$APP/install.sh" --boot >/dev/null
check "service back after boot" [ -x "$ROOT$(readlink "$ROOT/service/bms-bridge")/run" ]
check "udev rule back after boot" [ -f "$ROOT/run/udev/rules.d/zz-bms-bridge.rules" ]
check "boot leaves rc.local alone (idempotent)" [ "$RC_SNAP" = "$(sha256sum <"$RC")" ]
"$B2/install.sh" >/dev/null
check "re-install of the same bundle leaves rc.local alone" [ "$RC_SNAP" = "$(sha256sum <"$RC")" ]
check "the rc.local line works as written" grep -q '^\[ -x /data/bms-bridge/app/install.sh \] && /data/bms-bridge/app/install.sh --boot' "$RC"

echo "# machine selection by uname -m"
check "aarch64 accepted" env FAKE_MACHINE=aarch64 "$B2/install.sh" --dry-run >/dev/null
if FAKE_MACHINE=x86_64 "$B2/install.sh" --dry-run >/dev/null 2>&1; then fail "x86_64 accepted"; fi
ok "unknown machine refused"

echo "# rollback"
"$B1/install.sh" >/dev/null   # now: app = 0.0.1, previous = 0.0.2
"$B2/install.sh" >/dev/null   # now: app = 0.0.2, previous = 0.0.1
before=$(snapshot)
"$APP/install.sh" --rollback --dry-run >/dev/null
check "rollback --dry-run changes nothing" [ "$before" = "$(snapshot)" ]
"$APP/install.sh" --rollback >"$WORK/out3"
check "rolled back to 0.0.1" grep -qx 0.0.1-test "$APP/VERSION"
check "0.0.2 kept as previous" grep -qx 0.0.2-test "$ROOT/data/bms-bridge/app.previous/VERSION"
check "config untouched by rollback" [ "$CONF_BEFORE" = "$(sha256sum <"$CONF")" ]
check "rolled-back binary still verifies" bash -c "cd '$APP' && sha256sum -c --quiet SHA256SUMS"
"$APP/install.sh" --rollback >/dev/null
check "second rollback returns to 0.0.2" grep -qx 0.0.2-test "$APP/VERSION"

echo "# uninstall"
before=$(snapshot)
"$APP/install.sh" --uninstall --dry-run >/dev/null
check "uninstall --dry-run changes nothing" [ "$before" = "$(snapshot)" ]
: >"$CALLS"
"$APP/install.sh" --uninstall >"$WORK/out4"
check "rc.local restored to its previous content" [ "$RC_BEFORE" = "$(cat "$RC")" ]
check "service link removed" [ ! -e "$ROOT/service/bms-bridge" ] && [ ! -L "$ROOT/service/bms-bridge" ]
check "service dir removed" [ ! -e "$ROOT/var/volatile/services/bms-bridge" ]
check "udev rule removed" [ ! -e "$ROOT/run/udev/rules.d/zz-bms-bridge.rules" ]
check "port handed back to serial-starter" grep -qx "start-tty ttyUSB3" "$CALLS"
check "program removed" [ ! -e "$APP" ] && [ ! -e "$ROOT/data/bms-bridge/app.previous" ]
check "config kept" [ "$CONF_BEFORE" = "$(sha256sum <"$CONF")" ]
if "$B1/install.sh" --rollback >/dev/null 2>&1; then fail "rollback without a previous version"; fi
ok "rollback with nothing installed refused"

echo "# install without an rc.local, uninstall --purge removes every trace"
rm -f "$RC"
"$B1/install.sh" >/dev/null
check "rc.local created with a shebang" [ "$(head -n 1 "$RC")" = "#!/bin/bash" ] && [ -x "$RC" ]
"$APP/install.sh" --uninstall --purge >/dev/null
check "rc.local we created is gone" [ ! -e "$RC" ]
check "data dir gone with --purge" [ ! -e "$ROOT/data/bms-bridge" ]
check "/data holds nothing of ours" [ -z "$(ls -A "$ROOT/data")" ]

echo "# the one-line install: a per-architecture release tarball unpacked into /data"
TARBALLS=$WORK/release
mkdir -p "$TARBALLS"
# Stripped, as release binaries are: gzip of the test build's debug info would take minutes.
strip -o "$WORK/bms-bridge.stripped" "$BIN" 2>/dev/null || cp "$BIN" "$WORK/bms-bridge.stripped"
for arch in armv7 aarch64; do
    scripts/make-bundle.sh --out "$TARBALLS" --version 0.0.3-test --name bms-bridge-venus \
        --tarball "bms-bridge-venus-$arch.tar.gz" --bin "$arch=$WORK/bms-bridge.stripped" >/dev/null
done
check "tarball unpacks to bms-bridge-venus/ only" \
    [ "$(tar -tzf "$TARBALLS/bms-bridge-venus-armv7.tar.gz" | cut -d/ -f1 | sort -u)" = bms-bridge-venus ]
check "tarball holds one architecture" \
    [ "$(tar -tzf "$TARBALLS/bms-bridge-venus-armv7.tar.gz" | grep -c '/bin/.*/bms-bridge$')" = 1 ]
# As `wget -O - <url> | tar -xz -C /data && /data/bms-bridge-venus/install.sh` on the device.
tar -xz -C "$ROOT/data" <"$TARBALLS/bms-bridge-venus-armv7.tar.gz"
"$ROOT/data/bms-bridge-venus/install.sh" >"$WORK/out5"
check "one-line install: installed" grep -qx 0.0.3-test "$APP/VERSION"
check "one-line install: binary runs" "$APP/bin/bms-bridge" --version
check "one-line install: example config written" cmp -s "$CONF" config/bms-bridge.toml
check "one-line install: service linked" [ "$(readlink "$ROOT/service/bms-bridge")" = /var/volatile/services/bms-bridge ]
if out=$(FAKE_MACHINE=aarch64 "$ROOT/data/bms-bridge-venus/install.sh" 2>&1); then
    fail "an armv7 tarball installed on aarch64"
fi
check "wrong architecture names the tarball to get" grep -q "download bms-bridge-venus-aarch64.tar.gz" <<<"$out"
rm -rf "$ROOT/data/bms-bridge-venus"
tar -xz -C "$ROOT/data" <"$TARBALLS/bms-bridge-venus-aarch64.tar.gz"
FAKE_MACHINE=aarch64 "$ROOT/data/bms-bridge-venus/install.sh" >/dev/null
check "aarch64 tarball installs on aarch64" grep -qx 0.0.3-test "$APP/VERSION"
"$APP/install.sh" --uninstall --purge >/dev/null
rm -rf "$ROOT/data/bms-bridge-venus"
check "purged again" [ -z "$(ls -A "$ROOT/data")" ]

echo "all $PASS installer checks passed"
