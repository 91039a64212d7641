//! The Venus OS installer (`packaging/venus/install.sh`) against a temporary directory standing in
//! for the Venus root: install, update (config kept), rc.local idempotency, --dry-run, checksum
//! mismatch, --rollback, --uninstall, and the one-line install from a per-architecture release
//! tarball; the Debian package (`scripts/make-deb.sh`, `packaging/debian/`). The checks themselves
//! are in `tests/installer/*.sh`; shellcheck runs on every script when it is installed.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `tests/installer/<script>` on the test build's binary; its last line says how many passed.
fn run_checks(script: &str, passed: &str) {
    let out = Command::new("bash")
        .arg(Path::new(ROOT).join("tests/installer").join(script))
        .arg(env!("CARGO_BIN_EXE_bms-bridge"))
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(passed), "{stdout}");
}

#[test]
fn venus_install_update_rollback_uninstall() {
    run_checks("venus-install-test.sh", "installer checks passed");
}

/// True (and says the test is skipped) when `tool` cannot be run here.
fn missing(tool: &str, hint: &str) -> bool {
    let missing = Command::new(tool).arg("--version").output().is_err();
    if missing {
        eprintln!("{tool} not installed ({hint}): skipped");
    }
    missing
}

#[test]
fn debian_package_layout_unit_and_maintainer_scripts() {
    if missing("dpkg-deb", "not a Debian host") {
        return;
    }
    run_checks("deb-test.sh", "deb checks passed");
}

#[test]
fn shell_scripts_pass_shellcheck() {
    if missing("shellcheck", "apt-get install -y shellcheck") {
        return;
    }
    let scripts = [
        "packaging/venus/install.sh",
        "packaging/venus/service/run",
        "packaging/venus/service/log/run",
        "packaging/debian/postinst",
        "packaging/debian/prerm",
        "packaging/debian/postrm",
        "scripts/make-bundle.sh",
        "scripts/make-deb.sh",
        "scripts/release.sh",
        "tests/installer/checks.sh",
        "tests/installer/venus-install-test.sh",
        "tests/installer/deb-test.sh",
    ];
    let present: Vec<_> = scripts.iter().filter(|s| Path::new(ROOT).join(s).exists()).collect();
    let out = Command::new("shellcheck")
        .current_dir(ROOT)
        .args(present.iter().map(|s| s.to_string()))
        .output()
        .expect("shellcheck runs");
    assert!(
        out.status.success(),
        "shellcheck:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
