//! A bare samod client of `klad-server` for the benchmarks: connects over a
//! plain loopback websocket with a member's token and counts every frame and
//! byte in both directions (what the wire costs).

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use samod::{
    BackoffConfig, DialError, Dialer, DialerHandle, DocHandle, DocumentId, PeerId, Repo, Transport,
};
use tokio_tungstenite::tungstenite::Message;

/// Frames and bytes over one client's websocket.
#[derive(Default)]
pub struct Counter {
    pub sent_frames: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub received_frames: AtomicU64,
    pub received_bytes: AtomicU64,
}

/// A snapshot of a [`Counter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent_frames: u64,
    pub sent_bytes: u64,
    pub received_frames: u64,
    pub received_bytes: u64,
}

impl Counter {
    pub fn get(&self) -> Counts {
        Counts {
            sent_frames: self.sent_frames.load(Ordering::SeqCst),
            sent_bytes: self.sent_bytes.load(Ordering::SeqCst),
            received_frames: self.received_frames.load(Ordering::SeqCst),
            received_bytes: self.received_bytes.load(Ordering::SeqCst),
        }
    }
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            sent_frames: self.sent_frames - o.sent_frames,
            sent_bytes: self.sent_bytes - o.sent_bytes,
            received_frames: self.received_frames - o.received_frames,
            received_bytes: self.received_bytes - o.received_bytes,
        }
    }
}

/// Failures are transient (retried); there is no permanent one.
type ConnectError = std::convert::Infallible;

struct WsDialer {
    url: url::Url,
    counter: Arc<Counter>,
    latency: Duration,
}

impl Dialer for WsDialer {
    type Error = ConnectError;

    fn url(&self) -> url::Url {
        let mut u = self.url.clone();
        u.set_query(None);
        u
    }

    fn connect(&self) -> BoxFuture<'static, Result<Transport, DialError<ConnectError>>> {
        let url = self.url.clone();
        let counter = self.counter.clone();
        let latency = self.latency;
        Box::pin(async move {
            let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .map_err(DialError::transient)?;
            let (mut ws_sink, mut ws_stream) = ws.split();
            // Each frame is counted when it crosses the socket and delivered
            // `latency` later, in order (a simulated one-way network delay).
            let (in_tx, in_rx) = mpsc::unbounded::<(Instant, Vec<u8>)>();
            let rx = counter.clone();
            tokio::spawn(async move {
                while let Some(Ok(m)) = ws_stream.next().await {
                    if let Message::Binary(b) = m {
                        trace_frame("<-", &b);
                        rx.received_frames.fetch_add(1, Ordering::SeqCst);
                        rx.received_bytes
                            .fetch_add(b.len() as u64, Ordering::SeqCst);
                        if in_tx.unbounded_send((Instant::now(), b.to_vec())).is_err() {
                            break;
                        }
                    }
                }
            });
            let stream = Box::pin(in_rx.then(move |(t, b)| async move {
                tokio::time::sleep_until((t + latency).into()).await;
                Ok::<_, std::io::Error>(b)
            }));
            let (out_tx, mut out_rx) = mpsc::unbounded::<(Instant, Vec<u8>)>();
            tokio::spawn(async move {
                while let Some((t, b)) = out_rx.next().await {
                    tokio::time::sleep_until((t + latency).into()).await;
                    trace_frame("->", &b);
                    counter.sent_frames.fetch_add(1, Ordering::SeqCst);
                    counter
                        .sent_bytes
                        .fetch_add(b.len() as u64, Ordering::SeqCst);
                    if ws_sink.send(Message::Binary(b.into())).await.is_err() {
                        break;
                    }
                }
                let _ = ws_sink.close().await;
            });
            let sink = out_tx.with(|b: Vec<u8>| {
                futures::future::ready(Ok::<_, mpsc::SendError>((Instant::now(), b)))
            });
            Ok(Transport::new(stream, Box::pin(sink))
                .with_expected_peer_id(PeerId::from("klad-server")))
        })
    }
}

/// With `KLAD_BENCH_TRACE` set, prints each frame's type and sync contents.
fn trace_frame(dir: &str, bytes: &[u8]) {
    if std::env::var_os("KLAD_BENCH_TRACE").is_none() {
        return;
    }
    let Ok(f) = klad_sync::wire::parse(bytes) else {
        return;
    };
    match f.sync_message() {
        Ok(Some(m)) => eprintln!(
            "{dir} {} {} bytes: heads {} need {} have {} changes {}",
            f.kind,
            bytes.len(),
            m.heads.len(),
            m.need.len(),
            m.have.len(),
            m.changes.len()
        ),
        _ => eprintln!("{dir} {} {} bytes", f.kind, bytes.len()),
    }
}

/// A connected client.
pub struct Client {
    pub repo: Repo,
    pub counter: Arc<Counter>,
    url: url::Url,
    latency: Duration,
    dialer: std::sync::Mutex<DialerHandle<ConnectError>>,
}

async fn dial(
    repo: &Repo,
    url: &url::Url,
    counter: &Arc<Counter>,
    latency: Duration,
) -> anyhow::Result<DialerHandle<ConnectError>> {
    // The first dial can fail on a race inside samod: always allow retries.
    let backoff = BackoffConfig {
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(500),
        max_retries: Some(50),
    };
    let dialer = repo
        .dial(
            backoff,
            Arc::new(WsDialer {
                url: url.clone(),
                counter: counter.clone(),
                latency,
            }),
        )
        .map_err(|_| anyhow::anyhow!("the client repo stopped"))?;
    tokio::time::timeout(Duration::from_secs(30), dialer.established())
        .await
        .context("the server did not accept the connection within 30 s")?
        .map_err(|e| anyhow::anyhow!("could not connect to {url}: {e:?}"))?;
    Ok(dialer)
}

impl Client {
    /// Connects as `member` with `token` to the server at `addr` (`host:port`).
    pub async fn connect(addr: &str, token: &str, member: &str) -> anyhow::Result<Client> {
        Self::connect_with_latency(addr, token, member, Duration::ZERO).await
    }

    /// [`Self::connect`], with every frame delayed by `latency` each way.
    pub async fn connect_with_latency(
        addr: &str,
        token: &str,
        member: &str,
        latency: Duration,
    ) -> anyhow::Result<Client> {
        let repo = Repo::build_tokio()
            .with_peer_id(PeerId::from(member))
            .load()
            .await;
        let counter = Arc::new(Counter::default());
        let mut url = url::Url::parse(&format!("ws://{addr}/sync"))?;
        url.query_pairs_mut().append_pair("token", token);
        let dialer = dial(&repo, &url, &counter, latency).await?;
        Ok(Client {
            repo,
            counter,
            url,
            latency,
            dialer: std::sync::Mutex::new(dialer),
        })
    }

    fn dialer(&self) -> DialerHandle<ConnectError> {
        self.dialer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Goes offline: documents stay, edits wait.
    pub fn disconnect(&self) {
        self.dialer().close();
    }

    /// Comes back online (a new connection).
    pub async fn reconnect(&self) -> anyhow::Result<()> {
        let d = dial(&self.repo, &self.url, &self.counter, self.latency).await?;
        *self.dialer.lock().unwrap_or_else(|e| e.into_inner()) = d;
        Ok(())
    }

    /// Finds a document on the server (retrying while the connection settles).
    pub async fn find(&self, doc: &str) -> anyhow::Result<DocHandle> {
        let id = DocumentId::from_str(doc)?;
        let t0 = Instant::now();
        loop {
            if let Ok(Ok(Some(h))) =
                tokio::time::timeout(Duration::from_secs(10), self.repo.find(id.clone())).await
            {
                return Ok(h);
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("the server did not give document {doc} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the server has told this client it has all of `h`.
    pub async fn wait_server_has(&self, h: &DocHandle, limit: Duration) -> anyhow::Result<()> {
        let conn = self
            .dialer()
            .connection_id()
            .context("the client is not connected")?;
        tokio::time::timeout(limit, h.they_have_our_changes(conn))
            .await
            .context("the server did not confirm our changes in time")
    }

    pub async fn stop(self) {
        self.dialer().close();
        self.repo.stop().await;
    }
}

/// Connects and fetches one document; returns its handle.
pub async fn fetch(addr: &str, token: &str, member: &str, doc: &str) -> anyhow::Result<DocHandle> {
    let c = Client::connect(addr, token, member).await?;
    let h = c.find(doc).await?;
    c.stop().await;
    Ok(h)
}
