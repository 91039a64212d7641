#!/bin/bash
# bms-bridge installer for Venus OS (Cerbo GX, Ekrano GX, Venus GX, Raspberry Pi).
#
# Everything lives under /data, the only place that survives a firmware update:
#   /data/bms-bridge/app/            binary, this script, service template, SHA256SUMS, VERSION
#   /data/bms-bridge/app.previous/   what the last install replaced (for --rollback)
#   /data/bms-bridge/bms-bridge.toml the config: written once, never overwritten by an update
#   /data/bms-bridge/*.json          charge-control state (the daemon's [daemon] state_dir)
#   /data/rc.local                   one line that runs "install.sh --boot" at every boot
# Run-time parts (re-created at every boot, nothing on the read-only root file system):
#   /service/bms-bridge -> /var/volatile/services/bms-bridge   daemontools service (run + log/run)
#   /run/udev/rules.d/zz-bms-bridge.rules   VE_SERVICE=ignore: serial-starter leaves our ports alone
#   /var/log/bms-bridge/                    multilog, rotated
# The root file system is never remounted read-write.
#
# Usage: install.sh [--dry-run] [--arch armv7|aarch64]     install or update from this bundle
#        install.sh --boot                                  re-enable after boot / firmware update
#        install.sh --rollback [--dry-run]                  back to the previously installed version
#        install.sh --uninstall [--purge] [--dry-run]       remove (config and state kept unless --purge)
#        install.sh --status                                what is installed and running
# VENUS_ROOT (default empty) prefixes every path: tests point it at a temporary directory.
set -euo pipefail

ROOT="${VENUS_ROOT:-}"
# Paths as the device sees them (written into rc.local and the service's run script).
DATA=/data
BASE=$DATA/bms-bridge
APP=$BASE/app
PREV=$BASE/app.previous
CONFIG=$BASE/bms-bridge.toml
RC_LOCAL=$DATA/rc.local
RC_LINE="[ -x $APP/install.sh ] && $APP/install.sh --boot >/dev/null 2>&1 &  # bms-bridge"
SERVICE_TEMPLATES=/var/volatile/services
SERVICE_LINK=/service/bms-bridge
UDEV_RULE=/run/udev/rules.d/zz-bms-bridge.rules
SERIAL_STARTER=/opt/victronenergy/serial-starter
LOG_DIR=/var/log/bms-bridge

BUNDLE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DRY_RUN=0
ACTION=install
ARCH=""
PURGE=0

say() { printf 'bms-bridge: %s\n' "$*"; }
die() { printf 'bms-bridge: ERROR: %s\n' "$*" >&2; exit 1; }
# Runs a command, or only shows it with --dry-run.
act() {
    if [ "$DRY_RUN" = 1 ]; then
        printf 'would run: %s\n' "$*"
    else
        "$@"
    fi
}
# Writes stdin to a file (or shows what would be written).
write_file() {
    local target=$1
    if [ "$DRY_RUN" = 1 ]; then
        printf 'would write %s:\n' "$target"
        sed 's/^/    | /'
    else
        cat >"$target.tmp.$$"
        mv -f "$target.tmp.$$" "$target"
    fi
}
have() { command -v "$1" >/dev/null 2>&1; }

usage() { sed -n '/^# Usage:/,/^# VENUS_ROOT/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --boot) ACTION=boot ;;
        --rollback) ACTION=rollback ;;
        --uninstall) ACTION=uninstall ;;
        --status) ACTION=status ;;
        --purge) PURGE=1 ;;
        --arch) shift; ARCH=${1:-} ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
    shift
done

# The binary directory in the bundle for this machine.
pick_arch() {
    if [ -n "$ARCH" ]; then
        echo "$ARCH"
        return
    fi
    local machine
    machine=$(uname -m)
    case $machine in
        armv7l | armv7 | armv7hf | armv8l) echo armv7 ;;
        aarch64 | arm64) echo aarch64 ;;
        *) die "no binary for this machine (uname -m: $machine); bms-bridge ships armv7 and aarch64" ;;
    esac
}

# Devices named in the config ([[port]] device = "..."), one a line.
config_devices() {
    [ -f "$ROOT$CONFIG" ] || return 0
    sed -n 's/^[[:space:]]*device[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$ROOT$CONFIG"
}

# The udev match for one configured device path.
udev_match() {
    case $1 in
        /dev/tty*) printf 'KERNEL=="%s"' "${1#/dev/}" ;;
        /dev/*) printf 'SYMLINK=="%s"' "${1#/dev/}" ;;
        *) return 1 ;;
    esac
}

# Tells serial-starter not to probe the configured ports: a udev rule on /run (a tmpfs, so no
# remount; re-created at every boot) sets VE_SERVICE=ignore, which serial-starter honours for
# every later plug-in, and stop-tty.sh releases a port it may already have taken at boot.
release_ports() {
    local rules="" dev match tty
    while IFS= read -r dev; do
        [ -n "$dev" ] || continue
        if match=$(udev_match "$dev"); then
            rules="${rules}SUBSYSTEM==\"tty\", $match, ENV{VE_SERVICE}=\"ignore\"
"
        fi
    done < <(config_devices)
    act mkdir -p "$ROOT$(dirname "$UDEV_RULE")"
    {
        echo "# Written by bms-bridge install.sh --boot from $CONFIG: serial-starter leaves these alone."
        printf '%s' "$rules"
    } | write_file "$ROOT$UDEV_RULE"
    if have udevadm; then
        act udevadm control --reload-rules || true
        act udevadm trigger --action=add --subsystem-match=tty || true
    fi
    while IFS= read -r dev; do
        [ -n "$dev" ] || continue
        tty=$(basename "$(readlink -f "$ROOT$dev" 2>/dev/null || echo "$dev")")
        if [ -x "$ROOT$SERIAL_STARTER/stop-tty.sh" ]; then
            act "$ROOT$SERIAL_STARTER/stop-tty.sh" "$tty" || true
        fi
    done < <(config_devices)
}

# The daemontools service: a copy of the template on the volatile file system, linked from
# /service (svscan starts it within 5 s). The run script points at /data, so an update only
# swaps the binary and restarts.
enable_service() {
    act mkdir -p "$ROOT$SERVICE_TEMPLATES" "$ROOT$(dirname "$SERVICE_LINK")" "$ROOT$LOG_DIR"
    if [ ! -d "$ROOT$SERVICE_TEMPLATES/bms-bridge" ] \
        || ! diff -r "$ROOT$APP/service" "$ROOT$SERVICE_TEMPLATES/bms-bridge" >/dev/null 2>&1; then
        act mkdir -p "$ROOT$SERVICE_TEMPLATES/bms-bridge"
        act cp -R "$ROOT$APP/service/." "$ROOT$SERVICE_TEMPLATES/bms-bridge/"
    fi
    if [ "$(readlink "$ROOT$SERVICE_LINK" 2>/dev/null)" != "$SERVICE_TEMPLATES/bms-bridge" ]; then
        act ln -sfn "$SERVICE_TEMPLATES/bms-bridge" "$ROOT$SERVICE_LINK"
    fi
}

restart_service() {
    if have svc && [ -e "$ROOT$SERVICE_LINK/supervise" ]; then
        act svc -t "$ROOT$SERVICE_LINK" || true
    fi
}

# Adds the boot line to /data/rc.local once (idempotent); backs the file up first.
hook_rc_local() {
    local rc=$ROOT$RC_LOCAL
    if [ -f "$rc" ] && grep -qF "$RC_LINE" "$rc"; then
        say "rc.local already re-enables bms-bridge after firmware updates"
        return
    fi
    if [ -f "$rc" ]; then
        act cp -p "$rc" "$ROOT$BASE/rc.local.before-bms-bridge"
        { cat "$rc"; echo "$RC_LINE"; } | write_file "$rc"
    else
        act touch "$ROOT$BASE/rc.local.created-by-bms-bridge"
        printf '#!/bin/bash\n%s\n' "$RC_LINE" | write_file "$rc"
    fi
    act chmod 755 "$rc"
    say "added to $RC_LOCAL: bms-bridge comes back by itself after a firmware update"
}

unhook_rc_local() {
    local rc=$ROOT$RC_LOCAL
    [ -f "$rc" ] || return 0
    if grep -qF "$RC_LINE" "$rc"; then
        grep -vF "$RC_LINE" "$rc" | write_file "$rc"
        act chmod 755 "$rc"
    fi
    if [ -f "$ROOT$BASE/rc.local.created-by-bms-bridge" ] && [ "$DRY_RUN" = 0 ] \
        && [ -z "$(grep -v '^#!' "$rc" | tr -d '[:space:]')" ]; then
        act rm -f "$rc"
    fi
}

verify_bundle() {
    [ -f "$BUNDLE/SHA256SUMS" ] || die "SHA256SUMS missing from $BUNDLE: incomplete download?"
    (cd "$BUNDLE" && sha256sum -c --quiet SHA256SUMS >/dev/null 2>&1) \
        || die "checksum mismatch in $BUNDLE (sha256sum -c SHA256SUMS): download again; nothing was changed"
    say "bundle checksums OK ($(wc -l <"$BUNDLE/SHA256SUMS") files)"
}

# Copies the bundle's files for this machine into a staging directory and checks the copies.
stage() {
    local arch=$1 stage_dir=$2
    act rm -rf "$stage_dir"
    act mkdir -p "$stage_dir/bin" "$stage_dir/service/log"
    act cp "$BUNDLE/bin/$arch/bms-bridge" "$stage_dir/bin/bms-bridge"
    act cp "$BUNDLE/install.sh" "$BUNDLE/VERSION" "$BUNDLE/bms-bridge.toml" "$stage_dir/"
    act cp "$BUNDLE/service/run" "$stage_dir/service/run"
    act cp "$BUNDLE/service/log/run" "$stage_dir/service/log/run"
    act chmod 755 "$stage_dir/bin/bms-bridge" "$stage_dir/install.sh" "$stage_dir/service/run" "$stage_dir/service/log/run"
    [ "$DRY_RUN" = 1 ] && return 0
    # The installed copies must match the published checksums too.
    (
        cd "$stage_dir"
        grep -E "  (bin/$arch/bms-bridge|install.sh|VERSION|bms-bridge.toml|service/run|service/log/run)$" "$BUNDLE/SHA256SUMS" \
            | sed "s#  bin/$arch/bms-bridge\$#  bin/bms-bridge#" >SHA256SUMS
        sha256sum -c --quiet SHA256SUMS
    ) || die "the copied files do not match their checksums (disk full?); nothing was changed"
}

do_install() {
    local arch version old="none"
    arch=$(pick_arch)
    [ -x "$BUNDLE/bin/$arch/bms-bridge" ] \
        || die "this bundle has no binary for $arch (bin/$arch/bms-bridge): download bms-bridge-venus-$arch.tar.gz"
    verify_bundle
    version=$(cat "$BUNDLE/VERSION")
    [ -f "$ROOT$APP/VERSION" ] && old=$(cat "$ROOT$APP/VERSION")
    say "installing bms-bridge $version ($arch) over $old under ${ROOT:-}$BASE"
    act mkdir -p "$ROOT$BASE"
    stage "$arch" "$ROOT$BASE/app.new"
    if [ -d "$ROOT$APP" ]; then
        act rm -rf "$ROOT$PREV"
        act mv "$ROOT$APP" "$ROOT$PREV"
        say "previous version $old kept in $PREV (install.sh --rollback brings it back)"
    fi
    act mv "$ROOT$BASE/app.new" "$ROOT$APP"
    if [ -f "$ROOT$CONFIG" ]; then
        say "config $CONFIG kept as it is"
    else
        act cp "$BUNDLE/bms-bridge.toml" "$ROOT$CONFIG"
        say "example config written to $CONFIG: set [[port]] device and protocol, then it starts polling"
    fi
    hook_rc_local
    boot
    restart_service
    if [ "$DRY_RUN" = 0 ] && ! "$ROOT$APP/bin/bms-bridge" check-config "$ROOT$CONFIG" >/dev/null 2>&1; then
        say "WARNING: $CONFIG has problems: run $APP/bin/bms-bridge check-config $CONFIG"
    fi
    say "done. Check with: $APP/bin/bms-bridge doctor --config $CONFIG ; logs: tail -F $LOG_DIR/current | tai64nlocal"
}

boot() {
    [ -x "$ROOT$APP/bin/bms-bridge" ] || [ "$DRY_RUN" = 1 ] || die "not installed ($APP/bin/bms-bridge missing)"
    enable_service
    release_ports
}

do_rollback() {
    [ -d "$ROOT$PREV" ] || die "nothing to roll back to: $PREV does not exist"
    local from to
    from=$(cat "$ROOT$APP/VERSION" 2>/dev/null || echo unknown)
    to=$(cat "$ROOT$PREV/VERSION" 2>/dev/null || echo unknown)
    act mv "$ROOT$APP" "$ROOT$BASE/app.rollback"
    act mv "$ROOT$PREV" "$ROOT$APP"
    act mv "$ROOT$BASE/app.rollback" "$ROOT$PREV"
    boot
    restart_service
    say "rolled back from $from to $to (run --rollback again to return to $from)"
}

do_uninstall() {
    if [ -e "$ROOT$SERVICE_LINK" ] || [ -L "$ROOT$SERVICE_LINK" ]; then
        act rm -f "$ROOT$SERVICE_LINK"
        if have svc && [ -d "$ROOT$SERVICE_TEMPLATES/bms-bridge/supervise" ]; then
            act svc -dx "$ROOT$SERVICE_TEMPLATES/bms-bridge" "$ROOT$SERVICE_TEMPLATES/bms-bridge/log" || true
        fi
    fi
    act rm -rf "$ROOT$SERVICE_TEMPLATES/bms-bridge"
    local devices
    devices=$(config_devices)
    act rm -f "$ROOT$UDEV_RULE"
    if have udevadm; then
        act udevadm control --reload-rules || true
    fi
    if [ -x "$ROOT$SERIAL_STARTER/start-tty.sh" ]; then
        local dev
        for dev in $devices; do
            act "$ROOT$SERIAL_STARTER/start-tty.sh" "$(basename "$(readlink -f "$ROOT$dev" 2>/dev/null || echo "$dev")")" || true
        done
    fi
    unhook_rc_local
    act rm -rf "$ROOT$APP" "$ROOT$PREV" "$ROOT$BASE/app.new"
    act rm -f "$ROOT$BASE/rc.local.created-by-bms-bridge"
    if [ "$PURGE" = 1 ]; then
        act rm -rf "$ROOT$BASE" "$ROOT$LOG_DIR"
        say "removed, with config, state and logs"
    else
        say "removed; config and charge state kept in $BASE (--uninstall --purge deletes them)"
    fi
}

do_status() {
    say "installed: $(cat "$ROOT$APP/VERSION" 2>/dev/null || echo no)  previous: $(cat "$ROOT$PREV/VERSION" 2>/dev/null || echo none)"
    say "rc.local hook: $(grep -qF "$RC_LINE" "$ROOT$RC_LOCAL" 2>/dev/null && echo yes || echo no)"
    say "service link: $(readlink "$ROOT$SERVICE_LINK" 2>/dev/null || echo none)"
    if have svstat && [ -e "$ROOT$SERVICE_LINK" ]; then
        svstat "$ROOT$SERVICE_LINK" "$ROOT$SERVICE_LINK/log" || true
    fi
    say "ports kept from serial-starter: $(config_devices | tr '\n' ' ')"
}

[ "$DRY_RUN" = 1 ] && say "dry run: nothing is changed"
case $ACTION in
    install) do_install ;;
    boot) boot ;;
    rollback) do_rollback ;;
    uninstall) do_uninstall ;;
    status) do_status ;;
esac
