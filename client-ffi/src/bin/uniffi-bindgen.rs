//! The workspace's `uniffi-bindgen`: generates Kotlin, Swift and Python
//! bindings from the built klad-ffi library (library mode). Pinned to the same
//! uniffi version as the library, see `client-ffi/Cargo.toml`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
