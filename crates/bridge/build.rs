//! Puts the source commit into `--version` (`HKSV_BUILD_COMMIT`): `git describe` when the
//! build runs in a checkout, else "unknown" (a source archive).
//!
//! No `--dirty` and no watch on `.git/index`: `git describe --dirty` refreshes the index, so on
//! a fresh checkout it rewrote the file it was watched by and the next `cargo run` rebuilt the
//! crate (CI, issue 15).
fn main() {
    let commit = std::process::Command::new("git")
        .args(["describe", "--always", "--abbrev=12"])
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=HKSV_BUILD_COMMIT={commit}");
    // A new commit or checkout changes HEAD or the branch it points at.
    // Only files that exist: Cargo reruns a build script every time for a missing one.
    let git = std::path::Path::new("../../.git");
    let mut watched = vec![git.join("HEAD"), git.join("packed-refs")];
    if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
        && let Some(branch) = head.trim().strip_prefix("ref: ")
    {
        watched.push(git.join(branch));
    }
    for f in watched.iter().filter(|f| f.is_file()) {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    // Without a watched file Cargo would rerun on any change in the package.
    println!("cargo:rerun-if-changed=build.rs");
}
