//! Links the relay service's running code first (see `../text_order.rs`).

include!("../text_order.rs");

fn main() {
    link_in_text_order();
}
