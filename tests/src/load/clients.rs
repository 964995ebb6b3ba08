//! The clients: one samod `Repo` per client (its own peer id and websocket),
//! all on the generator's tokio runtime, typing into the body of one article
//! of a klad-core text document, and the bookkeeping that turns their edits
//! into end-to-end latencies.
//!
//! Latency: the client that types records each change's hash with the instant
//! just before it made the change (inside the document lock, so before samod
//! can send it). Every other client of the document checks, on each change
//! notification from samod, whether the next changes of each writer are in
//! its copy now (`get_missing_deps` is a hash lookup). A writer's changes form
//! a chain (each depends on its previous one), so they arrive in order.

use std::pin::Pin;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use automerge::transaction::{CommitOptions, Transactable as _};
use automerge::{Automerge, ChangeHash, ObjId, ObjType, ROOT, ReadDoc as _, ScalarValue};
use futures::{SinkExt as _, StreamExt as _, TryStreamExt as _};
use klad_core::document::KladDocument as _;
use klad_core::{ArticleId, ProcessId, TextDoc};
use samod::{
    BackoffConfig, DialError, Dialer, DialerEvent, DialerHandle, DocHandle, DocumentId, PeerId,
    Repo, Transport,
};
use tokio::sync::watch;

/// Counters shared by every client of a run.
#[derive(Default)]
pub struct Counters {
    /// Websocket dials that failed (each is retried).
    pub dial_errors: AtomicU64,
    /// Connections lost while the load ran.
    pub disconnects: AtomicU64,
    /// Deliveries seen so far (an edit arriving at one other client).
    pub delivered: AtomicU64,
    /// Whether lost connections count now (not while clients stop).
    pub counting: AtomicBool,
    /// Latencies since the soak's sampler last looked (while it runs).
    pub window: super::soak::Window,
}

/// Dials the server's websocket (plain `ws://` on loopback) and counts failures.
struct LoadDialer {
    url: url::Url,
    counters: Arc<Counters>,
}

impl Dialer for LoadDialer {
    type Error = std::convert::Infallible;

    fn url(&self) -> url::Url {
        self.url.clone()
    }

    fn connect(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Transport, DialError<Self::Error>>> + Send>> {
        let url = self.url.clone();
        let counters = self.counters.clone();
        Box::pin(async move {
            let (ws, _) = match tokio_tungstenite::connect_async(url.as_str()).await {
                Ok(ok) => ok,
                Err(e) => {
                    counters.dial_errors.fetch_add(1, Ordering::Relaxed);
                    return Err(DialError::transient(e));
                }
            };
            let (sink, stream) = ws.split();
            let stream = stream.try_filter_map(|m| async move {
                Ok(match m {
                    tokio_tungstenite::tungstenite::Message::Binary(b) => Some(b.to_vec()),
                    _ => None,
                })
            });
            let sink = sink.with(|b: Vec<u8>| async move {
                Ok::<_, tokio_tungstenite::tungstenite::Error>(
                    tokio_tungstenite::tungstenite::Message::Binary(b.into()),
                )
            });
            Ok(Transport::new(Box::pin(stream), Box::pin(sink)))
        })
    }
}

/// What every writer of one document has written: per writer (client index
/// in the group), its changes in order with the instant each was made.
pub struct GroupLog {
    writers: Vec<Mutex<Vec<(ChangeHash, Instant)>>>,
}

impl GroupLog {
    /// A log for `size` writers.
    pub fn new(size: usize) -> GroupLog {
        GroupLog {
            writers: (0..size).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    /// How many edits all writers made.
    pub fn edits(&self) -> usize {
        self.writers
            .iter()
            .map(|w| w.lock().map(|v| v.len()).unwrap_or(0))
            .sum()
    }

    fn pending(&self, writer: usize, from: usize) -> Vec<(ChangeHash, Instant)> {
        self.writers[writer]
            .lock()
            .map(|v| v.get(from..).map(<[_]>::to_vec).unwrap_or_default())
            .unwrap_or_default()
    }
}

/// A connected client with the document it types into.
pub struct Client {
    repo: Repo,
    dialer: DialerHandle<std::convert::Infallible>,
    /// The text document.
    pub doc: DocHandle,
    body: ObjId,
    /// Its index within its group (0 created the article).
    pub index: usize,
}

/// The dial retry schedule: quick, since everything is on loopback.
fn backoff() -> BackoffConfig {
    BackoffConfig {
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        max_retries: None,
    }
}

/// Starts a repo with `peer_id`, dials `url` and waits for the handshake.
async fn connect(
    peer_id: &str,
    url: url::Url,
    counters: &Arc<Counters>,
    limit: Duration,
) -> anyhow::Result<(Repo, DialerHandle<std::convert::Infallible>)> {
    let repo = Repo::build_tokio()
        .with_peer_id(PeerId::from(peer_id))
        .load()
        .await;
    let dialer = repo
        .dial(
            backoff(),
            Arc::new(LoadDialer {
                url,
                counters: counters.clone(),
            }),
        )
        .map_err(|_| anyhow!("the client's repo stopped before it could dial"))?;
    match tokio::time::timeout(limit, dialer.established()).await {
        Ok(Ok(_)) => Ok((repo, dialer)),
        Ok(Err(e)) => {
            stop_repo(&repo).await;
            bail!("the connection could not be established: {e:?}")
        }
        Err(_) => {
            stop_repo(&repo).await;
            bail!("the connection was not established within {limit:?}")
        }
    }
}

async fn stop_repo(repo: &Repo) {
    let _ = tokio::time::timeout(Duration::from_secs(10), repo.stop()).await;
}

/// Finds `doc` through the server, retrying (a first find can race the
/// connection inside samod) until `limit`.
async fn find(repo: &Repo, doc: &str, limit: Duration) -> anyhow::Result<DocHandle> {
    let id = DocumentId::from_str(doc)
        .map_err(|e| anyhow!("{doc} is not an automerge-repo document id ({e:?})"))?;
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(Ok(Some(h))) =
            tokio::time::timeout(Duration::from_secs(5), repo.find(id.clone())).await
        {
            return Ok(h);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the document {doc} was not found on the server within {limit:?}")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The opening text of every article: a real paragraph to type into.
const OPENING: &str = "Het is verboden een voertuig te parkeren op een plaats waar dit door \
een verkeersbord is aangegeven, tenzij het college daarvoor ontheffing heeft verleend. \
Het college kan nadere regels stellen over de duur van het parkeren en de plaatsen waar \
vergunninghouders hun voertuig mogen parkeren.";

/// Adds one article to a klad-core text document, laid out exactly as
/// klad-core's `Session::create_article` writes it (`articles/<id>` with
/// `position`, `removed`, `created_at`, `heading` and `body` Text), as one
/// change. Returns the article id.
fn add_article(doc: &mut Automerge) -> anyhow::Result<String> {
    let articles = match doc.get(ROOT, "articles")? {
        Some((automerge::Value::Object(ObjType::Map), id)) => id,
        _ => bail!("the text document has no articles map; is it a klad-core text document?"),
    };
    let id = ArticleId::random();
    let position = klad_core::order::between(None, None);
    let now = now_ms();
    doc.transact_with::<_, _, automerge::AutomergeError, _>(
        |_| {
            CommitOptions::default()
                .with_time(now.div_euclid(1000))
                .with_message(format!("create article {id}"))
        },
        |tx| {
            let a = tx.put_object(&articles, id.as_str(), ObjType::Map)?;
            tx.put(&a, "position", position.as_str())?;
            tx.put(&a, "removed", false)?;
            tx.put(&a, "created_at", ScalarValue::Int(now))?;
            let h = tx.put_object(&a, "heading", ObjType::Text)?;
            tx.splice_text(&h, 0, 0, "Parkeren")?;
            let b = tx.put_object(&a, "body", ObjType::Text)?;
            tx.splice_text(&b, 0, 0, OPENING)?;
            Ok(())
        },
    )
    .map_err(|f| anyhow!("could not add the article: {}", f.error))?;
    Ok(id.as_str().to_owned())
}

/// The body Text object of the (only) article, once it has arrived.
fn body_obj(doc: &Automerge) -> Option<ObjId> {
    let (_, articles) = doc.get(ROOT, "articles").ok()??;
    let article = doc.map_range(&articles, ..).next()?.id();
    match doc.get(&article, "body").ok()?? {
        (automerge::Value::Object(ObjType::Text), id) => Some(id),
        _ => None,
    }
}

/// Where a group's document comes from.
pub enum Origin {
    /// klad-server made the text document; the first client adds the article.
    Existing(String),
    /// The first client creates the whole document on the server (the JS
    /// server has no processes): a klad-core text document with one article.
    CreateNew,
}

/// Connects the first client of a group and prepares the document: returns
/// the client and the document id for the others.
pub async fn connect_first(
    peer_id: &str,
    url: url::Url,
    origin: &Origin,
    counters: &Arc<Counters>,
    limit: Duration,
) -> anyhow::Result<(Client, String)> {
    let started = Instant::now();
    let (repo, dialer) = connect(peer_id, url, counters, limit).await?;
    let left = || limit.saturating_sub(started.elapsed());
    let prepared = async {
        let doc = match origin {
            Origin::Existing(id) => {
                let h = find(&repo, id, left()).await?;
                h.with_document(add_article)?;
                h
            }
            Origin::CreateNew => {
                let text = TextDoc::create(now_ms(), &ProcessId(format!("load-{peer_id}")))?;
                let mut initial = text.automerge().clone();
                add_article(&mut initial)?;
                repo.create(initial)
                    .await
                    .map_err(|_| anyhow!("the client's repo stopped while creating a document"))?
            }
        };
        // The others may look for it only once the server has it all.
        let conn = dialer
            .connection_id()
            .context("the connection closed while the document was being prepared")?;
        tokio::time::timeout(left(), doc.they_have_our_changes(conn))
            .await
            .context("the server did not confirm the new article in time")?;
        let body = doc
            .with_document(|d| body_obj(d))
            .context("the article just written has no body")?;
        anyhow::Ok((doc, body))
    };
    match prepared.await {
        Ok((doc, body)) => {
            let id = doc.document_id().to_string();
            Ok((
                Client {
                    repo,
                    dialer,
                    doc,
                    body,
                    index: 0,
                },
                id,
            ))
        }
        Err(e) => {
            stop_repo(&repo).await;
            Err(e)
        }
    }
}

/// Connects another client of a group and finds its document with the article.
pub async fn connect_other(
    peer_id: &str,
    url: url::Url,
    doc_id: &str,
    index: usize,
    counters: &Arc<Counters>,
    limit: Duration,
) -> anyhow::Result<Client> {
    let started = Instant::now();
    let (repo, dialer) = connect(peer_id, url, counters, limit).await?;
    let found = async {
        let doc = find(&repo, doc_id, limit.saturating_sub(started.elapsed())).await?;
        loop {
            if let Some(body) = doc.with_document(|d| body_obj(d)) {
                return anyhow::Ok((doc, body));
            }
            if started.elapsed() > limit {
                bail!("the document arrived without its article within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    match found.await {
        Ok((doc, body)) => Ok(Client {
            repo,
            dialer,
            doc,
            body,
            index,
        }),
        Err(e) => {
            stop_repo(&repo).await;
            Err(e)
        }
    }
}

/// A small deterministic generator, so every run types the same keystrokes.
pub struct Rng(u64);

impl Rng {
    /// A generator for one client.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next number (splitmix64).
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

const WORDS: &[&str] = &[
    "het ",
    "college ",
    "kan ",
    "besluiten ",
    "dat ",
    "parkeren ",
    "op ",
    "zondag ",
    "gratis ",
    "is ",
    "voor ",
    "bewoners ",
    "van ",
    "de ",
    "wijk ",
    "tenzij ",
    "anders ",
    "bepaald. ",
];

/// One keystroke batch: what a phone sends after a 75 ms typing window.
/// Mostly a word typed at a spot in the body; sometimes a few characters
/// deleted (backspace).
fn keystrokes(rng: &mut Rng, len: usize) -> (usize, usize, &'static str) {
    let pos = rng.below(len as u64 + 1) as usize;
    if len > 40 && rng.below(10) == 0 {
        let delete = (1 + rng.below(3) as usize).min(len - pos);
        return (pos, delete, "");
    }
    (pos, 0, WORDS[rng.below(WORDS.len() as u64) as usize])
}

/// How one client's typing went.
#[derive(Clone, Copy, Debug, Default)]
pub struct TypingStats {
    /// Edits made.
    pub sent: u64,
    /// Edits the schedule asked for.
    pub planned: u64,
    /// The largest delay behind schedule (the generator falling behind).
    pub max_lag: Duration,
}

/// Types into the body on a fixed schedule: the first edit at `start +
/// offset`, then one every `interval`, none at or after `end`. The schedule
/// does not wait for the server (open loop): an edit that is late because the
/// generator was busy is made at once and its lateness reported; edits still
/// due when `end` has passed are counted as planned but not made.
pub async fn type_text(
    client: &Client,
    log: &GroupLog,
    seed: u64,
    start: tokio::time::Instant,
    offset: Duration,
    interval: Duration,
    end: tokio::time::Instant,
) -> TypingStats {
    let mut rng = Rng::new(seed);
    let mut stats = TypingStats::default();
    let writer = &log.writers[client.index];
    for seq in 0u32.. {
        let due = start + offset + interval * seq;
        if due >= end {
            break;
        }
        stats.planned += 1;
        // The steady phase ends on time even when this generator fell
        // behind its schedule: edits still due then are planned but not
        // sent (planned against sent shows it), so a saturated generator
        // cannot stretch a 30-minute soak past its end.
        if tokio::time::Instant::now() >= end {
            continue;
        }
        tokio::time::sleep_until(due).await;
        stats.max_lag = stats.max_lag.max(tokio::time::Instant::now() - due);
        let body = &client.body;
        let made = client.doc.with_document(|d| {
            let made_at = Instant::now();
            let (pos, delete, insert) = keystrokes(&mut rng, d.length(body));
            let time = now_ms().div_euclid(1000);
            let result = d.transact_with::<_, _, automerge::AutomergeError, _>(
                |_| {
                    CommitOptions::default()
                        .with_time(time)
                        .with_message("edit body")
                },
                |tx| tx.splice_text(body, pos, delete as isize, insert),
            );
            match result {
                Ok(ok) => {
                    if let (Some(hash), Ok(mut w)) = (ok.hash, writer.lock()) {
                        w.push((hash, made_at));
                        return true;
                    }
                    false
                }
                Err(_) => false,
            }
        });
        if made {
            stats.sent += 1;
        }
    }
    stats
}

/// What one client saw of the others' edits.
#[derive(Default)]
pub struct Received {
    /// Latency of each delivery, in microseconds.
    pub latencies_us: Vec<u32>,
}

/// Watches the document until `stop` turns true, recording when each other
/// writer's edits arrive; checks once more after the stop.
pub async fn receive(
    client: &Client,
    log: &GroupLog,
    counters: &Counters,
    mut stop: watch::Receiver<bool>,
    mut changes: impl futures::Stream + Unpin,
) -> Received {
    let writers = log.writers.len();
    let mut next = vec![0usize; writers];
    let mut received = Received::default();
    let mut check = |received: &mut Received| {
        let pending: Vec<(usize, Vec<(ChangeHash, Instant)>)> = (0..writers)
            .filter(|w| *w != client.index)
            .map(|w| (w, log.pending(w, next[w])))
            .filter(|(_, p)| !p.is_empty())
            .collect();
        if pending.is_empty() {
            return;
        }
        client.doc.with_document(|d| {
            let now = Instant::now();
            for (w, changes) in &pending {
                for (hash, made_at) in changes {
                    if !d.get_missing_deps(std::slice::from_ref(hash)).is_empty() {
                        break;
                    }
                    let us = now.duration_since(*made_at).as_micros();
                    let us = us.min(u32::MAX as u128) as u32;
                    received.latencies_us.push(us);
                    counters.window.push(us);
                    next[*w] += 1;
                    counters.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    };
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            changed = changes.next() => {
                if changed.is_none() {
                    break;
                }
                check(&mut received);
            }
            _ = stop.changed() => {}
        }
    }
    check(&mut received);
    received
}

/// Counts lost connections of a client while `counters.counting` is set,
/// until `stop` turns true.
pub async fn watch_connection(
    client: &Client,
    counters: &Counters,
    mut stop: watch::Receiver<bool>,
) {
    let mut events = client.dialer.events();
    loop {
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            event = events.next() => match event {
                Some(DialerEvent::Disconnected { .. }) => {
                    if counters.counting.load(Ordering::Relaxed) {
                        counters.disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(_) => {}
                None => return,
            },
            _ = stop.changed() => {}
        }
    }
}

impl Client {
    /// The document's heads, to check that a group converged.
    pub fn heads(&self) -> Vec<ChangeHash> {
        let mut h = self.doc.with_document(|d| d.get_heads());
        h.sort();
        h
    }

    /// The body's length in characters, read through klad-core (which also
    /// checks the document is still a valid text document).
    pub fn body_len(&self) -> anyhow::Result<usize> {
        let text = self
            .doc
            .with_document(|d| TextDoc::from_automerge(d.clone()))?;
        let id = text
            .article_ids()
            .into_iter()
            .next()
            .context("the text document lost its article")?;
        Ok(text.body_len(&id)?)
    }

    /// Stops the client's repo (closes its connection), waiting at most 10 s.
    pub async fn stop(&self) {
        stop_repo(&self.repo).await;
    }
}
