//! `klad-web`: the web desk where officials and facilitators work, mounted
//! by klad-server under [`MOUNT`] on its own port.
//!
//! Server-rendered HTML (askama templates, checked when the crate builds);
//! every page works without JavaScript. The desk holds no domain logic: it
//! reads klad-core views of the server's documents and asks the server, through
//! [`Backend`], for everything that decides or stores. What a person reads
//! comes from the Dutch and English catalogues ([`i18n`]).
//!
//! Code map:
//! - [`backend`]: the trait klad-server implements.
//! - [`session`]: the session cookie, form secrets, the origin check.
//! - [`i18n`]: languages and their catalogues.
//! - `pages`: the handlers and their templates (`web/templates/`).
//! - `text`: the article text with its commented passages marked.

pub mod backend;
pub mod i18n;
mod pages;
pub mod session;
mod text;

use std::sync::{Arc, Mutex};

use axum::Router;

pub use backend::{
    Act, Backend, DeskError, InvitationProblem, Invited, LastSeen, NewInvitation, NewProcess,
    StoredSession,
};
pub use i18n::{Catalogue, Lang};

/// Where klad-server mounts the desk.
pub const MOUNT: &str = "/desk";

/// How the desk runs.
#[derive(Clone, Debug, Default)]
pub struct DeskConfig {
    /// The one-time secret of the first-run link (`/desk/start/<secret>`),
    /// when the server holds no process yet. It opens the page that creates
    /// the first process and invites its facilitator, once.
    pub setup_secret: Option<String>,
    /// Send cookies with `Secure` even without a TLS proxy header (for a
    /// server that terminates TLS itself).
    pub always_secure: bool,
}

/// The desk's state, shared by its handlers.
pub struct Desk<B> {
    backend: Arc<B>,
    catalogue: Catalogue,
    setup_secret: Mutex<Option<String>>,
    always_secure: bool,
}

impl<B: Backend> Desk<B> {
    /// A desk over `backend`.
    pub fn new(backend: Arc<B>, config: DeskConfig) -> Self {
        Self {
            backend,
            catalogue: Catalogue::new(),
            setup_secret: Mutex::new(config.setup_secret),
            always_secure: config.always_secure,
        }
    }
}

/// The first-run link's path for `secret`.
pub fn setup_path(secret: &str) -> String {
    format!("{MOUNT}/start/{secret}")
}

/// The desk's routes, all under [`MOUNT`], with their state applied.
pub fn router<B: Backend>(backend: Arc<B>, config: DeskConfig) -> Router {
    pages::routes(Arc::new(Desk::new(backend, config)))
}
