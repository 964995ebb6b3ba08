//! Any node serves any client: a request or sync connection for a process
//! another node serves is relayed to that node.
//!
//! An outer layer of the router ([`layer`]) finds the process a request is
//! about: the token of a `/sync` connection or a desk sign-in, the path of
//! `/api/processes/{pid}/...`, or the session of a signed-in desk page. It
//! asks [`Cluster::owner`]; when this node serves the process (or has just
//! taken it over) the request goes on here, otherwise it is sent on as it
//! came, over HTTP/1.1 to the owner's address, and the answer comes back
//! the same way. A websocket upgrade is relayed whole: once both sides
//! switched protocols the two byte streams are joined, so frames, pings and
//! close codes pass untouched.
//!
//! The internal link is authenticated: a relayed request carries
//! [`RELAY_HEADER`], `v1 <node> <unix ms> <mac>`, an HMAC-SHA256 over the
//! node, the time, the method and the path, keyed with a key derived from
//! the token signing key every node shares. The receiving node checks it
//! (and that it is less than [`RELAY_WINDOW`] old) and never relays such a
//! request again: if it no longer serves the process it answers 503, and
//! the client tries again. A request with a header that does not verify is
//! refused. The owner checks the client's own credentials (token, session,
//! admin secret) as for any request: the relay adds no authority.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{KeyInit, Mac};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use klad_core::ProcessId;
use klad_store::KvStore;
use klad_sync::connect::SYNC_PATH;

use crate::cluster::{Cluster, Owner};
use crate::facilitation::Facilitation;
use crate::http::{ApiError, MAX_BODY_BYTES};
use crate::metrics::Metrics;

/// The header a relayed request carries.
pub const RELAY_HEADER: &str = "klad-relay";

/// How old a relay header may be (clocks of nodes are assumed to be kept in
/// step, as NTP does, well within this).
pub const RELAY_WINDOW: Duration = Duration::from_secs(60);

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// What the relay layer needs.
pub struct Relay {
    cluster: Arc<Cluster>,
    facilitation: Arc<Facilitation>,
    metrics: Arc<Metrics>,
    key: [u8; 32],
    client: Client<HttpConnector, Body>,
}

impl Relay {
    /// The relay of a node of `cluster`.
    pub fn new(
        cluster: Arc<Cluster>,
        facilitation: Arc<Facilitation>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let key = facilitation.keys().derive_key("klad relay link v1");
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            cluster,
            facilitation,
            metrics,
            key,
            client,
        }
    }

    fn mac(&self, node: &str, millis: u64, method: &str, path: &str) -> HmacSha256 {
        // Any key length is accepted by HMAC.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(format!("{node}\n{millis}\n{method}\n{path}").as_bytes());
        mac
    }

    /// The relay header for a request from this node.
    fn sign(&self, method: &str, path: &str) -> String {
        let millis = unix_millis();
        let node = self.cluster.node();
        let tag = self.mac(node, millis, method, path).finalize().into_bytes();
        format!("v1 {node} {millis} {}", hex(&tag))
    }

    /// Checks a relay header; the sentence says what is wrong.
    fn check(&self, value: &str, method: &str, path: &str) -> Result<(), String> {
        let parts: Vec<&str> = value.split(' ').collect();
        let [version, node, millis, tag] = parts[..] else {
            return Err("it does not have the form `v1 <node> <time> <mac>`".into());
        };
        if version != "v1" {
            return Err(format!("its version {version:?} is not known here"));
        }
        let millis: u64 = millis
            .parse()
            .map_err(|_| "its time is not a number".to_owned())?;
        let age = unix_millis().abs_diff(millis);
        if age > RELAY_WINDOW.as_millis() as u64 {
            return Err(format!(
                "it is {} s away from this node's clock; keep the nodes' clocks in step",
                age / 1000
            ));
        }
        let tag = unhex(tag).ok_or_else(|| "its mac is not hexadecimal".to_owned())?;
        self.mac(node, millis, method, path)
            .verify_slice(&tag)
            .map_err(|_| {
                "its mac does not verify (the nodes do not share one database and signing key)"
                    .to_owned()
            })
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn unavailable(sentence: String) -> Response {
    let mut r = ApiError(StatusCode::SERVICE_UNAVAILABLE, sentence).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    r
}

/// The router's relay layer (only with several nodes, see the module docs).
pub async fn layer(State(relay): State<Arc<Relay>>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let relayed = match req.headers().get(RELAY_HEADER) {
        None => false,
        Some(v) => {
            let checked = v
                .to_str()
                .map_err(|_| "it is not text".to_owned())
                .and_then(|v| relay.check(v, &method, &path));
            if let Err(why) = checked {
                tracing::warn!(%path, why = %why, "refused a relayed request");
                return ApiError(
                    StatusCode::UNAUTHORIZED,
                    format!("The {RELAY_HEADER} header of this request was refused: {why}. Only klad-server nodes of one cluster send it."),
                )
                .into_response();
            }
            true
        }
    };
    let (req, process) = process_of(&relay, req).await;
    let Some(process) = process else {
        return next.run(req).await;
    };
    match relay.cluster.owner(&process).await {
        Ok(Owner::Here { fresh }) => {
            if fresh {
                // Every use until this has been done is told `fresh`; each
                // reads again (serialised), which is harmless.
                if let Err(e) = relay.facilitation.take_over(&process).await {
                    tracing::error!(process = %process, error = %e, "could not read a process taken over from another node");
                    return ApiError::from(e).into_response();
                }
                relay.cluster.ready(&process);
            }
            next.run(req).await
        }
        Ok(Owner::There { address }) if relayed || address.is_empty() => unavailable(format!(
            "Process {process} is moving between server nodes; try again in a few seconds."
        )),
        Ok(Owner::There { address }) => forward(&relay, req, &address, &method, &path).await,
        Err(e) => {
            tracing::error!(process = %process, error = %e, "could not find which node serves a process");
            unavailable(format!(
                "The server could not find which of its nodes serves process {process} ({e}) Try again in a few seconds."
            ))
        }
    }
}

/// The process `req` is about, if any (the request is given back, its body
/// read into memory when it had to be looked into).
async fn process_of(relay: &Relay, req: Request) -> (Request, Option<ProcessId>) {
    let path = req.uri().path().to_owned();
    let token_process = |token: &str| {
        relay
            .facilitation
            .keys()
            .verify(token.trim())
            .ok()
            .map(|c| c.process)
    };
    if path == SYNC_PATH {
        let token = req
            .uri()
            .query()
            .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
            .and_then(|pairs| {
                pairs
                    .into_iter()
                    .find(|(k, _)| k == "token")
                    .map(|(_, v)| v)
            })
            .or_else(|| crate::http::bearer(req.headers()));
        let process = token.as_deref().and_then(token_process);
        return (req, process);
    }
    if let Some(rest) = path.strip_prefix("/api/processes/") {
        let segment = rest.split('/').next().unwrap_or("");
        let decoded = percent_decode(segment);
        let process = match decoded.filter(|p| !p.is_empty()).map(ProcessId) {
            // Anyone may name any id here: no lease for a process that does
            // not exist (the API answers 404 for it on this node).
            Some(p) if relay.facilitation.is_known(&p).await => Some(p),
            _ => None,
        };
        return (req, process);
    }
    if let Some(token) = path.strip_prefix("/desk/in/") {
        let process = percent_decode(token).as_deref().and_then(token_process);
        return (req, process);
    }
    if path == "/desk/in" && req.method() == axum::http::Method::POST {
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
            // Too large or cut off: the desk says so.
            return (Request::from_parts(parts, Body::empty()), None);
        };
        let process = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .ok()
            .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "token"))
            .and_then(|(_, token)| token_process(&token));
        return (Request::from_parts(parts, Body::from(bytes)), process);
    }
    if path.starts_with("/desk") {
        let Some(cookie) = klad_web::session::cookie(req.headers()) else {
            return (req, None);
        };
        let id = klad_web::session::storage_id(&cookie);
        let Ok(key) = crate::desk::session_key(&id) else {
            return (req, None);
        };
        let kv = relay.facilitation.kv().clone();
        let stored = tokio::task::spawn_blocking(move || kv.get(&key)).await;
        let process = match stored {
            Ok(Ok(Some(bytes))) => serde_json::from_slice::<klad_web::StoredSession>(&bytes)
                .ok()
                .map(|s| s.process),
            _ => None,
        };
        return (req, process);
    }
    (req, None)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16))?;
            let lo = bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16))?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Sends `req` on to the node at `address` and gives back its answer; a
/// websocket upgrade is joined through.
async fn forward(
    relay: &Relay,
    mut req: Request,
    address: &str,
    method: &str,
    path: &str,
) -> Response {
    relay.metrics.relayed();
    let uri: Uri = match format!("{}{path}", address.trim_end_matches('/')).parse() {
        Ok(u) => u,
        Err(e) => {
            return unavailable(format!(
                "The node serving this process has an address that is not usable ({address}: {e}); its operator must fix its --advertise."
            ));
        }
    };
    let client_upgrade = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
    let (mut parts, body) = req.into_parts();
    parts.uri = uri;
    parts.version = axum::http::Version::HTTP_11;
    match HeaderValue::from_str(&relay.sign(method, path)) {
        Ok(v) => {
            parts.headers.insert(RELAY_HEADER, v);
        }
        Err(_) => unreachable!("the relay header is ASCII"),
    }
    let outgoing = Request::from_parts(parts, body);
    let mut answer = match relay.client.request(outgoing).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(%address, error = %e, "could not relay a request to the node that serves its process");
            return unavailable(format!(
                "The server node that serves this process ({address}) could not be reached ({e}). Try again in a few seconds: if it is gone, another node takes the process over once its lease runs out."
            ));
        }
    };
    if answer.status() == StatusCode::SWITCHING_PROTOCOLS {
        let server_upgrade = hyper::upgrade::on(&mut answer);
        match client_upgrade {
            Some(client_upgrade) => {
                tokio::spawn(async move {
                    let (client, server) = tokio::join!(client_upgrade, server_upgrade);
                    match (client, server) {
                        (Ok(client), Ok(server)) => {
                            let mut client = TokioIo::new(client);
                            let mut server = TokioIo::new(server);
                            // Ends when either side closes.
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                        (c, s) => {
                            tracing::debug!(
                                client = c.is_ok(),
                                server = s.is_ok(),
                                "a relayed upgrade did not complete"
                            );
                        }
                    }
                });
            }
            None => {
                return ApiError(
                    StatusCode::BAD_REQUEST,
                    "This connection cannot switch protocols (it is not HTTP/1.1); open the websocket over HTTP/1.1.".into(),
                )
                .into_response();
            }
        }
    }
    let (parts, body) = answer.into_parts();
    Response::from_parts(parts, Body::new(body))
}

#[cfg(test)]
mod tests {
    use super::{hex, percent_decode, unhex};

    #[test]
    fn hex_round_trips_and_percent_decoding_reads_utf8() {
        assert_eq!(
            unhex(&hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(percent_decode("caf%C3%A9").as_deref(), Some("café"));
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%FF"), None);
    }
}
