//! Signing in and staying signed in: the session cookie, the per-session
//! form secret (CSRF), and the origin check every form post passes.
//!
//! - The cookie holds 256 random bits and nothing else. It is `HttpOnly`
//!   (no script reads it), `SameSite=Strict` (no other site's page sends
//!   it), scoped to the desk's path, and `Secure` when the desk is reached
//!   over TLS (directly or behind a proxy that says so).
//! - The server stores the session under a SHA-256 hash of the cookie, so a
//!   copy of the store lets nobody sign in.
//! - Every form carries the session's own secret; a post without it, or
//!   with another, is refused. Posts whose `Origin` (or `Sec-Fetch-Site`)
//!   says another site sent them are refused before that.
//! - A session ends at sign-out, when its token expires, and when a
//!   facilitator revokes the member's token (checked on every request).

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "klad_desk";

/// 256 random bits as 64 hex digits (two v4 UUIDs carry 244 random bits;
/// four give room to spare and keep to one well-used source of randomness).
pub fn random_secret() -> String {
    let mut s = String::with_capacity(128);
    for _ in 0..4 {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s
}

/// What the store keys a session by: the cookie's hash, never the cookie.
pub fn storage_id(cookie: &str) -> String {
    let digest = Sha256::digest(cookie.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of the cookie `name` in a request, if any.
pub fn cookie_named(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim().to_owned())
}

/// The desk's session cookie in a request, if any.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    cookie_named(headers, COOKIE)
        .filter(|v| v.len() == 128 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// True when the request reached the desk over TLS (directly or through a
/// proxy that sets `X-Forwarded-Proto: https`).
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(value: &str, max_age_secs: u64, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/desk; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

/// True when two secrets are equal, compared in time independent of where
/// they differ.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a form post may have come from another site. Browsers say where
/// a request comes from in `Sec-Fetch-Site`; only `same-origin` (and `none`,
/// typed by the person) pass. A browser too old to send it is judged by
/// `Origin`, which must name the host asked. A request with neither (a
/// script, curl) is judged by the form secret alone.
pub fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin)
        .trim_end_matches('/');
    origin == "null" || !origin_host.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn secrets_are_long_hex_and_differ() {
        let a = random_secret();
        let b = random_secret();
        assert_eq!(a.len(), 128);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_ne!(storage_id(&a), a);
        assert_eq!(storage_id(&a), storage_id(&a));
    }

    #[test]
    fn the_cookie_is_found_among_others_and_malformed_ones_are_ignored() {
        let s = random_secret();
        let h = headers(&[("cookie", &format!("a=1; {COOKIE}={s}; b=2"))]);
        assert_eq!(cookie(&h), Some(s));
        let h = headers(&[("cookie", &format!("{COOKIE}=short"))]);
        assert_eq!(cookie(&h), None);
        assert_eq!(cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_behind_tls() {
        let c = set_cookie("x", 60, false);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"));
        assert!(set_cookie("x", 60, true).ends_with("; Secure"));
        assert!(over_tls(&headers(&[("x-forwarded-proto", "https")])));
        assert!(!over_tls(&HeaderMap::new()));
    }

    #[test]
    fn posts_from_other_sites_are_recognised() {
        let own = [
            ("host", "127.0.0.1:7700"),
            ("origin", "http://127.0.0.1:7700"),
        ];
        assert!(!cross_site(&headers(&own)));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:7700"),
            ("origin", "http://evil.example")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:7700"),
            ("origin", "null")
        ])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!cross_site(&headers(&[("sec-fetch-site", "same-origin")])));
        // A browser that says same-origin is believed over an Origin of
        // "null" (what it sends under some referrer policies).
        assert!(!cross_site(&headers(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "null")
        ])));
        assert!(cross_site(&headers(&[
            ("sec-fetch-site", "same-site"),
            ("origin", "http://127.0.0.1:7700"),
            ("host", "127.0.0.1:7700")
        ])));
        assert!(!cross_site(&HeaderMap::new()));
    }

    #[test]
    fn secret_comparison() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
    }
}
