//! Fetches the dashboard's charting library, uPlot, from npm at the version
//! `web/package-lock.json` pins (`npm ci`, integrity-checked), into the build's own folder:
//! `faces/http/dashboard.rs` embeds it in the binary, so the dashboard needs no internet
//! and the repository holds none of its code. `SPUD_WEB_MODULES` names a `node_modules`
//! folder that has it already, for builds without npm or a registry.

use std::path::{Path, PathBuf};
use std::process::Command;

const FILES: [&str; 2] = ["uplot/dist/uPlot.iife.min.js", "uplot/dist/uPlot.min.css"];

fn main() {
    println!("cargo:rerun-if-changed=web/package.json");
    println!("cargo:rerun-if-changed=web/package-lock.json");
    println!("cargo:rerun-if-env-changed=SPUD_WEB_MODULES");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let modules = match std::env::var_os("SPUD_WEB_MODULES") {
        Some(dir) => PathBuf::from(dir),
        None => npm_ci(&out.join("web")),
    };
    for file in FILES {
        let from = modules.join(file);
        let name = Path::new(file).file_name().expect("a file name");
        if let Err(e) = std::fs::copy(&from, out.join(name)) {
            panic!("the dashboard needs {}: {e}", from.display());
        }
    }
}

/// `npm ci` in `dir` with the lock file, unless what it pins is there already.
fn npm_ci(dir: &Path) -> PathBuf {
    let lock = std::fs::read_to_string("web/package-lock.json").expect("web/package-lock.json");
    let modules = dir.join("node_modules");
    if std::fs::read_to_string(dir.join("package-lock.json"))
        .ok()
        .as_deref()
        == Some(lock.as_str())
        && FILES.iter().all(|f| modules.join(f).exists())
    {
        return modules;
    }
    std::fs::create_dir_all(dir).expect("OUT_DIR is writable");
    std::fs::copy("web/package.json", dir.join("package.json")).expect("web/package.json");
    // npm ci reads the lock from here; an install that stops halfway is redone next build.
    let pending = dir.join("package-lock.json");
    std::fs::write(&pending, &lock).expect("OUT_DIR is writable");
    let status = Command::new("npm")
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--loglevel=error",
        ])
        .current_dir(dir)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "npm ci for the dashboard's charting library (uPlot) failed ({s}): it needs the npm \
             registry once; or set SPUD_WEB_MODULES to a node_modules folder that has uplot"
        ),
        Err(e) => panic!(
            "the dashboard's charting library (uPlot) comes from npm, which could not run ({e}): \
             install npm (Debian's package npm; scripts/run does), or set SPUD_WEB_MODULES to a \
             node_modules folder that has uplot"
        ),
    }
    modules
}
