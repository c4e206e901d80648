// Shared by the services' build scripts (`include!`d): links the code a service
// runs, at start, in a call and in a request, ahead of the rest of its text.
//
// `text.order`, beside each service's Cargo.toml, lists those functions (their
// symbols), as `cargo xtask text-order` recorded them running. The kernel maps a
// program's code into memory 64 kB at a time around each page the program runs
// ("fault-around"); with the code that runs spread over the whole text, almost
// all of it stays resident. Grouped, it takes about half.
//
// The symbol names hold hashes of the toolchain, the dependencies' versions and
// features, so the list is for the host's release build (`cargo build --release
// --workspace`, which links with rust-lld, whose `--symbol-ordering-file` this
// is). A name the build no longer has is skipped; a function the list lacks is
// linked after the others, as before.
fn link_in_text_order() {
    println!("cargo:rerun-if-changed=text.order");
    println!("cargo:rerun-if-env-changed=DOORPHONE_TEXT_ORDER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let wanted = match var("DOORPHONE_TEXT_ORDER").as_str() {
        "0" | "no" => false,
        _ => var("TARGET") == "x86_64-unknown-linux-gnu" && var("PROFILE") == "release",
    };
    // rust-lld links for that target unless a linker of one's own is set.
    let own_linker = !var("RUSTC_LINKER").is_empty()
        || var("CARGO_ENCODED_RUSTFLAGS").contains("linker");
    let order = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("text.order");
    if wanted && !own_linker && order.exists() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
