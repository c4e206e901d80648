//! Finds spandsp, which provides the G.722 codec behind the `doorphoneg722enc` and
//! `doorphoneg722dec` elements. The service loads it with `dlopen` the first time a
//! call uses G.722 (see `g722.rs`), so the build only checks its version and names
//! its file: `DOORPHONE_SPANDSP_SONAME`, libtool's `libspandsp.so.N`, the name the
//! development link `libspandsp.so` points at up to its first version number.
//! It also links the service's running code first (see `../text_order.rs`).

use std::path::Path;

include!("../text_order.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    link_in_text_order();
    let library = match pkg_config::Config::new()
        .atleast_version("0.0.6")
        .cargo_metadata(false)
        .probe("spandsp")
    {
        Ok(library) => library,
        Err(err) => panic!("spandsp (libspandsp-dev) is required for G.722: {err}"),
    };
    let link = library
        .link_paths
        .iter()
        .map(|dir| dir.join("libspandsp.so"))
        .find(|path| path.exists())
        .or_else(|| {
            // A system folder is left out of the link paths: the .pc file's
            // libdir, under the sysroot of a cross build.
            let libdir = pkg_config::get_variable("spandsp", "libdir").ok()?;
            let sysroot = std::env::var("PKG_CONFIG_SYSROOT_DIR").unwrap_or_default();
            [format!("{sysroot}{libdir}"), libdir]
                .iter()
                .map(|dir| Path::new(dir).join("libspandsp.so"))
                .find(|path| path.exists())
        })
        .unwrap_or_else(|| panic!("no libspandsp.so in {:?}", library.link_paths));
    println!("cargo:rerun-if-changed={}", link.display());
    let file = std::fs::canonicalize(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let soname = match name.strip_prefix("libspandsp.so.") {
        Some(version) => format!("libspandsp.so.{}", version.split('.').next().unwrap()),
        None => panic!("{} is not a versioned libspandsp.so.N", file.display()),
    };
    println!("cargo:rustc-env=DOORPHONE_SPANDSP_SONAME={soname}");
}
