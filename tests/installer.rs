//! The Venus OS installer (`packaging/venus/install.sh`) against a temporary directory standing in
//! for the Venus root: install, update (config kept), rc.local idempotency, --dry-run, checksum
//! mismatch, --rollback, --uninstall. The checks themselves are in
//! `tests/installer/venus-install-test.sh`; shellcheck runs on every script when it is installed.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn venus_install_update_rollback_uninstall() {
    let out = Command::new("bash")
        .arg(Path::new(ROOT).join("tests/installer/venus-install-test.sh"))
        .arg(env!("CARGO_BIN_EXE_bms-bridge"))
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "installer test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("installer checks passed"), "{stdout}");
}

#[test]
fn shell_scripts_pass_shellcheck() {
    if Command::new("shellcheck").arg("--version").output().is_err() {
        eprintln!("shellcheck not installed (apt-get install -y shellcheck): skipped");
        return;
    }
    let scripts = [
        "packaging/venus/install.sh",
        "packaging/venus/service/run",
        "packaging/venus/service/log/run",
        "scripts/make-bundle.sh",
        "scripts/release.sh",
        "tests/installer/venus-install-test.sh",
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
