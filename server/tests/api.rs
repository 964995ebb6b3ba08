//! The HTTP API as an attacker sees it: `docs/openapi.yaml` describes every
//! route the server registers (and no other) and is what the server serves;
//! every error of every route is a JSON sentence; a token lifetime past a
//! year (`"ttl": "10000y"`) is refused before anything is written; a panic
//! halfway through a facilitation call is a 500 with a sentence and leaves
//! nothing half done; a client that hangs up mid-call does not cut the call
//! short. `scripts/schemathesis.sh` fuzzes the same document at length.

mod common;

use std::collections::BTreeSet;

use common::*;
use klad_server::http::{OPENAPI_PATH, OPENAPI_YAML, routes};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw answer: status, headers (names in lower case) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the answer is `{"error": "<sentence>"}` as JSON and returns the sentence.
    fn sentence(&self, what: &str) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{what}: {} {}",
            self.status,
            self.body
        );
        let v: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", self.body));
        let fields: Vec<&String> = v.as_object().expect("an object").keys().collect();
        assert_eq!(fields, ["error"], "{what}: {v}");
        let s = v["error"].as_str().expect("a string").to_owned();
        assert!(
            s.len() > 20 && s.ends_with('.'),
            "{what}: not a sentence: {s:?}"
        );
        s
    }
}

/// Sends `head` (request line and headers, without the final blank line)
/// and `body` as they are, and reads the whole answer.
async fn raw(server: &Server, head: &str, body: &[u8]) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let mut req = format!(
        "{head}\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    stream.write_all(&req).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an incomplete HTTP answer: {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn admin(server: &Server) -> String {
    std::fs::read_to_string(server.data.join("admin-secret"))
        .unwrap()
        .trim()
        .to_owned()
}

async fn create(server: &Server, secret: &str, title: &str) -> String {
    let r = server
        .http(
            "POST",
            "/api/processes",
            Some(secret),
            Some(json!({ "title": title })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json().unwrap()["process"]["process_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn members(server: &Server, secret: &str, pid: &str) -> Vec<String> {
    let r = server
        .http("GET", &format!("/api/processes/{pid}"), Some(secret), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut names: Vec<String> = r.json().unwrap()["members"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// Resolves a local `$ref` in the OpenAPI document.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("a local reference");
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("{r} is not in the document"))
        }
        None => v,
    }
}

#[test]
fn the_openapi_document_describes_every_route_and_no_other() {
    let doc: Value = serde_norway::from_str(OPENAPI_YAML).expect("docs/openapi.yaml is YAML");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let registered: BTreeSet<(String, String)> = routes()
        .into_iter()
        .map(|(verb, path)| (path.to_owned(), verb.openapi_name().to_owned()))
        .collect();
    let mut described = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            described.insert((path.clone(), method.clone()));
            let what = format!("{method} {path}");
            assert!(op["operationId"].is_string(), "{what} has no operationId");
            let responses = op["responses"].as_object().expect("responses");
            for (status, response) in responses {
                let response = resolve(&doc, response);
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &response["content"]["application/json"]["schema"];
                    assert_eq!(
                        schema["$ref"], "#/components/schemas/Error",
                        "{what}: the {status} answer is not the JSON error"
                    );
                }
            }
        }
    }
    let missing: Vec<_> = registered.difference(&described).collect();
    assert!(
        missing.is_empty(),
        "routes the server registers that docs/openapi.yaml does not describe: {missing:?}"
    );
    let ghosts: Vec<_> = described.difference(&registered).collect();
    assert!(
        ghosts.is_empty(),
        "calls docs/openapi.yaml describes that the server does not have: {ghosts:?}"
    );
    // Every schema reference resolves.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let pointer = r.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_the_document_in_the_repository() {
    let server = Server::start(&[]).await;
    let on_disk =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml"))
            .unwrap();
    let r = raw(&server, &format!("GET {OPENAPI_PATH} HTTP/1.1"), b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/yaml"));
    assert_eq!(r.body, on_disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_a_json_sentence() {
    let server = Server::start(&[]).await;
    let secret = admin(&server);
    let pid = create(&server, &secret, "Foutmeldingen").await;
    let anna = server
        .http(
            "POST",
            &format!("/api/processes/{pid}/members"),
            Some(&secret),
            Some(json!({ "name": "Anna", "role": "drafter" })),
        )
        .await
        .json()
        .unwrap();
    let token = anna["token"].as_str().unwrap();
    let auth = format!("Authorization: Bearer {secret}");
    let json = "Content-Type: application/json";
    let big = format!("{{\"title\": \"{}\"}}", "x".repeat(70 * 1024));
    let cases: Vec<(String, Vec<u8>, u16)> = vec![
        ("GET /nowhere HTTP/1.1".into(), vec![], 404),
        ("GET /api/processes HTTP/1.1".into(), vec![], 405),
        (format!("DELETE /api/processes/{pid} HTTP/1.1"), vec![], 405),
        (
            "POST /api/processes HTTP/1.1".into(),
            br#"{"title": "x"}"#.to_vec(),
            401,
        ),
        (
            "POST /api/processes HTTP/1.1\r\nAuthorization: Bearer nonsense".into(),
            br#"{"title": "x"}"#.to_vec(),
            401,
        ),
        (
            format!("POST /api/processes HTTP/1.1\r\n{auth}\r\n{json}"),
            b"not json".to_vec(),
            400,
        ),
        (
            format!("POST /api/processes HTTP/1.1\r\n{auth}\r\n{json}"),
            br#"{"title": "x", "owner": "me"}"#.to_vec(),
            400,
        ),
        (
            format!("POST /api/processes HTTP/1.1\r\n{auth}\r\n{json}"),
            br#"{"title": "   "}"#.to_vec(),
            400,
        ),
        (
            format!("POST /api/processes HTTP/1.1\r\n{auth}\r\n{json}"),
            big.into_bytes(),
            413,
        ),
        (
            format!("GET /api/processes/%FF%FE HTTP/1.1\r\n{auth}"),
            vec![],
            400,
        ),
        (
            format!("POST /api/processes/{pid}/members/%C3%28/token HTTP/1.1\r\n{auth}"),
            vec![],
            400,
        ),
        (
            format!("GET /api/processes/no-such-process HTTP/1.1\r\n{auth}"),
            vec![],
            404,
        ),
        (
            format!("POST /api/processes/{pid}/members HTTP/1.1\r\n{auth}\r\n{json}"),
            br#"{"name": "Bram", "role": "mayor"}"#.to_vec(),
            400,
        ),
        (
            format!("POST /api/processes/{pid}/members HTTP/1.1\r\n{auth}\r\n{json}"),
            br#"{"name": "anna ", "role": "drafter"}"#.to_vec(),
            409,
        ),
        (
            format!("POST /api/processes/{pid}/members/nobody/revoke HTTP/1.1\r\n{auth}"),
            vec![],
            404,
        ),
        (
            format!("POST /api/processes/{pid}/phase HTTP/1.1\r\n{auth}\r\n{json}"),
            br#"{"phase": "final"}"#.to_vec(),
            400,
        ),
        (
            format!(
                "POST /api/processes/{pid}/phase HTTP/1.1\r\nAuthorization: Bearer {token}\r\n{json}"
            ),
            br#"{"phase": "consultation"}"#.to_vec(),
            403,
        ),
        ("GET /sync HTTP/1.1".into(), vec![], 401),
        (format!("GET /sync?token={token} HTTP/1.1"), vec![], 400),
        (
            format!("GET /sync?token={token}&token={token} HTTP/1.1"),
            vec![],
            400,
        ),
        (format!("POST /sync?token={token} HTTP/1.1"), vec![], 405),
    ];
    for (head, body, status) in cases {
        let r = raw(&server, &head, &body).await;
        let what = head.lines().next().unwrap().to_owned();
        assert_eq!(r.status, status, "{what}: {}", r.body);
        let sentence = r.sentence(&what);
        if status == 405 {
            assert!(r.header("allow").is_some(), "{what}: no Allow header");
        }
        if status == 413 {
            assert!(sentence.contains("64 KiB"), "{sentence}");
        }
    }
    // Nothing of that changed anything.
    assert_eq!(members(&server, &secret, &pid).await, ["Anna"]);
    assert_eq!(server.metric("klad_http_panics_total").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_lifetime_past_a_year_is_refused_before_anything_is_written() {
    let server = Server::start(&[]).await;
    let secret = admin(&server);
    let pid = create(&server, &secret, "Looptijd").await;
    let invite = |ttl: &str| json!({ "name": "Bram", "role": "drafter", "ttl": ttl });
    for ttl in [
        "10000y",
        "400d",
        "99999999999999999999999y",
        "0s",
        "soon",
        "",
    ] {
        let r = server
            .http(
                "POST",
                &format!("/api/processes/{pid}/members"),
                Some(&secret),
                Some(invite(ttl)),
            )
            .await;
        assert_eq!(r.status, 400, "{ttl}: {}", r.body);
        let sentence = error_of(&r.body);
        assert!(
            sentence.contains("at most a year")
                || sentence.contains("longer than zero")
                || sentence.contains("not understood"),
            "{ttl}: {sentence}"
        );
        // Nobody was added without a token.
        assert!(members(&server, &secret, &pid).await.is_empty(), "{ttl}");
    }
    let r = server
        .http(
            "POST",
            &format!("/api/processes/{pid}/members"),
            Some(&secret),
            Some(invite("1y")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let bram = r.json().unwrap();
    let token = bram["token"].as_str().unwrap().to_owned();

    // A reissue with a lifetime past a year withdraws nothing.
    let member = bram["member_id"].as_str().unwrap();
    let path = format!("/api/processes/{pid}/members/{member}/token");
    let r = server
        .http(
            "POST",
            &path,
            Some(&secret),
            Some(json!({ "ttl": "10000y", "revoke_earlier": true })),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let own = format!("/api/processes/{pid}");
    assert_eq!(
        server.http("GET", &own, Some(&token), None).await.status,
        200
    );
    let r = server
        .http(
            "POST",
            &path,
            Some(&secret),
            Some(json!({ "ttl": "1y", "revoke_earlier": true })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        server.http("GET", &own, Some(&token), None).await.status,
        401
    );
    let new = r.json().unwrap()["token"].as_str().unwrap().to_owned();
    assert_eq!(server.http("GET", &own, Some(&new), None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_halfway_changes_nothing_and_the_server_goes_on() {
    let mut server = Server::start(&["--fault-panic-name", "Boom"]).await;
    let secret = admin(&server);
    let pid = create(&server, &secret, "Halverwege").await;

    // The member's contributions document is written, then the call panics
    // before the process document names them.
    let path = format!("/api/processes/{pid}/members");
    let r = server
        .http(
            "POST",
            &path,
            Some(&secret),
            Some(json!({ "name": "Boom", "role": "drafter" })),
        )
        .await;
    assert_eq!(r.status, 500, "{}", r.body);
    let sentence = error_of(&r.body);
    assert!(sentence.contains("changed nothing"), "{sentence}");
    assert!(members(&server, &secret, &pid).await.is_empty());
    assert_eq!(server.metric("klad_http_panics_total").await, 1);

    // A process whose text is written, then the call panics before its
    // process document is.
    let r = server
        .http(
            "POST",
            "/api/processes",
            Some(&secret),
            Some(json!({ "title": "Boom" })),
        )
        .await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(server.metric("klad_http_panics_total").await, 2);

    // The server goes on: the next call works (nothing stayed locked).
    let r = server
        .http(
            "POST",
            &path,
            Some(&secret),
            Some(json!({ "name": "Anna", "role": "drafter" })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let ready = server
        .http("GET", "/readyz", None, None)
        .await
        .json()
        .unwrap();
    assert_eq!(ready["processes"], 1);

    // And a restart finds the same: one process, one member.
    server.restart().await;
    assert_eq!(members(&server, &secret, &pid).await, ["Anna"]);
    let ready = server
        .http("GET", "/readyz", None, None)
        .await
        .json()
        .unwrap();
    assert_eq!(ready["processes"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_does_not_cut_a_call_short() {
    // Slow storage keeps the call busy long after its client has gone.
    let mut server = Server::start(&["--fault-put-delay-ms", "300"]).await;
    let secret = admin(&server);
    let pid = create(&server, &secret, "Opgehangen").await;
    let body = json!({ "name": "Anna", "role": "drafter" }).to_string();
    let mut stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let req = format!(
        "POST /api/processes/{pid}/members HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {secret}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    // Hang up once the call is writing (a store is in flight).
    let start = std::time::Instant::now();
    while server.metric("klad_stores_in_flight").await == 0 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the call never started writing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(stream);
    // The call runs to its end: the member is added whole.
    let start = std::time::Instant::now();
    while members(&server, &secret, &pid).await.is_empty() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the call stopped when its client hung up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server.restart().await;
    assert_eq!(members(&server, &secret, &pid).await, ["Anna"]);
}
