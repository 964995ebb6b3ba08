//! TLS to PostgreSQL, chosen by the address (the modes are in the parent
//! module's docs).
//!
//! tokio-postgres knows only `sslmode` `disable`, `prefer` and `require`,
//! refuses `sslrootcert`, and leaves certificates to its TLS connector. So
//! [`split_address`] takes both parameters out of the address before
//! tokio-postgres parses it, and [`Tls::new`] sets the mode and makes the
//! connector: rustls (ring provider) through `tokio-postgres-rustls`, which
//! also hands SCRAM the server's certificate for channel binding. With
//! `sslrootcert` rustls's own verifier checks the chain and the host name;
//! without it [`AnyCertificate`] accepts any certificate but still checks
//! the handshake signatures.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::Config;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::kv::StoreError;

/// The TLS parameters of an address that the store reads itself.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct TlsParams {
    /// `sslmode`, as written.
    pub sslmode: Option<String>,
    /// `sslrootcert`: the PEM file of the CA to verify the server against.
    pub sslrootcert: Option<String>,
}

/// How connections of one store do TLS.
pub(super) struct Tls {
    connector: MakeRustlsConnect,
    /// The CA file, when the server's certificate is verified.
    rootcert: Option<PathBuf>,
}

/// `url` without its `sslmode` and `sslrootcert` parameters, and their
/// values. Both of libpq's forms: `postgres://...?k=v&k=v` and `k=v k='v'`.
pub(super) fn split_address(url: &str) -> Result<(String, TlsParams), String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_url(url)
    } else {
        Ok(split_keywords(url))
    }
}

fn split_url(url: &str) -> Result<(String, TlsParams), String> {
    // tokio-postgres takes everything up to the first '@' as the
    // credentials before it looks for the query, so a '?' in the password
    // does not start it.
    let from = url.find('@').map_or(0, |at| at + 1);
    let Some(query) = url[from..].find('?').map(|i| from + i) else {
        return Ok((url.to_owned(), TlsParams::default()));
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| format!("the parameter {s:?} is not valid UTF-8 once decoded"))
    };
    let mut params = TlsParams::default();
    let mut kept = Vec::new();
    for pair in url[query + 1..].split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match decode(key)?.as_str() {
            "sslmode" => params.sslmode = Some(decode(value)?),
            "sslrootcert" => params.sslrootcert = Some(decode(value)?),
            _ => kept.push(pair),
        }
    }
    let mut rest = url[..query].to_owned();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok((rest, params))
}

/// The `key=value` form, read as tokio-postgres reads it (values may be
/// quoted with `'`, `\` escapes the next character). What it cannot read is
/// left as it is, for tokio-postgres to report.
fn split_keywords(s: &str) -> (String, TlsParams) {
    let mut params = TlsParams::default();
    let mut rest = String::new();
    let mut it = s.char_indices().peekable();
    loop {
        while it.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        let start = offset(s, &mut it);
        let Some((key, value)) = parameter(s, &mut it) else {
            rest.push_str(&s[start..]);
            return (rest, params);
        };
        match key {
            "sslmode" => params.sslmode = Some(value),
            "sslrootcert" => params.sslrootcert = Some(value),
            _ => {
                rest.push_str(&s[start..offset(s, &mut it)]);
                rest.push(' ');
            }
        }
    }
}

type Chars<'a> = std::iter::Peekable<std::str::CharIndices<'a>>;

/// One `key = value` of `s` from where `it` is, or `None` at the end or
/// where there is no complete one.
fn parameter<'a>(s: &'a str, it: &mut Chars<'a>) -> Option<(&'a str, String)> {
    let start = offset(s, it);
    while it
        .next_if(|&(_, c)| !c.is_whitespace() && c != '=')
        .is_some()
    {}
    let key = &s[start..offset(s, it)];
    while it.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
    if key.is_empty() || it.next_if(|&(_, c)| c == '=').is_none() {
        return None;
    }
    while it.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
    let quoted = it.next_if(|&(_, c)| c == '\'').is_some();
    let mut value = String::new();
    loop {
        match it.next_if(|&(_, c)| quoted || !c.is_whitespace()) {
            Some((_, '\\')) => value.extend(it.next().map(|(_, c)| c)),
            Some((_, '\'')) if quoted => return Some((key, value)),
            Some((_, c)) => value.push(c),
            // An unterminated quote.
            None if quoted => return None,
            None => return Some((key, value)),
        }
    }
}

/// The byte offset of `it` in `s`.
fn offset(s: &str, it: &mut Chars<'_>) -> usize {
    it.peek().map_or(s.len(), |&(i, _)| i)
}

impl Tls {
    /// Sets `config`'s TLS mode from `params` and makes the connector,
    /// reading the CA file now so a bad one fails the open, not a later
    /// call. `shown` is the address for messages.
    pub(super) fn new(
        params: TlsParams,
        config: &mut Config,
        shown: &str,
    ) -> Result<Self, StoreError> {
        let fail = |detail: String| StoreError::Tls {
            address: shown.to_owned(),
            detail,
        };
        let rootcert = params.sslrootcert.map(PathBuf::from);
        let mode = match (params.sslmode.as_deref(), &rootcert) {
            (Some("disable"), None) => SslMode::Disable,
            (None | Some("prefer"), None) => SslMode::Prefer,
            (Some("require"), None) => SslMode::Require,
            (None | Some("prefer" | "require" | "verify-full"), Some(_)) => SslMode::Require,
            (Some("disable"), Some(_)) => return Err(fail(
                "sslmode=disable turns TLS off, but sslrootcert asks to verify the server's certificate. Remove one of the two from the address.".into(),
            )),
            (Some("verify-full"), None) => return Err(fail(
                "sslmode=verify-full needs the certificate of the CA to verify the server against. Add sslrootcert=<PEM file> to the address (Klad reads neither ~/.postgresql/root.crt nor the system's CA store).".into(),
            )),
            (Some("verify-ca"), _) => return Err(fail(
                "sslmode=verify-ca is not supported: Klad verifies the server's certificate only together with its host name. Use sslmode=verify-full with sslrootcert=<PEM file>, or sslmode=require to encrypt without verifying.".into(),
            )),
            (Some(other), _) => return Err(fail(format!(
                "sslmode={other} is not supported. Use disable, prefer (the default), require, or verify-full with sslrootcert=<PEM file>."
            ))),
        };
        config.ssl_mode(mode);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| {
                fail(format!(
                    "rustls could not be set up ({e}). This is a bug in Klad; please report it."
                ))
            })?;
        let client = match &rootcert {
            Some(path) => builder.with_root_certificates(read_roots(path).map_err(fail)?),
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
        };
        Ok(Tls {
            connector: MakeRustlsConnect::new(client.with_no_client_auth()),
            rootcert,
        })
    }

    /// What `Config::connect` takes.
    pub(super) fn connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }

    /// What to tell about a failed connection attempt when TLS made it fail;
    /// `None` when something else did.
    pub(super) fn failure(&self, e: &tokio_postgres::Error) -> Option<String> {
        // tokio-postgres shows its error kinds only in this text.
        if e.to_string() != "error performing TLS handshake" {
            return None;
        }
        let cause = std::error::Error::source(e)?;
        let rustls_error = cause
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        Some(match (rustls_error, &self.rootcert) {
            (Some(rustls::Error::InvalidCertificate(_)), Some(path)) => format!(
                "the server's certificate did not verify against the CA certificate file {} ({cause}). Check that sslrootcert names the CA that signed the server's certificate and that the address names a host the certificate was issued for.",
                path.display()
            ),
            (None, _) if cause.to_string() == "server does not support TLS" => {
                "the server does not offer TLS, but the address requires it (sslmode=require or verify-full, or sslrootcert). Turn on ssl in the server's configuration, or, on a network you trust, connect without TLS (sslmode=disable and no sslrootcert).".to_owned()
            }
            _ => format!(
                "the TLS handshake failed ({cause}). Check the server's TLS settings (its certificate, key and minimum protocol version) and try again."
            ),
        })
    }
}

/// The CA certificates in the PEM file `path`, or what is wrong with it.
fn read_roots(path: &std::path::Path) -> Result<RootCertStore, String> {
    if path.as_os_str() == "system" {
        return Err("sslrootcert=system (the system's CA store) is not supported. Name a PEM file with the CA's certificate instead.".to_owned());
    }
    let file = path.display();
    let bytes = std::fs::read(path).map_err(|e| {
        format!("the CA certificate file {file} named by sslrootcert could not be read ({e}). Check the path and that this program may read the file, then try again.")
    })?;
    let advice =
        "Name a PEM file with the certificate of the CA that signed the server's certificate.";
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the CA certificate file {file} named by sslrootcert is not a valid PEM file ({e}). {advice}"))?;
    if certs.is_empty() {
        return Err(format!(
            "the CA certificate file {file} named by sslrootcert holds no certificate (no -----BEGIN CERTIFICATE----- block). {advice}"
        ));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| {
            format!("the CA certificate file {file} named by sslrootcert holds a certificate that cannot be used ({e}). {advice}")
        })?;
    }
    Ok(roots)
}

/// Accepts the server's certificate, whatever it is (libpq's
/// `sslmode=require`), but checks the handshake signatures with the
/// provider's algorithms, so the server must hold the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(sslmode: Option<&str>, sslrootcert: Option<&str>) -> TlsParams {
        TlsParams {
            sslmode: sslmode.map(str::to_owned),
            sslrootcert: sslrootcert.map(str::to_owned),
        }
    }

    #[test]
    fn tls_parameters_are_taken_out_of_urls() {
        let (rest, p) = split_address(
            "postgres://u:p?w@h:5432/db?application_name=a&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20x.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p?w@h:5432/db?application_name=a");
        assert_eq!(p, params(Some("verify-full"), Some("/etc/ca x.pem")));
        let (rest, p) = split_address("postgresql://h/db?sslmode=require").unwrap();
        assert_eq!(
            (rest.as_str(), p),
            ("postgresql://h/db", params(Some("require"), None))
        );
        let (rest, p) = split_address("postgres://u:pw@h/db").unwrap();
        assert_eq!(
            (rest.as_str(), p),
            ("postgres://u:pw@h/db", params(None, None))
        );
        rest.parse::<Config>().unwrap();
    }

    #[test]
    fn tls_parameters_are_taken_out_of_key_value_addresses() {
        let (rest, p) = split_address(
            "host=h sslmode = require password='a b\\'c' sslrootcert='/ca dir/ca.pem' dbname=d",
        )
        .unwrap();
        assert_eq!(p, params(Some("require"), Some("/ca dir/ca.pem")));
        let config: Config = rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"a b'c"[..]));
        assert_eq!(config.get_dbname(), Some("d"));
        // What does not parse is left for tokio-postgres to report.
        let (rest, _) = split_address("host=h sslmode='require").unwrap();
        assert!(rest.parse::<Config>().is_err(), "{rest}");
    }

    #[test]
    fn tls_modes_follow_libpq() {
        let mode = |p| {
            let mut config = Config::new();
            Tls::new(p, &mut config, "postgres://u@h/db").map(|_| config.get_ssl_mode())
        };
        assert_eq!(mode(params(None, None)).unwrap(), SslMode::Prefer);
        assert_eq!(
            mode(params(Some("disable"), None)).unwrap(),
            SslMode::Disable
        );
        assert_eq!(
            mode(params(Some("require"), None)).unwrap(),
            SslMode::Require
        );
        for (p, expect) in [
            (
                params(Some("verify-full"), None),
                "needs the certificate of the CA",
            ),
            (params(Some("verify-ca"), Some("/ca.pem")), "not supported"),
            (params(Some("allow"), None), "Use disable, prefer"),
            (params(Some("disable"), Some("/ca.pem")), "Remove one"),
            (params(None, Some("system")), "not supported"),
            (
                params(None, Some("/no/such/ca.pem")),
                "/no/such/ca.pem named by sslrootcert could not be read",
            ),
        ] {
            let err = mode(p).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, StoreError::Tls { .. }), "{err:?}");
            assert!(
                msg.contains(expect) && msg.contains("postgres://u@h/db"),
                "{msg}"
            );
            assert!(msg.ends_with('.'), "{msg}");
        }
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = read_roots(&path).unwrap_err();
        assert!(err.contains("holds no certificate"), "{err}");
    }
}
