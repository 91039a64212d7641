#!/bin/bash
# Tests scripts/make-deb.sh and the maintainer scripts in packaging/debian/: the package's
# metadata, file list, conffile, the packaged unit and config, the unpacked binary, and
# postinst/prerm/postrm against fake account and systemd tools that record their calls.
# Usage: tests/installer/deb-test.sh PATH-TO-bms-bridge-BINARY
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(realpath "$1")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bms-bridge-deb-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# shellcheck source=tests/installer/checks.sh
. tests/installer/checks.sh

echo "# build"
deb=$(scripts/make-deb.sh --out "$WORK" --version 0.0.1-test --arch amd64 --bin "$BIN" --compression none)
check "named as Debian does" [ "$deb" = "$WORK/bms-bridge_0.0.1-test_amd64.deb" ]
check "staging directory removed" [ ! -e "$WORK/bms-bridge_0.0.1-test_amd64" ]
info=$(dpkg-deb -I "$deb")
check "package name" grep -qx " Package: bms-bridge" <<<"$info"
check "version" grep -qx " Version: 0.0.1-test" <<<"$info"
check "architecture" grep -qx " Architecture: amd64" <<<"$info"
check "needs glibc 2.28 (the release binaries' highest symbol version)" grep -q "^ Depends: libc6 (>= 2.28)" <<<"$info"
check "maintainer scripts" grep -Eq "^ +[0-9]+ bytes, +[0-9]+ lines +\\* +postinst " <<<"$info"
files=$(dpkg-deb -c "$deb")
for path in ./usr/bin/bms-bridge ./lib/systemd/system/bms-bridge.service \
    ./usr/share/dbus-1/system.d/bms-bridge.conf ./etc/bms-bridge/bms-bridge.toml \
    ./usr/share/doc/bms-bridge/install-linux.md ./usr/share/doc/bms-bridge/copyright; do
    check "contains $path" grep -q " $path\$" <<<"$files"
done
check "every file owned by root" bash -c "! grep -v ' root/root ' <<<'$files'"
check "binary executable" grep -q "^-rwxr-xr-x root/root .* ./usr/bin/bms-bridge$" <<<"$files"
dpkg-deb -e "$deb" "$WORK/control"
check "the config is a conffile" grep -qx /etc/bms-bridge/bms-bridge.toml "$WORK/control/conffiles"

echo "# unpacked"
R=$WORK/root
dpkg-deb -x "$deb" "$R"
UNIT=$R/lib/systemd/system/bms-bridge.service
check "unit runs /usr/bin/bms-bridge" grep -q "^ExecStart=/usr/bin/bms-bridge .*run --config /etc/bms-bridge/bms-bridge.toml" "$UNIT"
check "unit checks the config first" grep -q "^ExecStartPre=/usr/bin/bms-bridge check-config /etc/bms-bridge/bms-bridge.toml" "$UNIT"
check "unit names no /usr/local path" bash -c "! grep -q /usr/local '$UNIT'"
check "unit runs as the package's user" grep -qx "User=bms-bridge" "$UNIT"
check "unit uses the static user" grep -qx "DynamicUser=no" "$UNIT"
check "unit has the serial ports' group" grep -qx "SupplementaryGroups=dialout" "$UNIT"
check "unit's state in /var/lib/bms-bridge" grep -qx "StateDirectory=bms-bridge" "$UNIT"
check "unit is hardened" grep -qx "ProtectSystem=strict" "$UNIT"
if command -v systemd-analyze >/dev/null 2>&1; then
    # A copy pointing at the unpacked binary (verify checks that ExecStart exists); it reports an
    # unknown key or a bad value on stderr without failing, so any output fails here.
    sed "s#/usr/bin/bms-bridge#$R/usr/bin/bms-bridge#g" "$UNIT" >"$WORK/bms-bridge.service"
    out=$(systemd-analyze verify --man=no "$WORK/bms-bridge.service" 2>&1) || fail "systemd-analyze verify: $out"
    check "systemd-analyze verify is silent" [ -z "$out" ]
fi
check "unpacked binary runs" "$R/usr/bin/bms-bridge" --version
check "packaged config keeps state where the unit puts it" grep -qx 'state_dir = "/var/lib/bms-bridge"' "$R/etc/bms-bridge/bms-bridge.toml"
check "packaged config passes check-config" "$R/usr/bin/bms-bridge" check-config "$R/etc/bms-bridge/bms-bridge.toml"
check "D-Bus policy for the user" grep -q '<policy user="bms-bridge">' "$R/usr/share/dbus-1/system.d/bms-bridge.conf"

echo "# maintainer scripts against fake account and systemd tools"
FAKES=$WORK/fakes
CALLS=$WORK/calls.log
ACCOUNTS=$WORK/accounts   # "user groups..." lines
mkdir -p "$FAKES"
: >"$CALLS"
fake() { printf '#!/bin/bash\n%s\n' "$2" >"$FAKES/$1"; chmod +x "$FAKES/$1"; }
fake getent "case \$1 in passwd) grep -q \"^\$2 \" '$ACCOUNTS' ;; group) grep -q \" \$2\\\\b\" '$ACCOUNTS' || [ \"\$2\" = dialout ] ;; esac"
fake id "[ \"\$1\" = -nG ] && grep \"^\$2 \" '$ACCOUNTS' | cut -d' ' -f2-"
for tool in groupadd useradd usermod systemctl deb-systemd-helper; do
    fake "$tool" "echo \"$tool \$*\" >>'$CALLS'"
done
run() { PATH="$FAKES:$PATH" sh "$R/../control/$1" "${@:2}"; }
: >"$ACCOUNTS"
out=$(run postinst configure "")
check "fresh install: group created" grep -qx "groupadd --system bms-bridge" "$CALLS"
check "fresh install: system user in dialout, no login" \
    grep -q "^useradd --system --gid bms-bridge --groups dialout .*--shell /usr/sbin/nologin .*bms-bridge$" "$CALLS"
check "fresh install: not started (the example port is a guess)" bash -c "! grep -q 'start\\|restart' '$CALLS'"
check "fresh install: says what to do next" grep -q "systemctl enable --now bms-bridge" <<<"$out"
: >"$CALLS"
echo "bms-bridge bms-bridge" >"$ACCOUNTS"
run postinst configure 0.0.0 >/dev/null
check "upgrade: user put into dialout" grep -qx "usermod -a -G dialout bms-bridge" "$CALLS"
check "upgrade: no second user" bash -c "! grep -q 'useradd\\|groupadd' '$CALLS'"
: >"$CALLS"
echo "bms-bridge bms-bridge dialout" >"$ACCOUNTS"
run postinst configure 0.0.0 >/dev/null
check "upgrade with the user in order: no account change" bash -c "! grep -q 'user\\|group' '$CALLS'"
if [ -d /run/systemd/system ]; then
    check "upgrade: a running daemon restarted" grep -qx "systemctl try-restart bms-bridge.service" "$CALLS"
fi
if run postinst bogus >/dev/null 2>&1; then fail "postinst accepted an unknown action"; fi
ok "postinst refuses an unknown action"
run prerm remove
run prerm upgrade 0.0.2
run postrm remove
mkdir -p "$WORK/purge/var/lib/bms-bridge" "$WORK/purge/etc/systemd/system/multi-user.target.wants"
echo '{}' >"$WORK/purge/var/lib/bms-bridge/bank_Demo.json"
touch "$WORK/purge/etc/systemd/system/multi-user.target.wants/bms-bridge.service"
DPKG_ROOT=$WORK/purge run postrm purge
check "purge deletes the charge state" [ ! -e "$WORK/purge/var/lib/bms-bridge" ]
check "purge deletes the enable link" [ ! -e "$WORK/purge/etc/systemd/system/multi-user.target.wants/bms-bridge.service" ]

echo "all $PASS deb checks passed"
