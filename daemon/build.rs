//! Link step of the `tch` feature (the default build needs nothing here).
//!
//! torch-sys asks for libtorch_cuda, but rustc links with `--as-needed` and hark references no
//! CUDA symbol, so the linker drops it and libtorch then reports no GPU even on a Jetson. Link
//! it with `--no-as-needed` when the libtorch we build against has it, and record libtorch's
//! directory as the binary's rpath so it starts without LD_LIBRARY_PATH.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    // Set by torch-sys (links = "tch") for crates that depend on it directly.
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib = std::path::PathBuf::from(lib);
    println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
