//! Target `desk`: the web desk's requests as an attacker (or a broken
//! browser) sends them: any form body, query string and path id, to every
//! route, from a signed-in facilitator or official with their real session
//! and form secret. The desk is klad-web's router over klad-server's real
//! backend (`ServerDesk` on an engine with its sled store), so a form goes
//! all the way: parsing, the session and form-secret checks, klad-core's
//! rules, the authorship check and the hub's write.
//!
//! Input: byte 0 picks the route, byte 1 who sends it (facilitator or
//! official) and how (with or without the form secret's field filled in);
//! the rest is the form body or query string. In it, `CSRF`, `ART` and
//! `THR` stand for the sender's form secret, the article's id and the
//! thread's id (the harness fills them in), so mutations of a real form
//! stay past the checks that would refuse a garbled one.
//!
//! Asserts: no panic; never a 5xx (every refusal is the person's to fix,
//! and the engine is healthy); every 4xx page carries its sentence
//! (`class="problem"`); and afterwards the process's documents still load
//! and their views answer.
//!
//! The world (engine, process, members, sessions, one article with one
//! comment thread) is built once and rebuilt every [`REBUILD_AFTER`] inputs,
//! so what inputs add (members, comments, phases) does not slow the target
//! down for good.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use klad_core::rules::Role;
use klad_core::{ArticleId, KladDocument, ProcessId, Session};
use klad_server::desk::ServerDesk;
use klad_server::server::{Engine, open_engine};
use klad_web::{Backend, DeskConfig};
use tower::ServiceExt;

/// Inputs run on one world before it is built afresh.
const REBUILD_AFTER: usize = 500;

/// The routes, with the method. `ART` and `THR` are filled in.
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/desk/articles/ART/comment"),
    ("POST", "/desk/articles/ART/text"),
    ("POST", "/desk/threads/THR/answer"),
    ("POST", "/desk/threads/THR/reply"),
    ("POST", "/desk/threads/THR/hide"),
    ("POST", "/desk/threads/THR/unhide"),
    ("POST", "/desk/members"),
    ("POST", "/desk/phase"),
    ("POST", "/desk/letters"),
    ("POST", "/desk/checkin/done"),
    ("POST", "/desk/versions/name"),
    ("POST", "/desk/language"),
    ("POST", "/desk/in"),
    ("POST", "/desk/start/SECRET"),
    ("POST", "/desk/articles/bogus/comment"),
    ("POST", "/desk/threads/bogus/answer"),
    ("GET", "/desk/versions/text"),
    ("GET", "/desk/versions/diff"),
    ("GET", "/desk/articles/ART"),
    ("GET", "/desk/inbox"),
    ("GET", "/desk/members"),
    ("GET", "/desk/checkin"),
    ("GET", "/desk/letters"),
    ("GET", "/desk/versions"),
    ("GET", "/desk/export"),
    ("GET", "/desk/export/nota.csv"),
    ("GET", "/desk/export/nota.html"),
];

/// A signed-in member of the desk.
struct Signed {
    cookie: String,
    csrf: String,
}

struct World {
    rt: tokio::runtime::Runtime,
    engine: Option<Engine>,
    app: axum::Router,
    backend: Arc<ServerDesk>,
    process: ProcessId,
    facilitator: Signed,
    official: Signed,
    article: String,
    thread: String,
    dir: PathBuf,
    runs: usize,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(engine) = self.engine.take() {
            self.rt.block_on(engine.stop());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static WORLD: Mutex<Option<World>> = Mutex::new(None);

/// Where the world's data directory goes: memory when the machine has it
/// (the store syncs every write).
fn scratch() -> PathBuf {
    let base = PathBuf::from("/dev/shm");
    let base = if base.is_dir() {
        base
    } else {
        std::env::temp_dir()
    };
    static WORLDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WORLDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    base.join(format!("klad-fuzz-desk-{}-{n}", std::process::id()))
}

async fn send(
    app: &axum::Router,
    req: Request<Body>,
) -> (StatusCode, Vec<(String, String)>, String) {
    let resp = app.clone().oneshot(req).await.expect("the router answers");
    let status = resp.status();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .expect("the body reads");
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// Signs in with an invitation token and reads the session's form secret.
async fn sign_in(app: &axum::Router, token: &str) -> Signed {
    let form = format!("token={token}");
    let req = Request::post("/desk/in")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let (status, headers, body) = send(app, req).await;
    let cookie = headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .and_then(|(_, v)| v.split(';').next())
        .unwrap_or_else(|| panic!("signing in sets a cookie ({status}: {body})"))
        .to_owned();
    let req = Request::get("/desk/members")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let (_, _, page) = send(app, req).await;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a signed-in page holds the form secret")
        .to_owned();
    Signed { cookie, csrf }
}

fn build() -> World {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = scratch();
    let (engine, backend, app, process, facilitator, official, article, thread) =
        rt.block_on(async {
            let engine = open_engine(&dir).await.expect("the engine opens");
            let f = engine.facilitation.clone();
            let created = f.create_process("Fuzz").await.expect("a process");
            let pid = created.process_id.clone();
            let ttl = Duration::from_secs(3600);
            let fien = f
                .add_member(&pid, None, "Fien", Role::Facilitator, ttl, false)
                .await
                .expect("a facilitator");
            let olga = f
                .add_member(&pid, None, "Olga", Role::Official, ttl, false)
                .await
                .expect("an official");
            let dirk = f
                .add_member(&pid, None, "Dirk", Role::Drafter, ttl, false)
                .await
                .expect("a drafter");
            // Dirk's article and comment, written as his phone would.
            let backend = Arc::new(ServerDesk::new(f.clone()));
            let docs = backend.process_docs(&pid).await.expect("the documents");
            let info = docs.process.info().expect("the process");
            let before_text = docs.text.automerge().clone();
            let before_mine = docs.contributions[&dirk.member_id].automerge().clone();
            let mut s = Session::new(docs, dirk.member_id.clone(), automerge::ActorId::random());
            let article = s
                .create_article(1, None, "Artikel 1", "De buurt schrijft zelf.")
                .expect("an article");
            let thread = s
                .comment(2, &article, 3, 7, "Goed punt")
                .expect("a comment");
            let lease = f.hubs().lease(&pid).expect("the hub");
            let text = s
                .docs()
                .text
                .automerge()
                .get_changes(&before_text.get_heads());
            let mine = s.docs().contributions[&dirk.member_id]
                .automerge()
                .get_changes(&before_mine.get_heads());
            assert!(lease.write(info.text_doc.as_str(), text).await.unwrap());
            assert!(lease.write(&dirk.contributions_doc, mine).await.unwrap());
            drop(lease);
            let app = klad_web::router(backend.clone(), DeskConfig::default());
            let facilitator = sign_in(&app, &fien.token).await;
            let official = sign_in(&app, &olga.token).await;
            (
                engine,
                backend,
                app,
                pid,
                facilitator,
                official,
                article,
                thread.to_string(),
            )
        });
    let ArticleId(article) = article;
    World {
        rt,
        engine: Some(engine),
        app,
        backend,
        process,
        facilitator,
        official,
        article,
        thread,
        dir,
        runs: 0,
    }
}

/// Fills in the placeholders of `text`.
fn fill(text: &str, csrf: &str, article: &str, thread: &str) -> String {
    text.replace("CSRF", csrf)
        .replace("ART", article)
        .replace("THR", thread)
}

pub fn run(data: &[u8]) {
    let [route, who, rest @ ..] = data else {
        return;
    };
    let mut guard = WORLD.lock().unwrap_or_else(|e| e.into_inner());
    if guard.as_ref().is_none_or(|w| w.runs >= REBUILD_AFTER) {
        *guard = None; // the old world goes first (its directory, its runtime)
        *guard = Some(build());
    }
    let w = guard.as_mut().expect("a world");
    w.runs += 1;
    let (method, path) = ROUTES[usize::from(*route) % ROUTES.len()];
    let signed = if who & 1 == 0 {
        &w.facilitator
    } else {
        &w.official
    };
    let payload = fill(
        &String::from_utf8_lossy(rest),
        &signed.csrf,
        &w.article,
        &w.thread,
    );
    let path = fill(path, &signed.csrf, &w.article, &w.thread);
    let mut req = if method == "GET" {
        // The payload is the query string; as bytes a browser could send.
        let query: String = payload
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != '#')
            .collect();
        Request::get(format!("{path}?{query}"))
    } else {
        Request::post(path.as_str())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
    };
    if who & 2 == 0 {
        req = req.header(header::COOKIE, &signed.cookie);
    }
    if who & 4 != 0 {
        req = req.header("sec-fetch-site", "same-origin");
    }
    let Ok(req) = req.body(Body::from(if method == "GET" {
        Vec::new()
    } else {
        payload.into_bytes()
    })) else {
        // Not a request at all (a URI no client could send).
        return;
    };
    let (status, _, body) = w.rt.block_on(send(&w.app, req));
    assert!(
        !status.is_server_error(),
        "{method} {path}: {status}: {body}"
    );
    if status.is_client_error() {
        let sentence = body
            .split("class=\"problem\" role=\"alert\">")
            .nth(1)
            .and_then(|rest| rest.split("</p>").next())
            .unwrap_or("");
        super::assert_sentence(sentence);
    }
    // The process's documents still load, and their views answer.
    let docs =
        w.rt.block_on(w.backend.process_docs(&w.process))
            .expect("the documents load after any request");
    let info = docs.process.info().expect("the process document reads");
    assert!(!info.members.is_empty());
    let _ = klad_core::views::articles(&docs);
    let _ = klad_core::views::threads(&docs, None, 0);
}
