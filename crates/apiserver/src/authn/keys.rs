//! Service-account token keys: reading them from PEM (PKCS#8, PKCS#1 and
//! SEC1 private keys; SPKI and PKCS#1 public keys; certificates), their key
//! ids as upstream computes them, and the ring-backed `CryptoProvider` that
//! `jsonwebtoken` signs and verifies with — ring is the only crypto backend
//! in the build.
//!
//! Algorithms: ES256 for P-256 keys (what the server generates), ES384 for
//! P-384 keys, RS256 for RSA keys (what kubeadm generates).

use base64::Engine;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, KeyPair, RsaKeyPair};

/// A key that verifies tokens.
pub(crate) struct PublicKey {
    pub alg: Algorithm,
    pub decoding: DecodingKey,
    /// Upstream's key id: base64url(SHA-256(DER SubjectPublicKeyInfo)).
    pub kid: String,
}

/// The key that signs tokens, and its public half.
pub(crate) struct SigningKey {
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub public: PublicKey,
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("no PEM block found")]
    Pem,
    #[error(
        "no usable private key found (expected PKCS#8, \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" for P-256, P-384 or RSA)"
    )]
    PrivateKey,
    #[error(
        "no usable public key found (expected RSA or ECDSA P-256/P-384 public keys, private keys or certificates)"
    )]
    PublicKey,
}

/// A kind of public key, with its raw bytes: the uncompressed point for
/// ECDSA, the DER RSAPublicKey for RSA.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    P256,
    P384,
    Rsa,
}

// DER object identifiers (tag and length included).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const DER_NULL: &[u8] = &[0x05, 0x00];

impl Kind {
    fn alg(self) -> Algorithm {
        match self {
            Kind::P256 => Algorithm::ES256,
            Kind::P384 => Algorithm::ES384,
            Kind::Rsa => Algorithm::RS256,
        }
    }

    fn signing(self) -> &'static sig::EcdsaSigningAlgorithm {
        match self {
            Kind::P384 => &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            _ => &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
        }
    }

    fn curve_oid(self) -> &'static [u8] {
        match self {
            Kind::P384 => OID_P384,
            _ => OID_P256,
        }
    }
}

impl PublicKey {
    fn new(kind: Kind, raw: &[u8]) -> PublicKey {
        let decoding = match kind {
            Kind::Rsa => DecodingKey::from_rsa_der(raw),
            Kind::P256 | Kind::P384 => DecodingKey::from_ec_der(raw),
        };
        PublicKey {
            alg: kind.alg(),
            decoding,
            kid: key_id(kind, raw),
        }
    }
}

/// The signing key in `pem` (the first usable private key).
pub(crate) fn signing_key(pem: &str) -> Result<SigningKey, KeyError> {
    let blocks = pem_blocks(pem);
    if blocks.is_empty() {
        return Err(KeyError::Pem);
    }
    blocks
        .iter()
        .find_map(|(label, der)| private_key(label, der))
        .ok_or(KeyError::PrivateKey)
}

/// Every public key in `pem`: public keys, certificates' keys and the public
/// halves of private keys.
pub(crate) fn public_keys(pem: &str) -> Result<Vec<PublicKey>, KeyError> {
    let blocks = pem_blocks(pem);
    if blocks.is_empty() {
        return Err(KeyError::Pem);
    }
    let mut keys = Vec::new();
    for (label, der) in &blocks {
        let found = match label.as_str() {
            "PUBLIC KEY" => spki(der),
            "RSA PUBLIC KEY" => Some((Kind::Rsa, der.clone())),
            "CERTIFICATE" => x509_parser::parse_x509_certificate(der)
                .ok()
                .and_then(|(_, cert)| spki(cert.tbs_certificate.subject_pki.raw)),
            _ => {
                if let Some(key) = private_key(label, der) {
                    keys.push(key.public);
                }
                None
            }
        };
        if let Some((kind, raw)) = found {
            keys.push(PublicKey::new(kind, &raw));
        }
    }
    if keys.is_empty() {
        return Err(KeyError::PublicKey);
    }
    Ok(keys)
}

/// A private key block: PKCS#8 ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE KEY") or
/// SEC1 ("EC PRIVATE KEY").
fn private_key(label: &str, der: &[u8]) -> Option<SigningKey> {
    let rng = SystemRandom::new();
    let ecdsa = |kind: Kind, pkcs8: Vec<u8>| {
        let pair = EcdsaKeyPair::from_pkcs8(kind.signing(), &pkcs8, &rng).ok()?;
        let public = PublicKey::new(kind, pair.public_key().as_ref());
        Some(SigningKey {
            alg: kind.alg(),
            encoding: EncodingKey::from_ec_der(&pkcs8),
            public,
        })
    };
    let rsa = |pair: RsaKeyPair, der: &[u8]| {
        let public = PublicKey::new(Kind::Rsa, pair.public().as_ref());
        Some(SigningKey {
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der),
            public,
        })
    };
    match label {
        "PRIVATE KEY" => ecdsa(Kind::P256, der.to_vec())
            .or_else(|| ecdsa(Kind::P384, der.to_vec()))
            .or_else(|| rsa(RsaKeyPair::from_pkcs8(der).ok()?, der)),
        "EC PRIVATE KEY" => [Kind::P256, Kind::P384]
            .into_iter()
            .find_map(|kind| ecdsa(kind, sec1_to_pkcs8(kind, der))),
        "RSA PRIVATE KEY" => rsa(RsaKeyPair::from_der(der).ok()?, der),
        _ => None,
    }
}

/// Reads a DER SubjectPublicKeyInfo.
fn spki(der: &[u8]) -> Option<(Kind, Vec<u8>)> {
    use x509_parser::prelude::FromDer;
    let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der).ok()?;
    let raw = info.subject_public_key.data.to_vec();
    match info.algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.1" => Some((Kind::Rsa, raw)),
        "1.2.840.10045.2.1" => {
            let curve = info.algorithm.parameters.as_ref()?.as_oid().ok()?;
            match curve.to_id_string().as_str() {
                "1.2.840.10045.3.1.7" => Some((Kind::P256, raw)),
                "1.3.132.0.34" => Some((Kind::P384, raw)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The DER SubjectPublicKeyInfo of a public key, as Go's
/// `x509.MarshalPKIXPublicKey` writes it.
fn spki_der(kind: Kind, raw: &[u8]) -> Vec<u8> {
    let algorithm = match kind {
        Kind::Rsa => der(0x30, &[OID_RSA, DER_NULL].concat()),
        Kind::P256 | Kind::P384 => der(0x30, &[OID_EC_PUBLIC_KEY, kind.curve_oid()].concat()),
    };
    let bits = der(0x03, &[&[0u8][..], raw].concat());
    der(0x30, &[algorithm, bits].concat())
}

/// Upstream's key id (`keyIDFromPublicKey`): the unpadded base64url SHA-256
/// of the DER SubjectPublicKeyInfo.
fn key_id(kind: Kind, raw: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, &spki_der(kind, raw));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// Wraps a SEC1 ECPrivateKey in a PKCS#8 PrivateKeyInfo for `kind`'s curve.
fn sec1_to_pkcs8(kind: Kind, sec1: &[u8]) -> Vec<u8> {
    let version = [0x02, 0x01, 0x00];
    let algorithm = der(0x30, &[OID_EC_PUBLIC_KEY, kind.curve_oid()].concat());
    let key = der(0x04, sec1);
    der(0x30, &[&version[..], &algorithm, &key].concat())
}

/// One DER element.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
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
    out.extend_from_slice(content);
    out
}

/// The PEM blocks of a file: (label, decoded DER). Encrypted blocks (with
/// headers) and undecodable ones are skipped.
fn pem_blocks(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String, bool)> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_owned(), String::new(), false));
        } else if line.starts_with("-----END ") {
            if let Some((label, body, headers)) = current.take()
                && !headers
                && let Ok(der) = base64::engine::general_purpose::STANDARD.decode(body)
            {
                blocks.push((label, der));
            }
        } else if let Some((_, body, headers)) = &mut current {
            if line.contains(':') {
                *headers = true;
            } else {
                body.push_str(line);
            }
        }
    }
    blocks
}

// ---------------------------------------------------------------------------
// The ring-backed CryptoProvider.

/// Installs the ring provider as jsonwebtoken's process default (once).
pub(crate) fn install_provider() {
    static PROVIDER: CryptoProvider = CryptoProvider {
        signer_factory: new_signer,
        verifier_factory: new_verifier,
        key_utils: KeyUtils::new_unimplemented(),
    };
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if PROVIDER.install_default().is_err() {
            tracing::warn!("a jsonwebtoken CryptoProvider was installed already; using it");
        }
    });
}

enum RingKey {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

struct RingSigner {
    alg: Algorithm,
    key: RingKey,
}

struct RingVerifier {
    alg: Algorithm,
    params: &'static dyn sig::VerificationAlgorithm,
    key: Vec<u8>,
}

fn new_signer(
    alg: &Algorithm,
    key: &EncodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    let rng = SystemRandom::new();
    let bytes = key.as_bytes();
    let key = match (alg, key.family()) {
        (Algorithm::ES256, AlgorithmFamily::Ec) => RingKey::Ecdsa(
            EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, bytes, &rng)
                .map_err(|_| ErrorKind::InvalidEcdsaKey)?,
        ),
        (Algorithm::ES384, AlgorithmFamily::Ec) => RingKey::Ecdsa(
            EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, bytes, &rng)
                .map_err(|_| ErrorKind::InvalidEcdsaKey)?,
        ),
        (Algorithm::RS256, AlgorithmFamily::Rsa) => RingKey::Rsa(
            RsaKeyPair::from_pkcs8(bytes)
                .or_else(|_| RsaKeyPair::from_der(bytes))
                .map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?,
        ),
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(Box::new(RingSigner { alg: *alg, key }))
}

fn new_verifier(
    alg: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    let params: &'static dyn sig::VerificationAlgorithm = match (alg, key.family()) {
        (Algorithm::ES256, AlgorithmFamily::Ec) => &sig::ECDSA_P256_SHA256_FIXED,
        (Algorithm::ES384, AlgorithmFamily::Ec) => &sig::ECDSA_P384_SHA384_FIXED,
        (Algorithm::RS256, AlgorithmFamily::Rsa) => &sig::RSA_PKCS1_2048_8192_SHA256,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(Box::new(RingVerifier {
        alg: *alg,
        params,
        key: key.try_get_as_bytes()?.to_vec(),
    }))
}

impl jsonwebtoken::signature::Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, jsonwebtoken::signature::Error> {
        let rng = SystemRandom::new();
        match &self.key {
            RingKey::Ecdsa(pair) => pair
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| jsonwebtoken::signature::Error::new()),
            RingKey::Rsa(pair) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(&sig::RSA_PKCS1_SHA256, &rng, msg, &mut out)
                    .map_err(|_| jsonwebtoken::signature::Error::new())?;
                Ok(out)
            }
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

impl jsonwebtoken::signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(
        &self,
        msg: &[u8],
        signature: &Vec<u8>,
    ) -> Result<(), jsonwebtoken::signature::Error> {
        sig::UnparsedPublicKey::new(self.params, &self.key)
            .verify(msg, signature)
            .map_err(|_| jsonwebtoken::signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl genrsa 2048 | openssl pkcs8 -topk8 -nocrypt` would do as
    /// well; rcgen cannot make RSA keys with ring, so the RSA case lives in
    /// the integration tests with a fixed key.
    fn p256_pem() -> String {
        rcgen::KeyPair::generate().unwrap().serialize_pem()
    }

    #[test]
    fn a_generated_key_signs_tokens_its_public_half_verifies() {
        install_provider();
        let pem = p256_pem();
        let key = signing_key(&pem).unwrap();
        assert_eq!(key.alg, Algorithm::ES256);
        let mut header = jsonwebtoken::Header::new(key.alg);
        header.kid = Some(key.public.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &serde_json::json!({"sub": "x"}), &key.encoding).unwrap();
        let publics = public_keys(&pem).unwrap();
        assert_eq!(publics.len(), 1);
        assert_eq!(publics[0].kid, key.public.kid);
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let data =
            jsonwebtoken::decode::<serde_json::Value>(&token, &publics[0].decoding, &validation)
                .unwrap();
        assert_eq!(data.claims["sub"], "x");
        let other = signing_key(&p256_pem()).unwrap();
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(&token, &other.public.decoding, &validation)
                .is_err()
        );
    }

    /// What checking one signature costs — why verified tokens are cached.
    /// `cargo test --release -p skiff-apiserver --lib -- --ignored
    /// --nocapture signature_checks`
    #[test]
    #[ignore = "a measurement"]
    fn signature_checks_cost_tens_of_microseconds() {
        install_provider();
        let key = signing_key(&p256_pem()).unwrap();
        let claims = serde_json::json!({"sub": "system:serviceaccount:default:default", "aud": ["a"], "exp": 1});
        let token =
            jsonwebtoken::encode(&jsonwebtoken::Header::new(key.alg), &claims, &key.encoding)
                .unwrap();
        let mut validation = jsonwebtoken::Validation::new(key.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let n = 2000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            jsonwebtoken::decode::<serde_json::Value>(&token, &key.public.decoding, &validation)
                .unwrap();
        }
        let verify = start.elapsed() / n;
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(ring::digest::digest(
                &ring::digest::SHA256,
                token.as_bytes(),
            ));
        }
        let hash = start.elapsed() / n;
        println!(
            "ES256 decode and verify: {verify:?}; SHA-256 of the token (the cache key): {hash:?}"
        );
    }

    #[test]
    fn the_key_id_is_the_hash_of_the_public_key_info() {
        let pair = rcgen::KeyPair::generate().unwrap();
        let from_private = signing_key(&pair.serialize_pem()).unwrap();
        let from_public = public_keys(&pair.public_key_pem()).unwrap();
        // The SubjectPublicKeyInfo we build is byte for byte rcgen's.
        assert_eq!(
            spki_der(Kind::P256, pair.public_key_raw()),
            rcgen::PublicKeyData::subject_public_key_info(&pair)
        );
        assert_eq!(from_private.public.kid, from_public[0].kid);
    }

    #[test]
    fn a_sec1_key_is_read_as_pkcs8() {
        // The SEC1 ECPrivateKey inside a PKCS#8 key ring generated.
        let pair = rcgen::KeyPair::generate().unwrap();
        let pkcs8 = pair.serialize_der();
        let key = signing_key(&pair.serialize_pem()).unwrap();
        // PKCS#8: SEQ { INTEGER 0, SEQ { .. }, OCTET STRING { sec1 } }.
        let sec1 = last_octet_string(&pkcs8);
        let pem = format!(
            "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(sec1)
        );
        let again = signing_key(&pem).unwrap();
        assert_eq!(again.public.kid, key.public.kid);
    }

    #[test]
    fn files_without_keys_are_refused() {
        assert!(matches!(signing_key("nothing"), Err(KeyError::Pem)));
        let cert_only = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(signing_key(cert_only), Err(KeyError::PrivateKey)));
        assert!(matches!(public_keys(cert_only), Err(KeyError::PublicKey)));
    }

    /// The content of the outer SEQUENCE's last element (an OCTET STRING).
    fn last_octet_string(der: &[u8]) -> Vec<u8> {
        fn header(d: &[u8]) -> (usize, usize) {
            if d[1] < 0x80 {
                (2, d[1] as usize)
            } else {
                let n = (d[1] & 0x7f) as usize;
                let len = d[2..2 + n]
                    .iter()
                    .fold(0usize, |acc, b| acc << 8 | *b as usize);
                (2 + n, len)
            }
        }
        let (h, _) = header(der);
        let mut rest = &der[h..];
        let mut last = Vec::new();
        while !rest.is_empty() {
            let (h, len) = header(rest);
            if rest[0] == 0x04 {
                last = rest[h..h + len].to_vec();
            }
            rest = &rest[h + len..];
        }
        last
    }
}
