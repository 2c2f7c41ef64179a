//! Key material: where it comes from, and binding it to the algorithms it may verify.
//!
//! A key is loaded once, at start-up or reload, and checked against every configured algorithm
//! then, so that a token can never pick an algorithm the key was not meant for (no HS/RS
//! confusion: an RSA public key is never used as an HMAC secret).
//!
//! Keys an identity provider publishes (JWK Sets) are read by [`jwks`] and cached under the
//! policy of [`cache`]; both are free of I/O.

pub mod cache;
pub mod jwks;
pub mod published;

use std::{
    fmt,
    path::{Path, PathBuf},
};

use aws_lc_rs::signature::{
    self as lc, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey, RsaKeyPair,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// Environment variable systemd sets for `LoadCredential=`.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// Where the key comes from. Exactly one is configured.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `secret`: the UTF-8 bytes of the string are the HMAC key.
    Secret(String),
    /// `secret_file`: the file's bytes, without one trailing newline.
    SecretFile(PathBuf),
    /// `secret_credential`: a systemd credential holding the secret.
    SecretCredential(String),
    /// `keyfile`: a PEM public key, X.509 certificate or private key.
    Keyfile(PathBuf),
    /// `keyfile_credential`: a systemd credential holding such a PEM.
    KeyfileCredential(String),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("Secret([redacted])"),
            Self::SecretFile(p) => f.debug_tuple("SecretFile").field(p).finish(),
            Self::SecretCredential(n) => f.debug_tuple("SecretCredential").field(n).finish(),
            Self::Keyfile(p) => f.debug_tuple("Keyfile").field(p).finish(),
            Self::KeyfileCredential(n) => f.debug_tuple("KeyfileCredential").field(n).finish(),
        }
    }
}

impl KeySource {
    /// The configuration key this source was given as.
    #[must_use]
    pub fn config_key(&self) -> &'static str {
        match self {
            Self::Secret(_) => "secret",
            Self::SecretFile(_) => "secret_file",
            Self::SecretCredential(_) => "secret_credential",
            Self::Keyfile(_) => "keyfile",
            Self::KeyfileCredential(_) => "keyfile_credential",
        }
    }

    fn is_secret(&self) -> bool {
        matches!(
            self,
            Self::Secret(_) | Self::SecretFile(_) | Self::SecretCredential(_)
        )
    }

    /// Reads the raw bytes: the HMAC secret, or the PEM text of a key file.
    fn read(&self) -> Result<Vec<u8>, KeyError> {
        match self {
            Self::Secret(s) => Ok(s.as_bytes().to_vec()),
            Self::SecretFile(path) => read_file(path).map(strip_newline),
            Self::SecretCredential(name) => read_file(&credential_path(name)?).map(strip_newline),
            Self::Keyfile(path) => read_file(path),
            Self::KeyfileCredential(name) => read_file(&credential_path(name)?),
        }
    }

    /// A signing key for `mint`: the HMAC secret, or a private key in `keyfile`.
    pub fn encoding_key(&self, algorithm: Algorithm) -> Result<EncodingKey, KeyError> {
        let bytes = self.read()?;
        let key = match KeyType::for_algorithm(algorithm) {
            Some(KeyType::Hmac) if self.is_secret() => return Ok(EncodingKey::from_secret(&bytes)),
            Some(KeyType::Hmac) => return Err(KeyError::NotASecret { algorithm }),
            Some(KeyType::Rsa) => EncodingKey::from_rsa_pem(&bytes),
            Some(KeyType::P256 | KeyType::P384) => EncodingKey::from_ec_pem(&bytes),
            Some(KeyType::Ed25519) => EncodingKey::from_ed_pem(&bytes),
            None => return Err(KeyError::UnsupportedAlgorithm { algorithm }),
        };
        key.map_err(|_| KeyError::NoPrivateKey { algorithm })
    }
}

/// Reads a key file given on the command line, as `mint --key` does.
pub fn encoding_key_from_pem_file(
    path: &Path,
    algorithm: Algorithm,
) -> Result<EncodingKey, KeyError> {
    KeySource::Keyfile(path.to_owned()).encoding_key(algorithm)
}

/// Largest key or secret file read. PEM keys and certificates are a few KiB; the bound keeps a
/// mistaken path (a log file, `/dev/zero`) from eating the daemon's memory.
pub const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    use std::io::Read as _;
    let read_error = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_KEY_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(KeyError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// `echo secret > file` adds a newline nobody means as part of the secret.
pub(crate) fn strip_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    bytes
}

pub(crate) fn credential_path(name: &str) -> Result<PathBuf, KeyError> {
    if name.contains('/') || name == "." || name == ".." {
        return Err(KeyError::CredentialName {
            name: name.to_owned(),
        });
    }
    let dir = std::env::var_os(CREDENTIALS_DIRECTORY).ok_or_else(|| KeyError::NoCredentials {
        name: name.to_owned(),
    })?;
    Ok(Path::new(&dir).join(name))
}

/// Why a key cannot be used. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is larger than {} KiB: not a key", path.display(), MAX_KEY_FILE_BYTES / 1024)]
    TooLarge { path: PathBuf },
    #[error(
        "credential `{name}` requested but ${CREDENTIALS_DIRECTORY} is not set; \
         start the service with `LoadCredential={name}:<path>`"
    )]
    NoCredentials { name: String },
    #[error("`{name}` is not a valid credential name")]
    CredentialName { name: String },
    #[error("algorithm {algorithm:?} is not supported")]
    UnsupportedAlgorithm { algorithm: Algorithm },
    #[error("the secret is empty")]
    EmptySecret,
    #[error(
        "the secret is {len} bytes but {algorithm:?} needs at least {needed} bytes (RFC 7518 section 3.2); \
         use a longer secret or set `allow_weak_secret` to true"
    )]
    WeakSecret {
        len: usize,
        algorithm: Algorithm,
        needed: usize,
    },
    #[error(
        "{algorithm:?} needs a shared secret (`secret`, `secret_file` or `secret_credential`), not a key file"
    )]
    NotASecret { algorithm: Algorithm },
    #[error(
        "{algorithm:?} needs a key file (`keyfile` or `keyfile_credential`), not a shared secret"
    )]
    NotAKeyFile { algorithm: Algorithm },
    #[error("not a PEM file: {detail}")]
    NotPem { detail: String },
    #[error(
        "PEM block `{label}` is not supported; use PUBLIC KEY, RSA PUBLIC KEY, CERTIFICATE, PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY"
    )]
    UnsupportedPem { label: String },
    #[error("the PEM block `{label}` does not hold an RSA, P-256, P-384 or Ed25519 key")]
    UnknownKeyType { label: String },
    #[error("the key is {key_type} but algorithm {algorithm:?} needs {needed}")]
    AlgorithmMismatch {
        key_type: KeyType,
        algorithm: Algorithm,
        needed: KeyType,
    },
    #[error("the {key_type} key is not usable for {algorithm:?}: {detail}")]
    Unusable {
        key_type: KeyType,
        algorithm: Algorithm,
        detail: String,
    },
    #[error("the key is marked for another use than verifying signatures (`use` or `key_ops`)")]
    NotForSigning,
    #[error("no private key for {algorithm:?} in the key file: minting needs a private key")]
    NoPrivateKey { algorithm: Algorithm },
}

/// The kind of key, which decides the algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Hmac,
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hmac => "an HMAC secret",
            Self::Rsa => "an RSA key",
            Self::P256 => "a P-256 EC key",
            Self::P384 => "a P-384 EC key",
            Self::Ed25519 => "an Ed25519 key",
        })
    }
}

impl KeyType {
    /// The kind of key an algorithm needs; `None` for an algorithm this project does not support
    /// (jsonwebtoken's list may grow), so that no key ever fits it.
    #[must_use]
    pub fn for_algorithm(algorithm: Algorithm) -> Option<Self> {
        Some(match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Self::Hmac,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Self::Rsa,
            Algorithm::ES256 => Self::P256,
            Algorithm::ES384 => Self::P384,
            Algorithm::EdDSA => Self::Ed25519,
            _ => return None,
        })
    }
}

/// A loaded key, checked against the algorithms it will verify.
#[derive(Clone)]
pub struct VerificationKey {
    pub(crate) decoding: DecodingKey,
    key_type: KeyType,
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    /// Loads the key and checks it against every algorithm in `algorithms`.
    pub fn load(
        source: &KeySource,
        algorithms: &[Algorithm],
        allow_weak_secret: bool,
    ) -> Result<Self, KeyError> {
        let bytes = source.read()?;
        let key = if source.is_secret() {
            if let Some(&algorithm) = algorithms
                .iter()
                .find(|&&a| KeyType::for_algorithm(a) != Some(KeyType::Hmac))
            {
                return Err(KeyError::NotAKeyFile { algorithm });
            }
            Self::secret(&bytes, algorithms, allow_weak_secret)?
        } else {
            Self::from_pem(&bytes)?
        };
        for &algorithm in algorithms {
            key.check(algorithm)?;
        }
        Ok(key)
    }

    /// The kind of key.
    #[must_use]
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// Builds a verification key straight from a JWK (used for test vectors and JWK-based setups).
    pub fn from_jwk(jwk: &jsonwebtoken::jwk::Jwk) -> Result<Self, KeyError> {
        use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyOperations, PublicKeyUse};
        // RFC 7517 section 4.2/4.3: a key meant for encryption must not verify signatures.
        let for_signing = !matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) && jwk
            .common
            .key_operations
            .as_ref()
            .is_none_or(|ops| ops.contains(&KeyOperations::Verify));
        if !for_signing {
            return Err(KeyError::NotForSigning);
        }
        let key_type = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyType::Rsa,
            AlgorithmParameters::OctetKey(_) => KeyType::Hmac,
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => KeyType::P256,
                EllipticCurve::P384 => KeyType::P384,
                _ => {
                    return Err(KeyError::UnknownKeyType {
                        label: "JWK".into(),
                    });
                }
            },
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                KeyType::Ed25519
            }
            _ => {
                return Err(KeyError::UnknownKeyType {
                    label: "JWK".into(),
                });
            }
        };
        let decoding = DecodingKey::from_jwk(jwk).map_err(|e| KeyError::NotPem {
            detail: e.to_string(),
        })?;
        // As DER, an RSA key is checked (size, encoding) and verifies exactly as one from a PEM
        // file does; jsonwebtoken would keep the bare components.
        let decoding = match decoding.kind() {
            jsonwebtoken::DecodingKeyKind::RsaModulusExponent { n, e } => {
                DecodingKey::from_rsa_der(&rsa_public_key_der(n, e))
            }
            jsonwebtoken::DecodingKeyKind::SecretOrDer(_) => decoding,
        };
        Ok(Self { decoding, key_type })
    }

    fn secret(bytes: &[u8], algorithms: &[Algorithm], allow_weak: bool) -> Result<Self, KeyError> {
        if bytes.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        if !allow_weak {
            for &algorithm in algorithms {
                let needed = match algorithm {
                    Algorithm::HS256 => 32,
                    Algorithm::HS384 => 48,
                    _ => 64,
                };
                if bytes.len() < needed {
                    return Err(KeyError::WeakSecret {
                        len: bytes.len(),
                        algorithm,
                        needed,
                    });
                }
            }
        }
        Ok(Self {
            decoding: DecodingKey::from_secret(bytes),
            key_type: KeyType::Hmac,
        })
    }

    fn from_pem(bytes: &[u8]) -> Result<Self, KeyError> {
        let block = pem::parse(bytes).map_err(|e| KeyError::NotPem {
            detail: e.to_string(),
        })?;
        let label = block.tag().to_owned();
        let der = block.contents();
        let unknown = || KeyError::UnknownKeyType {
            label: label.clone(),
        };
        // Private keys: use only the public half. jsonwebtoken's PEM readers would take the
        // private key's octets for a public key and fail every verification silently.
        let (decoding, key_type) = match label.as_str() {
            "PRIVATE KEY" => {
                if let Ok(pair) = RsaKeyPair::from_pkcs8(der) {
                    (
                        DecodingKey::from_rsa_der(pair.public_key().as_ref()),
                        KeyType::Rsa,
                    )
                } else if let Ok(pair) = Ed25519KeyPair::from_pkcs8(der) {
                    (
                        DecodingKey::from_ed_der(pair.public_key().as_ref()),
                        KeyType::Ed25519,
                    )
                } else {
                    ec_private(der, EcdsaKeyPair::from_pkcs8).ok_or_else(unknown)?
                }
            }
            "RSA PRIVATE KEY" => {
                let pair = RsaKeyPair::from_der(der).map_err(|_| unknown())?;
                (
                    DecodingKey::from_rsa_der(pair.public_key().as_ref()),
                    KeyType::Rsa,
                )
            }
            "EC PRIVATE KEY" => {
                ec_private(der, EcdsaKeyPair::from_private_key_der).ok_or_else(unknown)?
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE" => {
                if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
                    (key, KeyType::Rsa)
                } else if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
                    (key, KeyType::Ed25519)
                } else if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
                    let key_type = match raw_key_bytes(&key).map(<[u8]>::len) {
                        Some(65) => KeyType::P256,
                        Some(97) => KeyType::P384,
                        _ => return Err(unknown()),
                    };
                    (key, key_type)
                } else {
                    return Err(unknown());
                }
            }
            _ => return Err(KeyError::UnsupportedPem { label }),
        };
        Ok(Self { decoding, key_type })
    }

    /// Binds the key to `algorithm`: the type must fit, and the key must parse for it.
    fn check(&self, algorithm: Algorithm) -> Result<(), KeyError> {
        let needed = KeyType::for_algorithm(algorithm)
            .ok_or(KeyError::UnsupportedAlgorithm { algorithm })?;
        if needed != self.key_type {
            return Err(KeyError::AlgorithmMismatch {
                key_type: self.key_type,
                algorithm,
                needed,
            });
        }
        let Some(verification) = lc_algorithm(algorithm) else {
            return Ok(());
        };
        let bytes = raw_key_bytes(&self.decoding).unwrap_or_default();
        if self.key_type == KeyType::Rsa {
            // aws-lc only refuses a short modulus at verification time, which would turn a
            // misconfiguration into a stream of `bad_signature` rejections.
            let bits = rsa_modulus_bits(bytes).unwrap_or(0);
            if !(2048..=8192).contains(&bits) {
                return Err(KeyError::Unusable {
                    key_type: self.key_type,
                    algorithm,
                    detail: format!("the modulus has {bits} bits; RSA keys must have 2048 to 8192"),
                });
            }
        }
        ParsedPublicKey::new(verification, bytes)
            .map(drop)
            .map_err(|e| KeyError::Unusable {
                key_type: self.key_type,
                algorithm,
                detail: match self.key_type {
                    KeyType::Rsa => format!("{e} (RSA keys must have 2048 to 8192 bits)"),
                    _ => e.to_string(),
                },
            })
    }
}

type EcFromDer = fn(
    &'static lc::EcdsaSigningAlgorithm,
    &[u8],
) -> Result<EcdsaKeyPair, aws_lc_rs::error::KeyRejected>;

fn ec_private(der: &[u8], parse: EcFromDer) -> Option<(DecodingKey, KeyType)> {
    [
        (&lc::ECDSA_P256_SHA256_FIXED_SIGNING, KeyType::P256),
        (&lc::ECDSA_P384_SHA384_FIXED_SIGNING, KeyType::P384),
    ]
    .into_iter()
    .find_map(|(alg, key_type)| {
        parse(alg, der).ok().map(|pair| {
            (
                DecodingKey::from_ec_der(pair.public_key().as_ref()),
                key_type,
            )
        })
    })
}

/// Modulus size of a DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    fn header(input: &[u8], tag: u8) -> Option<(usize, &[u8])> {
        let (&t, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        if t != tag {
            return None;
        }
        if first < 0x80 {
            return Some((usize::from(first), rest));
        }
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        Some((len, &rest[n..]))
    }
    let (_, body) = header(der, 0x30)?;
    let (len, rest) = header(body, 0x02)?;
    let modulus = rest.get(..len)?;
    let leading = modulus.iter().take_while(|b| **b == 0).count();
    let significant = &modulus[leading..];
    let first = significant.first()?;
    Some((significant.len() - 1) * 8 + (8 - first.leading_zeros() as usize))
}

/// DER of `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017
/// appendix A.1.1) from the big-endian components of a JWK.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn push_len(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
    }
    fn integer(value: &[u8]) -> Vec<u8> {
        let value = &value[value.iter().take_while(|b| **b == 0).count()..];
        // A positive INTEGER whose first bit is set needs a leading zero octet.
        let pad = value.first().is_none_or(|b| b & 0x80 != 0);
        let mut out = vec![0x02];
        push_len(&mut out, value.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(value);
        out
    }
    let body = [integer(n), integer(e)].concat();
    let mut out = vec![0x30];
    push_len(&mut out, body.len());
    out.extend(body);
    out
}

fn raw_key_bytes(key: &DecodingKey) -> Option<&[u8]> {
    match key.kind() {
        jsonwebtoken::DecodingKeyKind::SecretOrDer(bytes) => Some(bytes),
        jsonwebtoken::DecodingKeyKind::RsaModulusExponent { .. } => None,
    }
}

fn lc_algorithm(algorithm: Algorithm) -> Option<&'static dyn lc::VerificationAlgorithm> {
    Some(match algorithm {
        Algorithm::RS256 => &lc::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &lc::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &lc::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &lc::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &lc::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &lc::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &lc::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &lc::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &lc::ED25519,
        _ => return None,
    })
}
