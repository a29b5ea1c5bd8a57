//! TLS to PostgreSQL with rustls (ring, already in the build through the HTTP
//! client): `sslmode=require` or `sslmode=verify-full` in the store string.
//!
//! rustls always checks the server's certificate chain and host name, so both modes
//! verify fully (stricter than libpq's `require`, which encrypts without checking):
//! against the Mozilla roots (`webpki-roots`) by default, or against the PEM file
//! given as `sslrootcert=PATH` (a company CA, a self-signed server). `verify-ca`
//! (chain without host name) is refused, `disable`, `prefer` and no `sslmode`
//! connect without TLS, as before (loopback and Unix sockets, which never use TLS).
//! No channel binding: SCRAM authentication works as without TLS.

use super::super::StoreError;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// A rustls client configuration trusting the roots of `root_cert` (a PEM file of
/// one or more certificates), or the Mozilla roots without one.
pub fn client_config(root_cert: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            use rustls::pki_types::pem::PemObject;
            let bad = |e: String| StoreError::Io(format!("PostgreSQL option `sslrootcert={}`: {e}", path.display()));
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(format!("cannot read it ({e})")))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("not a PEM certificate file ({e})")))?;
            if certs.is_empty() {
                return Err(bad("no certificate in it (expected -----BEGIN CERTIFICATE-----)".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| bad(format!("a certificate rustls cannot use ({e})")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Io(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// tokio-postgres's TLS hook, made from a rustls configuration.
#[derive(Clone)]
pub struct MakeRustls(pub Arc<rustls::ClientConfig>);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        let name = rustls::pki_types::ServerName::try_from(domain.to_string())?;
        Ok(RustlsConnect { config: self.0.clone(), name })
    }
}

/// One connection's handshake with the server named `name`.
pub struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let s = tokio_rustls::TlsConnector::from(self.config).connect(self.name, stream).await?;
            Ok(RustlsStream(s))
        })
    }
}

/// An encrypted connection.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{PgOptions, PgStore};
    use rustls::pki_types::pem::PemObject;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const KEY: &[u8] = include_bytes!("../../../tests/fixtures/tls/localhost.key");
    const CERT: &[u8] = include_bytes!("../../../tests/fixtures/tls/localhost.pem");

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    /// A fake PostgreSQL server on 127.0.0.1 for one connection: answers the
    /// SSLRequest with `answer` (`S` or `N`); after `S`, does the TLS handshake
    /// with the `localhost` certificate and refuses the login with a message the
    /// client can only read through TLS.
    fn fake_server(answer: u8) -> u16 {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = std_listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                std_listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 8];
                sock.read_exact(&mut request).await.unwrap();
                assert_eq!(&request[4..], &80877103u32.to_be_bytes(), "an SSLRequest comes first");
                sock.write_all(&[answer]).await.unwrap();
                if answer != b'S' {
                    return;
                }
                let certs = vec![rustls::pki_types::CertificateDer::from_pem_slice(CERT).unwrap()];
                let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(KEY).unwrap();
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ServerConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_no_client_auth()
                    .with_single_cert(certs, key)
                    .unwrap();
                let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(Arc::new(config)).accept(sock).await else {
                    return; // the client refused our certificate
                };
                let mut len = [0u8; 4];
                tls.read_exact(&mut len).await.unwrap();
                let mut startup = vec![0u8; u32::from_be_bytes(len) as usize - 4];
                tls.read_exact(&mut startup).await.unwrap();
                let mut fields = Vec::new();
                for (code, text) in
                    [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', "28000"), (b'M', "fake server: TLS works")]
                {
                    fields.push(code);
                    fields.extend_from_slice(text.as_bytes());
                    fields.push(0);
                }
                fields.push(0);
                let mut msg = vec![b'E'];
                msg.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
                msg.extend_from_slice(&fields);
                tls.write_all(&msg).await.unwrap();
                tls.flush().await.unwrap();
                let _ = tls.shutdown().await;
            });
        });
        port
    }

    fn open(port: u16, extra: &str) -> String {
        let store = format!(
            "host=localhost hostaddr=127.0.0.1 port={port} user=u dbname=d connect_timeout=5 sslmode=require {extra}"
        );
        let opts = PgOptions::from_store(&store).unwrap();
        PgStore::open(&opts).err().expect("the fake server never lets anyone in").to_string()
    }

    #[test]
    fn sslmode_require_talks_tls_and_checks_the_certificate_against_sslrootcert() {
        let port = fake_server(b'S');
        let e = open(port, &format!("sslrootcert={}", fixture("ca.pem")));
        assert!(e.contains("fake server: TLS works"), "the login went over TLS: {e}");
    }

    #[test]
    fn a_certificate_not_signed_by_a_trusted_root_is_refused() {
        let port = fake_server(b'S');
        let e = open(port, &format!("sslrootcert={}", fixture("other.pem")));
        assert!(e.contains("TLS handshake") && e.contains("certificate"), "{e}");
        // Without sslrootcert the Mozilla roots do not know a self-signed server either.
        let port = fake_server(b'S');
        let e = open(port, "");
        assert!(e.contains("TLS handshake") && e.contains("certificate"), "{e}");
    }

    #[test]
    fn a_server_without_tls_is_refused_when_tls_is_required() {
        let port = fake_server(b'N');
        let e = open(port, "");
        assert!(e.contains("cannot connect to PostgreSQL"), "{e}");
        assert!(!e.contains("fake server"), "{e}");
    }

    #[test]
    fn a_bad_root_certificate_file_is_a_clear_error() {
        let store = format!("host=localhost port=1 sslmode=verify-full sslrootcert={}", fixture("missing.pem"));
        let e = PgStore::open(&PgOptions::from_store(&store).unwrap()).err().unwrap().to_string();
        assert!(e.contains("sslrootcert=") && e.contains("cannot read it"), "{e}");
    }
}
