//! A PostgreSQL URL, read: its TLS mode (libpq's names), the CA it trusts, and the
//! same URL without its password, which is all that is ever shown.

use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How the connection is secured: libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, its certificate not checked (libpq's default).
    Prefer,
    /// TLS, its certificate not checked.
    Require,
    /// TLS, the certificate checked against the trusted CAs and the host's name.
    VerifyFull,
}

/// A URL taken apart: what `tokio-postgres` reads, and what Aqueduct reads itself.
pub(crate) struct Target {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) ssl: SslMode,
    /// `sslrootcert`: a PEM file of the CAs to trust (else the system's).
    pub(crate) root_cert: Option<String>,
    /// The URL with its password replaced by `***`: for messages and `location()`.
    pub(crate) shown: String,
}

/// Reads `url` (`postgres://user:password@host:port/db?sslmode=verify-full&sslrootcert=ca.pem`
/// or libpq's `key=value` form). The error never contains the password.
pub(crate) fn parse(url: &str) -> Result<Target, String> {
    let shown = redact(url);
    let (rest, options) = split_options(url);
    let mut ssl = SslMode::Prefer;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for (key, value) in options {
        match key.as_str() {
            "sslmode" => {
                ssl = match value.as_str() {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-full" => SslMode::VerifyFull,
                    "verify-ca" => {
                        return Err("sslmode=verify-ca is not supported: use verify-full, \
                                    which also checks the host's name"
                            .into());
                    }
                    other => {
                        return Err(format!(
                            "unknown sslmode `{other}`: use disable, prefer, require or verify-full"
                        ));
                    }
                }
            }
            "sslrootcert" => root_cert = Some(value),
            _ => kept.push((key, value)),
        }
    }
    let explicit = options_had_sslmode(url);
    let rebuilt = join_options(&rest, &kept);
    let mut config = tokio_postgres::Config::from_str(&rebuilt).map_err(|error| {
        format!(
            "`{shown}` is not a PostgreSQL URL: {}",
            redact(&error.to_string())
        )
    })?;
    // `sslmode` written in a way only the driver read (`sslmode = require`): its value.
    if !explicit {
        ssl = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        };
    }
    if ssl == SslMode::Require && root_cert.is_some() {
        return Err(
            "sslmode=require with sslrootcert would check the certificate's chain \
                    (libpq's verify-ca), which this version does not do: use \
                    sslmode=verify-full"
                .into(),
        );
    }
    // Aqueduct does the TLS choice; the driver only needs to know whether to ask.
    config.ssl_mode(match ssl {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
    });
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    config.application_name("aqueduct");
    Ok(Target {
        config,
        ssl,
        root_cert,
        shown,
    })
}

/// The query options of a URL (`?a=b&c=d`), or the `key=value` words of libpq's form
/// that Aqueduct reads, and the rest.
fn split_options(url: &str) -> (String, Vec<(String, String)>) {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), Vec::new());
        };
        let options = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (pair.to_owned(), String::new()),
            })
            .collect();
        (base.to_owned(), options)
    } else {
        let mut rest = Vec::new();
        let mut options = Vec::new();
        for word in url.split_whitespace() {
            match word.split_once('=') {
                Some((k @ ("sslmode" | "sslrootcert"), v)) => {
                    options.push((k.to_owned(), v.to_owned()));
                }
                _ => rest.push(word),
            }
        }
        (rest.join(" "), options)
    }
}

/// Whether `url` names `sslmode` where Aqueduct reads it (a URL's query, a libpq word
/// `sslmode=…`).
fn options_had_sslmode(url: &str) -> bool {
    split_options(url).1.iter().any(|(key, _)| key == "sslmode")
}

fn join_options(base: &str, options: &[(String, String)]) -> String {
    if options.is_empty() {
        return base.to_owned();
    }
    let joined: Vec<String> = options.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if base.starts_with("postgres://") || base.starts_with("postgresql://") {
        format!("{base}?{}", joined.join("&"))
    } else {
        format!("{base} {}", joined.join(" "))
    }
}

/// `url` with its password (in `user:password@`, or `password=…`) replaced by `***`.
/// The user info of a URL runs from the scheme to the *last* `@` (a password may hold
/// `/`, `?` or `@`); in libpq's words form, `password` may have spaces around its `=`
/// and be quoted.
pub(crate) fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme) = out.find("://") {
        let start = scheme + 3;
        if let Some(at) = out[start..].rfind('@').map(|at| start + at)
            && let Some(colon) = out[start..at].find(':').map(|c| start + c)
        {
            out.replace_range(colon + 1..at, "***");
        }
    }
    let mut redacted = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("password") {
        let after = &rest[at + "password".len()..];
        let Some(value) = after.trim_start().strip_prefix('=') else {
            redacted.push_str(&rest[..at + "password".len()]);
            rest = after;
            continue;
        };
        let value = value.trim_start();
        redacted.push_str(&rest[..at]);
        redacted.push_str("password=***");
        // The value ends at a space or `&`, or after its closing quote.
        let end = match value.strip_prefix('\'') {
            Some(quoted) => {
                let mut escaped = false;
                let close = quoted.char_indices().find(|&(_, c)| {
                    let closes = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    closes
                });
                close.map_or(value.len(), |(i, _)| i + 2)
            }
            None => value.find([' ', '&']).unwrap_or(value.len()),
        };
        rest = &value[end..];
    }
    redacted.push_str(rest);
    redacted
}

/// A driver's error with what caused it, without a password: the server's message
/// for a database error ("password authentication failed for user …"), the I/O or
/// TLS error and its causes for the others. (The blocking driver's error is the async
/// driver's.)
pub(crate) fn explain(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if text.contains("UnknownIssuer") {
        text.push_str(
            " (the server's certificate is not signed by a CA this machine trusts: name \
             its CA with `sslrootcert=PATH`)",
        );
    }
    redact(&text)
}

/// The TLS client for `target`: verifying against the trusted CAs, or (`prefer`,
/// `require`) encrypting without checking the certificate, as libpq does.
pub(crate) fn tls(target: &Target) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?;
    if target.ssl != SslMode::VerifyFull {
        let verifier = Arc::new(Unverified(provider.signature_verification_algorithms));
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    match &target.root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|error| format!("sslrootcert `{path}`: {error}"))?;
            for cert in certs {
                let cert = cert.map_err(|error| format!("sslrootcert `{path}`: {error}"))?;
                roots
                    .add(cert)
                    .map_err(|error| format!("sslrootcert `{path}`: {error}"))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err("sslmode=verify-full but no CA to trust: give `sslrootcert=PATH`".into());
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// `sslmode=require` (and `prefer`): the connection is encrypted, the certificate not
/// checked (libpq's meaning); the handshake's signatures still are.
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::{SslMode, parse, redact};

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            redact("postgres://ann:s3cret@db:5432/runs?sslmode=require"),
            "postgres://ann:***@db:5432/runs?sslmode=require"
        );
        assert_eq!(
            redact("host=db user=ann password=s3cret dbname=runs"),
            "host=db user=ann password=*** dbname=runs"
        );
        assert_eq!(redact("postgres://db/runs"), "postgres://db/runs");
        assert_eq!(
            redact("postgres://ann:pa/ss?x@db/runs"),
            "postgres://ann:***@db/runs"
        );
        assert_eq!(
            redact("host=db password = s3cret user=ann"),
            "host=db password=*** user=ann"
        );
        assert_eq!(
            redact(r"host=db password='a b\' c' user=ann"),
            "host=db password=*** user=ann"
        );
        let bad = parse("postgres://ann:s3cret@db:notaport/runs")
            .err()
            .unwrap();
        assert!(!bad.contains("s3cret"), "{bad}");
    }

    #[test]
    fn ssl_modes_are_libpqs() {
        let mode = |url: &str| parse(url).map(|t| t.ssl);
        assert_eq!(mode("postgres://db/x").unwrap(), SslMode::Prefer);
        assert_eq!(
            mode("postgres://db/x?sslmode=disable").unwrap(),
            SslMode::Disable
        );
        assert_eq!(
            mode("postgres://db/x?sslmode=require").unwrap(),
            SslMode::Require
        );
        let full = parse("postgres://db/x?sslmode=verify-full&sslrootcert=/ca.pem").unwrap();
        assert_eq!(
            (full.ssl, full.root_cert.as_deref()),
            (SslMode::VerifyFull, Some("/ca.pem"))
        );
        assert!(
            mode("postgres://db/x?sslmode=verify-ca")
                .unwrap_err()
                .contains("verify-full")
        );
        assert!(
            mode("host=db sslmode=bogus")
                .unwrap_err()
                .contains("unknown sslmode")
        );
        assert_eq!(mode("host=db sslmode = require").unwrap(), SslMode::Require);
        assert!(mode("postgres://db/x?sslmode=require&sslrootcert=/ca.pem").is_err());
    }
}
