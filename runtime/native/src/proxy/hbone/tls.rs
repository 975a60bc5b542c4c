//! Mesh TLS on the native side: the certificates of this node's workloads, the trust bundle,
//! and the rustls configurations built from them.
//!
//! - TLS 1.3 only, AES-GCM suites only (`TLS13_AES_128_GCM_SHA256`, `TLS13_AES_256_GCM_SHA384`),
//!   ALPN `h2`, as Istio ambient speaks HBONE. A TLS 1.2 or ChaCha20-only client finds no
//!   common version or suite and is refused in the handshake.
//! - No session tickets and no resumption: every connection proves its identity with a full
//!   handshake.
//! - Both sides verify the peer's chain against the trust bundle. A client also checks that
//!   the server's SPIFFE ID (its one URI SAN) is the destination workload's; a server reads
//!   the client's SPIFFE ID and hands it to the inbound filters.
//!
//! Node's identity module hands the material over (`NativeProxy.setIdentities`) at start and
//! at every issue or rotation; a new set is swapped in whole. Connections already open keep
//! the configuration they were made with. Private keys live only inside the rustls
//! configurations: nothing here prints them, and errors name identities, never key bytes.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{NoServerSessionStorage, ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use serde::Deserialize;

/// The ALPN protocol HBONE speaks.
pub const ALPN_H2: &[u8] = b"h2";

/// ring's primitives with the suites HBONE allows (key exchange: X25519 and the NIST curves).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    let ring = rustls::crypto::ring::default_provider();
    Arc::new(CryptoProvider {
        cipher_suites: vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256, rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384],
        ..ring
    })
}

/// What Node sends: the trust bundle and one certificate chain and key per local workload identity.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshTlsSpec {
    /// PEM: every root (and intermediate) a peer's chain may end in.
    roots: String,
    identities: Vec<IdentitySpec>,
}

#[derive(Deserialize)]
struct IdentitySpec {
    identity: String,
    /// PEM: the workload certificate first, then its intermediates.
    chain: String,
    /// PEM: the private key (PKCS#8, SEC1 or PKCS#1).
    key: String,
}

/// One local workload identity: what its server side presents and what its client side uses.
pub struct Credentials {
    pub identity: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    pub server: Arc<ServerConfig>,
    /// Client configurations by the server identity they expect.
    clients: Mutex<HashMap<String, Arc<ClientConfig>>>,
    provider: Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("identity", &self.identity).field("chain", &self.chain.len()).finish_non_exhaustive()
    }
}

impl Credentials {
    /// The client configuration that presents this identity and accepts only a server whose
    /// SPIFFE ID is `expect`.
    pub fn client(&self, expect: &str) -> Result<Arc<ClientConfig>, String> {
        let mut clients = self.clients.lock().unwrap();
        if let Some(c) = clients.get(expect) {
            return Ok(c.clone());
        }
        let verifier = Arc::new(SpiffeServerVerifier { roots: self.roots.clone(), expect: expect.to_string(), algorithms: self.provider.signature_verification_algorithms });
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("client TLS for {}: {e}", self.identity))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| format!("the certificate of {} does not go with its key: {e}", self.identity))?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        config.enable_sni = false;
        let config = Arc::new(config);
        clients.insert(expect.to_string(), config.clone());
        Ok(config)
    }
}

/// One generation of the node's mesh TLS material.
pub struct MeshTls {
    /// Bumped by every `setIdentities`: pooled client sessions are keyed by it, so sessions
    /// made with a rotated certificate are not reused for new tunnels.
    pub generation: u64,
    by_identity: HashMap<String, Arc<Credentials>>,
}

impl MeshTls {
    pub fn build(spec: MeshTlsSpec, generation: u64) -> Result<MeshTls, String> {
        let provider = provider();
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(spec.roots.as_bytes()) {
            let cert = cert.map_err(|e| format!("the trust bundle is not PEM certificates: {e}"))?;
            roots.add(cert).map_err(|e| format!("a trust bundle certificate cannot be a root: {e}"))?;
        }
        if roots.is_empty() {
            return Err("the trust bundle has no certificate".into());
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| format!("client certificate verifier: {e}"))?;
        let mut by_identity = HashMap::new();
        for id in spec.identities {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(id.chain.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("the certificate chain of {} is not PEM: {e}", id.identity))?;
            let Some(leaf) = chain.first() else { return Err(format!("the certificate chain of {} is empty", id.identity)) };
            let named = spiffe_id(leaf)?;
            if named != id.identity {
                return Err(format!("the certificate given for {} names {named}", id.identity));
            }
            let key = PrivateKeyDer::from_pem_slice(id.key.as_bytes()).map_err(|_| format!("the private key of {} is not a PEM private key", id.identity))?;
            let mut server = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| format!("server TLS for {}: {e}", id.identity))?
                .with_client_cert_verifier(verifier.clone())
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(|e| format!("the certificate of {} does not go with its key: {e}", id.identity))?;
            server.alpn_protocols = vec![ALPN_H2.to_vec()];
            server.send_tls13_tickets = 0;
            server.session_storage = Arc::new(NoServerSessionStorage {});
            by_identity.insert(
                id.identity.clone(),
                Arc::new(Credentials { identity: id.identity, chain, key, server: Arc::new(server), clients: Mutex::new(HashMap::new()), provider: provider.clone(), roots: roots.clone() }),
            );
        }
        Ok(MeshTls { generation, by_identity })
    }

    pub fn credentials(&self, identity: &str) -> Option<&Arc<Credentials>> {
        self.by_identity.get(identity)
    }

    pub fn identities(&self) -> impl Iterator<Item = &str> {
        self.by_identity.keys().map(|s| s.as_str())
    }
}

/// The SPIFFE ID of a certificate: its one `spiffe://` URI SAN.
pub fn spiffe_id(cert: &CertificateDer<'_>) -> Result<String, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let san = parsed.subject_alternative_name().map_err(|e| format!("unreadable subjectAltName: {e}"))?;
    let mut ids = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) if u.starts_with("spiffe://") => Some(u.to_string()),
            _ => None,
        });
    match (ids.next(), ids.next()) {
        (Some(id), None) => Ok(id),
        (None, _) => Err("the certificate has no spiffe:// URI SAN".into()),
        (Some(_), Some(_)) => Err("the certificate has more than one spiffe:// URI SAN".into()),
    }
}

/// Accepts a server whose chain ends in the trust bundle and whose SPIFFE ID is `expect`
/// (the destination workload's): DNS names and IP SANs play no part.
struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    expect: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for SpiffeServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeServerVerifier").field("expect", &self.expect).finish_non_exhaustive()
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(&parsed, &self.roots, intermediates, now, self.algorithms.all)?;
        let id = spiffe_id(end_entity).map_err(|e| rustls::Error::General(format!("the server's certificate: {e}")))?;
        if id != self.expect {
            return Err(rustls::Error::General(format!("the server presented {id}, which is not the destination workload's identity {}", self.expect)));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, _message: &[u8], _cert: &CertificateDer<'_>, _dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not spoken here".into()))
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
