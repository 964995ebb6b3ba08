//! Test support shared by the phone library's Rust tests: a bounded wait and
//! a real klad-server serving on loopback inside the test process.
#![allow(dead_code)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use samod::{DialError, Dialer, Transport};

use serde_json::{Value, json};

/// Polls `f` every 50 ms until it returns `Some`, for at most `limit`.
pub fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A klad-server serving on loopback inside this test process.
pub struct Server {
    pub addr: String,
    pub admin: String,
    pub runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("server");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.spawn(klad_server::server::serve(
            klad_server::server::ServeConfig {
                listen: "127.0.0.1:0".into(),
                data: data.clone(),
                store: Default::default(),
                max_message_bytes: 16 * 1024 * 1024,
                max_connections: 64,
                fault_put_delay: None,
                idle_unload: Duration::from_secs(300),
                fault_unload_delay: None,
                fault_panic_name: None,
                fault_sync_fail_at: None,
                advertise: None,
                lease: klad_server::cluster::DEFAULT_LEASE,
                restart_in_place: false,
            },
        ));
        let addr = eventually("the server to listen", Duration::from_secs(30), || {
            let v: Value =
                serde_json::from_slice(&std::fs::read(data.join("server.json")).ok()?).ok()?;
            Some(v["listen"].as_str()?.to_owned())
        });
        let admin = std::fs::read_to_string(data.join("admin-secret"))
            .unwrap()
            .trim()
            .to_owned();
        Server {
            addr,
            admin,
            runtime,
            _dir: dir,
        }
    }

    pub fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .runtime
            .block_on(klad_server::client::request(
                &self.addr,
                "POST",
                path,
                Some(&self.admin),
                Some(&body),
            ))
            .unwrap();
        assert!(r.status < 300, "{path}: {} {}", r.status, r.body);
        serde_json::from_str(&r.body).unwrap()
    }

    /// Creates a process; returns its id and its text document's id.
    pub fn create_process(&self, title: &str) -> (String, String) {
        let v = self.post("/api/processes", json!({ "title": title }));
        (
            v["process"]["process_id"].as_str().unwrap().to_owned(),
            v["process"]["text_doc"].as_str().unwrap().to_owned(),
        )
    }

    pub fn invite(&self, process: &str, name: &str, role: &str) -> Value {
        self.post(
            &format!("/api/processes/{process}/members"),
            json!({ "name": name, "role": role }),
        )
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One series of `/metrics` (plain HTTP), 0 when it is not there yet.
    pub fn metric(&self, series: &str) -> u64 {
        let r = self
            .runtime
            .block_on(klad_server::client::request(
                &self.addr, "GET", "/metrics", None, None,
            ))
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .map_or(0, |v| v as u64)
    }

    pub fn refused(&self, reason: &str) -> u64 {
        self.metric(&format!(
            "klad_refused_changes_total{{reason=\"{reason}\"}}"
        ))
    }

    /// Registers `actor` as a device of the token's member, as a phone does
    /// when it connects (`&actor=` on the sync URL).
    pub fn register_device(&self, token: &str, actor: &automerge::ActorId) {
        let query = klad_sync::connect::SyncQuery {
            token: Some(token.to_owned()),
            actor: Some(actor.to_hex_string()),
            ..Default::default()
        };
        let path = klad_sync::connect::SYNC_PATH;
        let url = format!("ws://{}{path}?{}", self.addr, query.to_query());
        self.runtime
            .block_on(tokio_tungstenite::connect_async(url))
            .expect("the device is registered");
    }
}

/// Hands samod the one transport of an in-memory pipe (a peer link in a test).
pub struct Once(pub url::Url, pub Mutex<Option<Transport>>);

#[derive(Debug, thiserror::Error)]
#[error("the pipe is gone")]
pub struct Gone;

impl Dialer for Once {
    type Error = Gone;
    fn url(&self) -> url::Url {
        self.0.clone()
    }
    fn connect(
        &self,
    ) -> futures::future::BoxFuture<'static, Result<Transport, DialError<Self::Error>>> {
        let t = self.1.lock().unwrap().take();
        Box::pin(async move { t.ok_or(DialError::PermanentFailure(Gone)) })
    }
}
