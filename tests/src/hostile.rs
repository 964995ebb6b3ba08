//! A hostile network on loopback: a websocket proxy that delays, drops,
//! duplicates, reorders and truncates messages, cuts connections and refuses
//! new ones, each decision drawn from a seeded generator.
//!
//! The proxy sits between phones and `klad-server` (`tests/tests/hostile_network.rs`).
//! It forwards the HTTP upgrade untouched (request and response bytes as they
//! are, so the token, the device's actor and the server's `x-klad-public-key`
//! pass), then reads the websocket stream in both directions as frames, by
//! parsing each frame's header itself: faults on whole messages (drop, duplicate,
//! reorder) only mean something on frame boundaries, and a truncation must be a
//! cut inside a frame. The frames are forwarded as raw bytes, masking and all,
//! so what arrives is byte for byte what was sent, or a fault the counters name.
//!
//! Why not terminate the websocket on both sides with tokio-tungstenite: it
//! would re-encode every message, answer pings and run its own close handshake,
//! so the proxy would be a third websocket endpoint with behaviour of its own;
//! and it cannot send half a frame. A frame header is a few bytes to read.
//!
//! Only binary data frames that carry a whole message (FIN set, opcode 2, which
//! is how both samod's tungstenite and the server's axum send every message)
//! are subject to message faults; control frames (ping, pong, close) and
//! fragments pass unchanged. "Offline" refuses new connections (accepted and
//! closed at once, before any byte) and cuts the open ones. [`Proxy::heal`]
//! turns every fault off and closes the connections whose stream a message fault
//! left different from what was sent (a dropped, duplicated or reordered
//! message): TCP never delivers such a stream, so a real connection that lost a
//! message is a broken connection, which a real network resets.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// SplitMix64: a small, fast generator whose whole state is one seed, so a
/// case replays from its seed alone.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True with a probability of `per_mille`/1000.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        self.below(1000) < u64::from(per_mille)
    }

    /// A generator for a sub-stream (a connection, a direction), so that one
    /// stream's draws do not shift another's.
    pub fn fork(&self, salt: u64) -> Rng {
        let mut r = Rng(self.0 ^ salt.wrapping_mul(0xd6e8_feb8_6659_fd93));
        r.next_u64();
        r
    }
}

/// How often each fault hits a message, in per mille of the binary messages
/// in each direction. One of cut, truncate, drop, duplicate and reorder at
/// most per message; a delay can come on top.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Hold the message back for 1..=`max_delay_ms` (and everything after it
    /// in that direction, as a slow link does).
    pub delay: u32,
    /// Upper bound of a delay, in ms.
    pub max_delay_ms: u64,
    /// Never deliver the message; the connection stays open.
    pub drop: u32,
    /// Deliver the message twice.
    pub duplicate: u32,
    /// Deliver the message after the next one (or after a short wait if no
    /// next one comes).
    pub reorder: u32,
    /// Deliver a part of the frame, then cut the connection.
    pub truncate: u32,
    /// Cut the connection instead of delivering the message.
    pub cut: u32,
}

impl Faults {
    /// No faults: a faithful proxy.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// A mix drawn from `rng`: every kind is off, rare or frequent, so some
    /// cases are gentle and some are harsh.
    pub fn draw(rng: &mut Rng) -> Faults {
        let mut level = |rare: u32, often: u32| match rng.below(3) {
            0 => 0,
            1 => rare,
            _ => often,
        };
        let delay = level(50, 300);
        let drop = level(10, 60);
        let duplicate = level(20, 100);
        let reorder = level(20, 100);
        let truncate = level(5, 30);
        let cut = level(5, 30);
        Faults {
            delay,
            max_delay_ms: 1 + rng.below(40),
            drop,
            duplicate,
            reorder,
            truncate,
            cut,
        }
    }
}

/// What the proxy did, counted since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Connections accepted and forwarded.
    pub connections: u64,
    /// Connections refused while offline.
    pub refused: u64,
    /// Binary messages that passed the fault decision.
    pub messages: u64,
    /// Messages delayed.
    pub delayed: u64,
    /// Messages dropped.
    pub dropped: u64,
    /// Messages delivered twice.
    pub duplicated: u64,
    /// Messages delivered after a later one.
    pub reordered: u64,
    /// Frames cut short, with their connection.
    pub truncated: u64,
    /// Connections cut at a message (a fault).
    pub cut: u64,
    /// Connections cut by [`Proxy::cut_all`] or by going offline.
    pub cut_by_hand: u64,
    /// Connections closed by [`Proxy::heal`] because a message fault had
    /// changed their stream.
    pub closed_at_heal: u64,
}

impl Counts {
    /// Every fault injected (refusals and cuts by hand included).
    pub fn faults(&self) -> u64 {
        self.refused
            + self.delayed
            + self.dropped
            + self.duplicated
            + self.reordered
            + self.truncated
            + self.cut
            + self.cut_by_hand
    }

    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Counts) {
        self.connections += other.connections;
        self.refused += other.refused;
        self.messages += other.messages;
        self.delayed += other.delayed;
        self.dropped += other.dropped;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.truncated += other.truncated;
        self.cut += other.cut;
        self.cut_by_hand += other.cut_by_hand;
        self.closed_at_heal += other.closed_at_heal;
    }
}

/// Bounds that keep a misbehaving peer from holding the proxy forever.
const MAX_HEADER_BYTES: usize = 64 * 1024;
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
/// Larger frames than this cut the connection (the server's own limit is 16 MiB).
const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// How long a message held back for reordering waits for a next one.
const HOLD_LIMIT: Duration = Duration::from_millis(30);

struct Control {
    faults: Faults,
    offline: bool,
}

struct Shared {
    upstream: SocketAddr,
    rng: Rng,
    control: Mutex<Control>,
    counts: Mutex<Counts>,
    next_connection: AtomicU64,
    /// Bumped to cut every open connection.
    cut: watch::Sender<u64>,
    /// Bumped at every heal.
    heal: watch::Sender<u64>,
}

impl Shared {
    fn faults(&self) -> Faults {
        lock(&self.control).faults
    }

    fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut lock(&self.counts));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running proxy on `127.0.0.1`. Dropping it stops it and cuts every
/// connection it carries.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to
    /// `upstream`, with no faults until [`Proxy::set_faults`]. The tasks run
    /// on `runtime`.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        upstream: SocketAddr,
        seed: u64,
    ) -> std::io::Result<Proxy> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        let shared = Arc::new(Shared {
            upstream,
            rng: Rng::new(seed),
            control: Mutex::new(Control {
                faults: Faults::none(),
                offline: false,
            }),
            counts: Mutex::new(Counts::default()),
            next_connection: AtomicU64::new(0),
            cut: watch::channel(0).0,
            heal: watch::channel(0).0,
        });
        let accept = runtime.spawn(accept_loop(listener, shared.clone()));
        Ok(Proxy {
            addr,
            shared,
            accept,
        })
    }

    /// Where phones connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The faults from now on.
    pub fn set_faults(&self, faults: Faults) {
        lock(&self.shared.control).faults = faults;
    }

    /// Offline: new connections are refused and the open ones are cut.
    /// Online: new connections are accepted again.
    pub fn set_offline(&self, offline: bool) {
        lock(&self.shared.control).offline = offline;
        if offline {
            self.cut_all();
        }
    }

    /// Whether new connections are refused.
    pub fn is_offline(&self) -> bool {
        lock(&self.shared.control).offline
    }

    /// Cuts every open connection (both sides see the TCP connection end).
    pub fn cut_all(&self) {
        self.shared.cut.send_modify(|n| *n += 1);
    }

    /// Every fault off, online, and the connections a message fault changed
    /// closed (see the module documentation).
    pub fn heal(&self) {
        {
            let mut c = lock(&self.shared.control);
            c.faults = Faults::none();
            c.offline = false;
        }
        self.shared.heal.send_modify(|n| *n += 1);
    }

    /// What the proxy did so far.
    pub fn counts(&self) -> Counts {
        *lock(&self.shared.counts)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            // Out of descriptors or similar: try again shortly, bounded by
            // the proxy's life (the task is aborted on drop).
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        // Subscribed before the offline check, so a cut that comes with
        // going offline right after the check still reaches this connection.
        let signals = (shared.cut.subscribe(), shared.heal.subscribe());
        if lock(&shared.control).offline {
            shared.count(|c| c.refused += 1);
            drop(socket);
            continue;
        }
        shared.count(|c| c.connections += 1);
        let n = shared.next_connection.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(connection(socket, n, shared.clone(), signals));
    }
}

/// Reads an HTTP head (up to the blank line); returns it and the bytes after it.
async fn read_head(from: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Some((buf, rest));
        }
        if buf.len() > MAX_HEADER_BYTES {
            return None;
        }
        let n = from.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// Forwards the upgrade untouched; returns both sockets and the bytes each
/// side sent after its head, or `None` when the connection ends first.
async fn upgrade(
    mut client: TcpStream,
    upstream: SocketAddr,
) -> Option<(TcpStream, TcpStream, Vec<u8>, Vec<u8>, bool)> {
    let (request, from_client) = read_head(&mut client).await?;
    let mut server = TcpStream::connect(upstream).await.ok()?;
    server.write_all(&request).await.ok()?;
    server.write_all(&from_client).await.ok()?;
    let (response, from_server) = read_head(&mut server).await?;
    client.write_all(&response).await.ok()?;
    let switched = response.starts_with(b"HTTP/1.1 101");
    Some((client, server, Vec::new(), from_server, switched))
}

async fn connection(
    client: TcpStream,
    n: u64,
    shared: Arc<Shared>,
    (mut cut, mut heal): (watch::Receiver<u64>, watch::Receiver<u64>),
) {
    let upgraded = tokio::select! {
        u = tokio::time::timeout(HANDSHAKE_LIMIT, upgrade(client, shared.upstream)) => u,
        _ = cut.changed() => return,
    };
    let Ok(Some((client, server, up_rest, down_rest, switched))) = upgraded else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let disturbed = Arc::new(AtomicBool::new(false));
    let conn_rng = shared.rng.fork(n + 1);
    let up = pump(
        client_read,
        server_write,
        up_rest,
        switched,
        conn_rng.fork(1),
        shared.clone(),
        disturbed.clone(),
    );
    let down = pump(
        server_read,
        client_write,
        down_rest,
        switched,
        conn_rng.fork(2),
        shared.clone(),
        disturbed.clone(),
    );
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    loop {
        tokio::select! {
            end = &mut up, if !up_done => {
                up_done = true;
                if end == End::Cut { break; }
            }
            end = &mut down, if !down_done => {
                down_done = true;
                if end == End::Cut { break; }
            }
            r = cut.changed() => {
                if r.is_ok() {
                    shared.count(|c| c.cut_by_hand += 1);
                }
                break;
            }
            r = heal.changed() => {
                if r.is_err() { break; }
                if disturbed.load(Ordering::SeqCst) {
                    shared.count(|c| c.closed_at_heal += 1);
                    break;
                }
            }
        }
        if up_done && down_done {
            break;
        }
    }
    // Dropping the halves closes both sockets.
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The sender finished; the other direction may go on.
    Eof,
    /// The connection is cut (a fault, an error, an oversized frame).
    Cut,
}

/// The length of the first whole frame in `buf`, `Ok(None)` if it is not all
/// there yet, `Err` if it is larger than the proxy carries.
fn frame_len(buf: &[u8]) -> Result<Option<usize>, ()> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let masked = buf[1] & 0x80 != 0;
    let (head, payload) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (4, u64::from(u16::from_be_bytes([buf[2], buf[3]])))
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (10, u64::from_be_bytes(b))
        }
        n => (2, u64::from(n)),
    };
    let total = head + if masked { 4 } else { 0 } + payload as usize;
    if payload > MAX_FRAME_BYTES as u64 {
        return Err(());
    }
    Ok((buf.len() >= total).then_some(total))
}

const OPCODE_BINARY: u8 = 0x2;
const OPCODE_CLOSE: u8 = 0x8;

/// Carries one direction: frame by frame with faults once the upgrade
/// switched protocols, raw bytes otherwise (a refused upgrade's body).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut buf: Vec<u8>,
    websocket: bool,
    mut rng: Rng,
    shared: Arc<Shared>,
    disturbed: Arc<AtomicBool>,
) -> End {
    let mut held: Option<Vec<u8>> = None;
    let mut tmp = vec![0u8; 16 * 1024];
    loop {
        if websocket {
            loop {
                let n = match frame_len(&buf) {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    Err(()) => return End::Cut,
                };
                let frame: Vec<u8> = buf.drain(..n).collect();
                if deliver(frame, &mut to, &mut held, &mut rng, &shared, &disturbed)
                    .await
                    .is_err()
                {
                    return End::Cut;
                }
            }
        } else if !buf.is_empty() {
            if to.write_all(&buf).await.is_err() {
                return End::Cut;
            }
            buf.clear();
        }
        let read = if held.is_some() {
            tokio::select! {
                r = from.read(&mut tmp) => Some(r),
                _ = tokio::time::sleep(HOLD_LIMIT) => None,
            }
        } else {
            Some(from.read(&mut tmp).await)
        };
        match read {
            None => {
                if let Some(h) = held.take()
                    && to.write_all(&h).await.is_err()
                {
                    return End::Cut;
                }
            }
            Some(Ok(0)) => {
                if let Some(h) = held.take() {
                    let _ = to.write_all(&h).await;
                }
                // A partial frame at the end is passed on as it is.
                let _ = to.write_all(&buf).await;
                let _ = to.shutdown().await;
                return End::Eof;
            }
            Some(Ok(n)) => buf.extend_from_slice(&tmp[..n]),
            Some(Err(_)) => return End::Cut,
        }
    }
}

/// Delivers one whole frame, or injects a fault; `Err` cuts the connection.
async fn deliver(
    frame: Vec<u8>,
    to: &mut OwnedWriteHalf,
    held: &mut Option<Vec<u8>>,
    rng: &mut Rng,
    shared: &Shared,
    disturbed: &AtomicBool,
) -> Result<(), ()> {
    let opcode = frame[0] & 0x0f;
    let fin = frame[0] & 0x80 != 0;
    if opcode != OPCODE_BINARY || !fin {
        if opcode == OPCODE_CLOSE
            && let Some(h) = held.take()
        {
            to.write_all(&h).await.map_err(|_| ())?;
        }
        return to.write_all(&frame).await.map_err(|_| ());
    }
    let f = shared.faults();
    shared.count(|c| c.messages += 1);
    if f.delay > 0 && rng.chance(f.delay) {
        shared.count(|c| c.delayed += 1);
        let ms = 1 + rng.below(f.max_delay_ms.max(1));
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    match fate(&f, rng.below(1000) as u32) {
        Fate::Cut => {
            shared.count(|c| c.cut += 1);
            return Err(());
        }
        Fate::Truncate => {
            shared.count(|c| c.truncated += 1);
            let keep = 1 + rng.below(frame.len() as u64 - 1) as usize;
            let _ = to.write_all(&frame[..keep]).await;
            return Err(());
        }
        Fate::Drop => {
            shared.count(|c| c.dropped += 1);
            disturbed.store(true, Ordering::SeqCst);
            return Ok(());
        }
        Fate::Duplicate => {
            shared.count(|c| c.duplicated += 1);
            disturbed.store(true, Ordering::SeqCst);
            to.write_all(&frame).await.map_err(|_| ())?;
        }
        Fate::Reorder if held.is_none() => {
            shared.count(|c| c.reordered += 1);
            disturbed.store(true, Ordering::SeqCst);
            *held = Some(frame);
            return Ok(());
        }
        Fate::Reorder | Fate::Deliver => {}
    }
    to.write_all(&frame).await.map_err(|_| ())?;
    if let Some(h) = held.take() {
        to.write_all(&h).await.map_err(|_| ())?;
    }
    Ok(())
}

/// What happens to one message.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    Deliver,
    Cut,
    Truncate,
    Drop,
    Duplicate,
    Reorder,
}

/// The fate of a message for a roll in `0..1000`: the kinds take
/// consecutive ranges of the roll, each as wide as its rate.
fn fate(f: &Faults, roll: u32) -> Fate {
    let kinds = [
        (f.cut, Fate::Cut),
        (f.truncate, Fate::Truncate),
        (f.drop, Fate::Drop),
        (f.duplicate, Fate::Duplicate),
        (f.reorder, Fate::Reorder),
    ];
    let mut bound = 0;
    for (rate, kind) in kinds {
        bound += rate;
        if roll < bound {
            return kind;
        }
    }
    Fate::Deliver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths_follow_the_header() {
        // 5 bytes, unmasked.
        assert_eq!(frame_len(&[0x82, 5, 1, 2, 3, 4, 5]), Ok(Some(7)));
        assert_eq!(frame_len(&[0x82, 5, 1, 2]), Ok(None));
        // Masked: 4 bytes of key.
        assert_eq!(frame_len(&[0x82, 0x81, 0, 0, 0, 0, 9]), Ok(Some(7)));
        // 16-bit length.
        let mut f = vec![0x82, 126, 0x01, 0x00];
        f.extend(std::iter::repeat_n(0u8, 256));
        assert_eq!(frame_len(&f), Ok(Some(260)));
        assert_eq!(frame_len(&f[..3]), Ok(None));
        // 64-bit length beyond the limit.
        let mut big = vec![0x82, 127];
        big.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(frame_len(&big), Err(()));
    }

    #[test]
    fn the_generator_replays_from_its_seed() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(
            Rng::new(7).fork(1).next_u64(),
            Rng::new(7).fork(2).next_u64()
        );
    }

    #[test]
    fn each_fault_takes_its_share_of_the_rolls() {
        let f = Faults {
            cut: 10,
            truncate: 20,
            drop: 30,
            duplicate: 40,
            reorder: 50,
            ..Faults::none()
        };
        let mut seen = std::collections::BTreeMap::new();
        for roll in 0..1000 {
            *seen.entry(format!("{:?}", fate(&f, roll))).or_insert(0) += 1;
        }
        assert_eq!(seen["Cut"], 10);
        assert_eq!(seen["Truncate"], 20);
        assert_eq!(seen["Drop"], 30);
        assert_eq!(seen["Duplicate"], 40);
        assert_eq!(seen["Reorder"], 50);
        assert_eq!(seen["Deliver"], 850);
        assert!((0..1000).all(|r| fate(&Faults::none(), r) == Fate::Deliver));
    }
}
