//! hksv-bridge binary.

fn main() {
    println!("hksv-bridge: under construction");
}
