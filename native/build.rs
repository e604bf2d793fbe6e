//! Warns when OpenH264 will be built without its SIMD assembly: its build script silently
//! falls back to plain C when `nasm` is missing, and H.264 encoding is then about 2.8x
//! slower (BENCHMARKS.md, ninth run), enough to make writing the MP4 the slowest part of a LongSANA
//! chunk.
fn main() {
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=OPENH264_NO_ASM");
    println!("cargo:rerun-if-env-changed=NASM");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if !matches!(arch.as_str(), "x86_64" | "x86") || std::env::var_os("OPENH264_NO_ASM").is_some() {
        return;
    }
    let nasm = std::env::var_os("NASM").unwrap_or_else(|| "nasm".into());
    let found = std::process::Command::new(&nasm).arg("-v").output().map(|o| o.status.success()).unwrap_or(false);
    if !found {
        println!("cargo:warning=nasm not found: OpenH264 is built without SIMD and H.264 encoding runs about 2.8x slower (apt-get install nasm, then `cargo clean -p openh264-sys2` and rebuild)");
    }
}
