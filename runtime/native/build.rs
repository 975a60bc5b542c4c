fn main() {
    napi_build::setup();
    // The node-wide shared table (capability `shared`) is one C implementation, shared with the
    // V8 engine's addon, so both engines read and write the same file layout.
    let src = "../addon/src/shared-table.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=../addon/src/shared-table.h");
    cc::Build::new().file(src).define("_GNU_SOURCE", None).flag_if_supported("-std=gnu11").warnings(true).compile("ambit_shared_table");
}
