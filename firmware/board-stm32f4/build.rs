//! Puts `memory.x` where `cortex-m-rt`'s `link.x` looks for it, and links the
//! binaries with `link.x`, so no `.cargo/config.toml` is needed.

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("memory.x"), include_bytes!("memory.x")).expect("OUT_DIR is writable");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    // Only a bare-metal ARM link knows `link.x`: a host `cargo check` of the
    // workspace must not get the flag.
    if env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "none") {
        println!("cargo:rustc-link-arg-bins=-Tlink.x");
    }
}
