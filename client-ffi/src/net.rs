//! The websocket dialer: `ws://` on loopback and `wss://` through rustls with
//! the ring provider and the webpki root certificates (no OpenSSL, so the
//! same code builds for Android and iOS).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt, TryStreamExt};
use klad_sync::access::SERVER_PEER_ID;
use klad_sync::connect::{PUBLIC_KEY_HEADER, SYNC_PATH, SyncQuery};
use samod::{DialError, Dialer, PeerId, Transport};
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;

/// How long opening the websocket (TCP, TLS, the HTTP upgrade) may take
/// before the attempt counts as failed and samod tries again. Without it an
/// attempt whose handshake a bad network swallowed (no answer, no reset)
/// waits for ever, and the phone never comes back online.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// TLS settings for `wss://`: the webpki roots, the ring provider.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// The sync URL of a server for the query (token, device name, Automerge
/// actor and the device's Ed25519 public key; the server registers the last
/// two under the member, so blame and history name them and their signed
/// changes can be relayed): `<ws|wss>://host/sync?token=..&device=..`.
pub fn sync_url(server: &url::Url, query: &SyncQuery) -> url::Url {
    let mut url = server.clone();
    // http(s) base URLs are accepted too; the websocket uses ws(s).
    let scheme = match server.scheme() {
        "https" | "wss" => "wss",
        _ => "ws",
    };
    let _ = url.set_scheme(scheme);
    url.set_path(SYNC_PATH);
    url.set_query(Some(&query.to_query()));
    url
}

/// Where a connection's incoming stream is: waiting for the server's first
/// message (bounded by [`CONNECT_TIMEOUT`]), for the next ones, or over.
enum Waiting {
    First,
    Next,
    Over,
}

/// Why a connection attempt failed, as a sentence.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(pub String);

/// Dials the server's websocket; samod calls it again (with backoff) after
/// every failure or disconnect.
pub struct WsDialer {
    /// The full sync URL, token included.
    pub url: url::Url,
    /// Told the server's public key (from the upgrade response) on every connect.
    pub on_public_key: Arc<dyn Fn(&str) + Send + Sync>,
    /// Turns one outgoing frame into the frames to send (signatures first).
    pub sign: Arc<dyn Fn(Vec<u8>) -> Vec<Vec<u8>> + Send + Sync>,
}

impl Dialer for WsDialer {
    type Error = ConnectError;

    fn url(&self) -> url::Url {
        let mut shown = self.url.clone();
        shown.set_query(None);
        shown
    }

    fn connect(&self) -> BoxFuture<'static, Result<Transport, DialError<ConnectError>>> {
        let url = self.url.clone();
        let on_public_key = self.on_public_key.clone();
        let sign = self.sign.clone();
        Box::pin(async move {
            let connector = if url.scheme() == "wss" {
                let config = tls_config()
                    .map_err(|e| DialError::PermanentFailure(ConnectError(e.to_string())))?;
                Some(Connector::Rustls(config))
            } else {
                Some(Connector::Plain)
            };
            let (ws, response) = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_tungstenite::connect_async_tls_with_config(
                    url.as_str(),
                    None,
                    true,
                    connector,
                ),
            )
            .await
            .map_err(|_| {
                DialError::transient(ConnectError(format!(
                    "the server did not answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            })?
            .map_err(DialError::transient)?;
            if let Some(k) = response
                .headers()
                .get(PUBLIC_KEY_HEADER)
                .and_then(|v| v.to_str().ok())
            {
                on_public_key(k);
            }
            let (sink, stream) = ws.split();
            let stream = stream.try_filter_map(|m| async move {
                Ok(match m {
                    Message::Binary(b) => Some(b.to_vec()),
                    _ => None,
                })
            });
            // The server answers the phone's `join` at once; a connection
            // that brings no first message in CONNECT_TIMEOUT lost it on
            // the way, and samod (which has no timeouts) would wait on it
            // for ever: it ends, and samod dials again.
            let stream = futures::stream::unfold(
                (Box::pin(stream), Waiting::First),
                |(mut s, waiting)| async move {
                    match waiting {
                        Waiting::Over => None,
                        Waiting::Next => s.next().await.map(|item| (item, (s, Waiting::Next))),
                        Waiting::First => {
                            match tokio::time::timeout(CONNECT_TIMEOUT, s.next()).await {
                                Ok(next) => next.map(|item| (item, (s, Waiting::Next))),
                                // The error ends the connection; nothing after it.
                                Err(_) => Some((
                                    Err(tokio_tungstenite::tungstenite::Error::Io(
                                        std::io::Error::new(
                                            std::io::ErrorKind::TimedOut,
                                            "the server did not answer the join",
                                        ),
                                    )),
                                    (s, Waiting::Over),
                                )),
                            }
                        }
                    }
                },
            );
            // Each frame samod sends goes out with its change signatures first.
            // The error type is the socket's own (the sink's), hence its size.
            #[allow(clippy::result_large_err)]
            let frames = move |b: Vec<u8>| {
                futures::stream::iter(sign(b).into_iter().map(|f| {
                    Ok::<_, tokio_tungstenite::tungstenite::Error>(Message::Binary(f.into()))
                }))
            };
            let sink = sink.with_flat_map(frames);
            // Only the server may speak as the server.
            Ok(Transport::new(Box::pin(stream), Box::pin(sink))
                .with_expected_peer_id(PeerId::from(SERVER_PEER_ID)))
        })
    }
}
