//! Links spandsp, which provides the G.722 codec behind the `doorphoneg722enc` and
//! `doorphoneg722dec` elements.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if let Err(err) = pkg_config::Config::new()
        .atleast_version("0.0.6")
        .probe("spandsp")
    {
        panic!("spandsp (libspandsp-dev) is required for G.722: {err}");
    }
}
