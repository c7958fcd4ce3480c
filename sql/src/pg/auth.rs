//! Who may connect: SCRAM-SHA-256 passwords for the users `[sql.users]` names, and TLS
//! from a certificate and key in PEM files.
//!
//! Passwords are kept only as SCRAM's salted hash (one random salt per user, made at
//! start-up), never as text and never in `Debug` output. An unknown user gets a made-up
//! salt and hash derived from a secret of this process and the name (as Postgres's
//! `scram_mock_salt`): the same salt on every attempt, like a real user's, and the same
//! work, so the exchange fails the way a wrong password does (`28P01`) and tells nothing
//! of which user names exist.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramAuth};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::PgWireResult;
use pgwire::tokio::tokio_rustls::rustls::pki_types::pem::PemObject;
use pgwire::tokio::tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use pgwire::tokio::tokio_rustls::rustls::ServerConfig;
use pgwire::tokio::TlsAcceptor;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// SCRAM's PBKDF2 iterations: Postgres's default (and SCRAM's minimum).
const ITERATIONS: usize = 4096;

/// The users who may connect, with their salted passwords.
pub struct Users {
    salted: BTreeMap<String, (Vec<u8>, Vec<u8>)>,
    /// Derives unknown users' made-up salts and hashes.
    mock: hmac::Key,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.salted.keys()).finish()
    }
}

impl Users {
    /// From (user, password) pairs.
    pub fn new<'a>(users: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Users, String> {
        let salted = users
            .into_iter()
            .map(|(user, password)| {
                let salt = random(16)?;
                let hash = gen_salted_password(password, &salt, ITERATIONS);
                Ok((user.to_string(), (salt, hash)))
            })
            .collect::<Result<_, String>>()?;
        let mock = hmac::Key::new(hmac::HMAC_SHA256, &random(32)?);
        Ok(Users { salted, mock })
    }

    /// Whether `user` is one of them (for the metric's reason, never for a client).
    pub fn knows(&self, user: &str) -> bool {
        self.salted.contains_key(user)
    }

    /// `user`'s salt and salted password; for an unknown user, ones made up from
    /// [`Users::mock`] and the name, computed for every user so both cost the same.
    fn secret(&self, user: &str) -> (Vec<u8>, Vec<u8>) {
        let derive = |what: &[u8]| {
            hmac::sign(&self.mock, &[what, user.as_bytes()].concat())
                .as_ref()
                .to_vec()
        };
        let (mock_salt, mock_hash) = (derive(b"salt\0")[..16].to_vec(), derive(b"hash\0"));
        match self.salted.get(user) {
            Some((salt, hash)) => (salt.clone(), hash.clone()),
            None => (mock_salt, mock_hash),
        }
    }

    /// Whether `password` is `user`'s (for HTTP's Basic authentication): the same salted
    /// hash compared in constant time; an unknown user costs the same work.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let unknown = (Vec::new(), Vec::new());
        let (salt, hash) = self.salted.get(user).unwrap_or(&unknown);
        let got = gen_salted_password(password, salt, ITERATIONS);
        // Every byte compared, whatever the first difference.
        let differs = got.len() != hash.len()
            || got.iter().zip(hash).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0;
        self.salted.contains_key(user) && !differs
    }

    /// The SCRAM-SHA-256 mechanism over these users; with the server's certificate
    /// (PEM), SCRAM-SHA-256-PLUS (channel binding) too.
    pub fn scram(self: &Arc<Self>, certificate: Option<&[u8]>) -> Result<ScramAuth, String> {
        let mut scram = ScramAuth::new(self.clone());
        scram.set_iterations(ITERATIONS);
        if let Some(pem) = certificate {
            scram
                .configure_certificate(pem)
                .map_err(|e| format!("the TLS certificate cannot be used for SCRAM: {e}"))?;
        }
        Ok(scram)
    }
}

#[async_trait]
impl AuthSource for Users {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let (salt, hash) = self.secret(login.user().unwrap_or_default());
        Ok(Password::new(Some(salt), hash))
    }
}

fn random(len: usize) -> Result<Vec<u8>, String> {
    let mut bytes = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system's random number generator failed".to_string())?;
    Ok(bytes)
}

/// TLS from a certificate chain and a private key, both PEM files; also the certificate's
/// PEM text, for SCRAM's channel binding.
pub fn tls(cert: &Path, key: &Path) -> Result<(TlsAcceptor, Vec<u8>), String> {
    let pem = std::fs::read(cert)
        .map_err(|e| format!("reading the TLS certificate {}: {e}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no PEM certificate", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{} is not a PEM private key: {e}", key.display()))?;
    // The provider is named: with the lake's AWS SDK in the build, rustls has both ring
    // and aws-lc-rs and would otherwise refuse to pick one (a panic at the first TLS
    // endpoint). ring is what pgwire's `server-api-ring` brings.
    let provider = Arc::new(pgwire::tokio::tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| format!("the TLS certificate and key do not go together: {e}"))?;
    Ok((TlsAcceptor::from(Arc::new(config)), pem))
}

/// How connections are secured: the password exchange (when users are configured) and
/// TLS (when a certificate is).
#[derive(Clone, Default)]
pub struct Security {
    pub scram: Option<ScramAuth>,
    pub tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("passwords", &self.scram.is_some())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Security {
    /// From the users (none: no passwords asked) and a PEM certificate and key (none: no
    /// TLS; with it, every connection must use TLS).
    pub fn new(
        users: Option<&Arc<Users>>,
        tls_files: Option<(&Path, &Path)>,
    ) -> Result<Security, String> {
        let tls_pair = tls_files.map(|(cert, key)| tls(cert, key)).transpose()?;
        let scram = users
            .map(|users| users.scram(tls_pair.as_ref().map(|(_, pem)| pem.as_slice())))
            .transpose()?;
        Ok(Security {
            scram,
            tls: tls_pair.map(|(acceptor, _)| acceptor),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_user_gets_the_same_made_up_salt_every_time_and_a_different_one_per_name() {
        let users = Users::new([("alice", "secret")]).expect("users");
        let (salt, hash) = users.secret("mallory");
        assert_eq!((salt.len(), hash.len()), (16, 32));
        assert_eq!(users.secret("mallory"), (salt.clone(), hash));
        assert_ne!(users.secret("eve").0, salt);
        // A known user's salt is as stable, and no different in form.
        assert_eq!(users.secret("alice"), users.secret("alice"));
        assert_eq!(users.secret("alice").0.len(), 16);
        assert!(users.knows("alice") && !users.knows("mallory"));
    }
}
