//! Puts the source commit into `--version` (`HKSV_BUILD_COMMIT`): `git describe` when the
//! build runs in a checkout, else "unknown" (a source archive).
fn main() {
    let commit = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=HKSV_BUILD_COMMIT={commit}");
    // A new commit or checkout changes HEAD or the branch it points at.
    for f in ["../../.git/HEAD", "../../.git/index"] {
        println!("cargo:rerun-if-changed={f}");
    }
}
