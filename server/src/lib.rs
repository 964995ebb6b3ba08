//! `klad-server`: the sync server.
//!
//! Not built yet: this crate holds the place of the automerge-repo sync server
//! (axum + tokio + samod on klad-core's store) that issue 3 asks for. It has no
//! binary until that work lands, so nothing can mistake it for a running server.
