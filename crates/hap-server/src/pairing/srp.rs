//! SRP-6a for pair-setup with HomeKitADK's exact byte rules (protocol-notes §1.5, appendix A).
//!
//! The modular arithmetic (v, A, B, S) comes from the `srp` crate; the hashes are computed here
//! because the crate's defaults differ from the ADK where it matters:
//! * `srp::Client` builds M1 with `H(PAD(g))`; the ADK hashes g as the single byte `05`.
//! * both sides build M2 from A as received/stripped; the ADK uses `PAD(A)`.
//! * the crate takes A and B as given; the ADK strips leading zero bytes for M1 and pads them
//!   (to 384 bytes) for u.
//!
//! So: u = H(PAD(A) ‖ PAD(B)), K = H(STRIP(S)),
//! M1 = H((H(N) xor H(05)) ‖ H(I) ‖ salt ‖ STRIP(A) ‖ STRIP(B) ‖ K), M2 = H(PAD(A) ‖ M1 ‖ K).
//! These only differ from other conventions when A, B or S has a leading zero byte (≈1/256
//! each); the appendix-A test vector pins them. Controllers disagree on those edge cases
//! (aiohomekit and fast-srp hash PAD(A) in M1 and K = H(PAD(S))), so the accessory side
//! * picks b so that B has no leading zero byte (then STRIP(B) = PAD(B) and u and M1 are the
//!   same under every convention), and
//! * accepts M1 computed with STRIP(A) or PAD(A), and with K = H(STRIP(S)) or H(PAD(S)),
//!   trying the ADK form first; M2 and the later keys use the K that matched.
//!
//! All candidates derive from the same S, so this does not help a guesser: a wrong setup code
//! matches none of them.

use std::sync::OnceLock;

use sha2::{Digest, Sha512};
use srp::Group;
use srp::bigint::BoxedUint;
use srp::groups::G3072;

type SrpClient = srp::Client<G3072, Sha512>;
type SrpServer = srp::Server<G3072, Sha512>;

/// SRP username for HAP pair-setup.
pub(crate) const USERNAME: &[u8] = b"Pair-Setup";
/// Byte length of N (3072 bits) and of PAD(x).
pub(crate) const N_BYTES: usize = 384;
/// SHA-512 output length: K, M1, M2.
pub(crate) const HASH_BYTES: usize = 64;

struct Constants {
    n: [u8; N_BYTES],
    /// H(N) xor H(g), g hashed as its one stripped byte.
    hn_xor_hg: [u8; HASH_BYTES],
    /// k = H(N ‖ PAD(g)).
    k: BoxedUint,
}

fn constants() -> &'static Constants {
    static C: OnceLock<Constants> = OnceLock::new();
    C.get_or_init(|| {
        let g = G3072::generator();
        let mut n = [0u8; N_BYTES];
        pad_into(&g.params().modulus().to_be_bytes(), &mut n);
        let g_bytes = g.retrieve().to_be_bytes_trimmed_vartime();
        let mut g_pad = [0u8; N_BYTES];
        pad_into(&g_bytes, &mut g_pad);
        let hn = Sha512::digest(n);
        let hg = Sha512::digest(&g_bytes);
        let mut hn_xor_hg = [0u8; HASH_BYTES];
        for ((dst, a), b) in hn_xor_hg.iter_mut().zip(hn).zip(hg) {
            *dst = a ^ b;
        }
        let k = Sha512::new().chain_update(n).chain_update(g_pad).finalize();
        Constants {
            n,
            hn_xor_hg,
            k: BoxedUint::from_be_slice_vartime(&k),
        }
    })
}

/// Why an SRP public value or proof was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SrpError {
    /// A or B is empty, longer than 384 bytes, or ≡ 0 mod N.
    BadPublicKey,
    /// The peer's proof does not match (wrong setup code).
    BadProof,
}

/// Big-endian bytes without leading zeros.
pub(crate) fn strip(x: &[u8]) -> &[u8] {
    let first = x.iter().position(|&b| b != 0).unwrap_or(x.len());
    x.get(first..).unwrap_or_default()
}

/// Right-aligns `x` (≤ 384 bytes, already checked) into `out`.
fn pad_into(x: &[u8], out: &mut [u8; N_BYTES]) {
    let x = strip(x);
    let start = N_BYTES.saturating_sub(x.len());
    for (dst, src) in out.iter_mut().skip(start).zip(x) {
        *dst = *src;
    }
}

/// Checks a peer's public value and returns it padded: 1..=384 bytes, and not 0 or N (the
/// only multiples of N below 2^3072, since N > 2^3071).
fn check_public(x: &[u8]) -> Result<[u8; N_BYTES], SrpError> {
    let x = strip(x);
    if x.is_empty() || x.len() > N_BYTES {
        return Err(SrpError::BadPublicKey);
    }
    let mut padded = [0u8; N_BYTES];
    pad_into(x, &mut padded);
    if padded == constants().n {
        return Err(SrpError::BadPublicKey);
    }
    Ok(padded)
}

fn compute_u(a_pad: &[u8; N_BYTES], b_pad: &[u8; N_BYTES]) -> BoxedUint {
    let u = Sha512::new()
        .chain_update(a_pad)
        .chain_update(b_pad)
        .finalize();
    BoxedUint::from_be_slice_vartime(&u)
}

/// M1 over A and B exactly as given (callers choose STRIP or PAD).
fn compute_m1(salt: &[u8], a: &[u8], b: &[u8], k: &[u8; HASH_BYTES]) -> [u8; HASH_BYTES] {
    Sha512::new()
        .chain_update(constants().hn_xor_hg)
        .chain_update(Sha512::digest(USERNAME))
        .chain_update(salt)
        .chain_update(a)
        .chain_update(b)
        .chain_update(k)
        .finalize()
        .into()
}

fn compute_m2(
    a_pad: &[u8; N_BYTES],
    m1: &[u8; HASH_BYTES],
    k: &[u8; HASH_BYTES],
) -> [u8; HASH_BYTES] {
    Sha512::new()
        .chain_update(a_pad)
        .chain_update(m1)
        .chain_update(k)
        .finalize()
        .into()
}

/// Constant-time equality for proofs.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Accessory side of one SRP exchange (pair-setup M2 → M4).
pub(crate) struct Server {
    salt: [u8; 16],
    b: [u8; 32],
    v: Vec<u8>,
    /// B, stripped, as sent in M2 (ADK sends it stripped).
    b_pub: Vec<u8>,
}

impl Server {
    /// Starts an exchange for `password` (the setup code with dashes) with the given salt,
    /// drawing the secret ephemeral b from `next_b` until B has no leading zero byte (about
    /// one draw in 256 is redrawn; after 64 draws the last one is kept).
    pub(crate) fn new(
        password: &[u8],
        salt: [u8; 16],
        mut next_b: impl FnMut() -> [u8; 32],
    ) -> Self {
        let v = SrpClient::new().compute_verifier(USERNAME, password, &salt);
        let server = SrpServer::new();
        let mut b = next_b();
        let mut b_pub = server.compute_public_ephemeral(&b, &v);
        for _ in 1..64 {
            if b_pub.len() == N_BYTES {
                break;
            }
            b = next_b();
            b_pub = server.compute_public_ephemeral(&b, &v);
        }
        Self { salt, b, v, b_pub }
    }

    pub(crate) fn salt(&self) -> &[u8; 16] {
        &self.salt
    }

    /// B for M2.
    pub(crate) fn public_key(&self) -> &[u8] {
        &self.b_pub
    }

    /// Checks the controller's A and proof M1; on success returns (K, M2).
    pub(crate) fn verify(
        &self,
        a_pub: &[u8],
        m1: &[u8],
    ) -> Result<([u8; HASH_BYTES], [u8; HASH_BYTES]), SrpError> {
        let a_pad = check_public(a_pub)?;
        let mut b_pad = [0u8; N_BYTES];
        pad_into(&self.b_pub, &mut b_pad);
        let u = compute_u(&a_pad, &b_pad);
        let s = SrpServer::new().compute_premaster_secret(
            &BoxedUint::from_be_slice_vartime(&a_pad),
            &BoxedUint::from_be_slice_vartime(&self.v),
            &u,
            &BoxedUint::from_be_slice_vartime(&self.b),
        );
        let s_strip = s.to_be_bytes_trimmed_vartime();
        let mut s_pad = [0u8; N_BYTES];
        pad_into(&s_strip, &mut s_pad);
        let k_strip: [u8; HASH_BYTES] = Sha512::digest(&s_strip).into();
        let a_strip = strip(&a_pad);
        let mut keys = vec![k_strip];
        if s_strip.len() < N_BYTES {
            keys.push(Sha512::digest(s_pad).into());
        }
        let mut a_forms = vec![a_strip];
        if a_strip.len() < N_BYTES {
            a_forms.push(a_pad.as_slice());
        }
        // ADK form first: STRIP(A) with H(STRIP(S)).
        for k in &keys {
            for a in &a_forms {
                let expected = compute_m1(&self.salt, a, strip(&self.b_pub), k);
                if ct_eq(&expected, m1) {
                    return Ok((*k, compute_m2(&a_pad, &expected, k)));
                }
            }
        }
        Err(SrpError::BadProof)
    }

    #[cfg(test)]
    pub(crate) fn verifier(&self) -> &[u8] {
        &self.v
    }
}

/// Controller side of one SRP exchange (pair-setup M2 → M3, checks M4).
pub(crate) struct ClientProof {
    /// A, stripped.
    pub(crate) a_pub: Vec<u8>,
    pub(crate) m1: [u8; HASH_BYTES],
    pub(crate) m2: [u8; HASH_BYTES],
    pub(crate) k: [u8; HASH_BYTES],
}

/// The controller's view after M2: A (stripped and padded), PAD(B) and S (stripped).
struct ClientSecret {
    a_pub: Vec<u8>,
    a_pad: [u8; N_BYTES],
    b_pad: [u8; N_BYTES],
    s: Box<[u8]>,
}

fn client_secret(
    password: &[u8],
    salt: &[u8],
    b_pub: &[u8],
    a: &[u8; 32],
) -> Result<ClientSecret, SrpError> {
    let b_pad = check_public(b_pub)?;
    let client = SrpClient::new();
    let a_pub = client.compute_public_ephemeral(a);
    let mut a_pad = [0u8; N_BYTES];
    pad_into(&a_pub, &mut a_pad);
    let u = compute_u(&a_pad, &b_pad);
    let x = SrpClient::compute_x(&SrpClient::compute_identity_hash(USERNAME, password), salt);
    let s = client.compute_premaster_secret(
        &BoxedUint::from_be_slice_vartime(&b_pad),
        &constants().k,
        &x,
        &BoxedUint::from_be_slice_vartime(a),
        &u,
    );
    Ok(ClientSecret {
        a_pub,
        a_pad,
        b_pad,
        s: s.to_be_bytes_trimmed_vartime(),
    })
}

/// Computes A, M1, the expected M2 and K for the accessory's salt and B (ADK conventions).
pub(crate) fn client_proof(
    password: &[u8],
    salt: &[u8],
    b_pub: &[u8],
    a: &[u8; 32],
) -> Result<ClientProof, SrpError> {
    let c = client_secret(password, salt, b_pub, a)?;
    let k: [u8; HASH_BYTES] = Sha512::digest(&c.s).into();
    let m1 = compute_m1(salt, strip(&c.a_pub), strip(&c.b_pad), &k);
    let m2 = compute_m2(&c.a_pad, &m1, &k);
    Ok(ClientProof {
        a_pub: c.a_pub,
        m1,
        m2,
        k,
    })
}

/// Constant-time comparison of a received proof.
pub(crate) fn proof_matches(expected: &[u8; HASH_BYTES], got: &[u8]) -> bool {
    ct_eq(expected, got)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    //! HomeKitADK `Tests/HAPCryptoTest.c` SRP vector (protocol-notes appendix A): user
    //! `alice`, password `password123`. Our helpers hard-code the HAP username, so the vector
    //! is replayed through the same building blocks with `alice`.
    use super::*;

    const SALT: &str = "beb25379d1a8581eb5a727673a2441ee";
    const B_SECRET: &str = "e487cb59d31ac550471e81f00f6928e01dda08e974a004f49e61f5d105284d20";
    const V: &str = "9b5e061701ea7aeb39cf6e3519655a853cf94c75caf2555ef1faf759bb79cb477014e04a88d68ffc05323891d4c205b8de81c2f203d8fad1b24d2c109737f1bebbd71f912447c4a03c26b9fad8edb3e780778e302529ed1ee138ccfc36d4ba313cc48b14ea8c22a0186b222e655f2df5603fd75df76b3b08ff8950069add03a754ee4ae88587cce1bfde36794dbae4592b7b904f442b041cb17aebad1e3aebe3cbe99de65f4bb1fa00b0e7af06863db53b02254ec66e781e3b62a8212c86beb0d50b5ba6d0b478d8c4e9bbcec21765326fbd14058d2bbde2c33045f03873e53948d78b794f0790e48c36aed6e880f557427b2fc06db5e1e2e1d7e661ac482d18e528d7295ef7437295ff1a72d402771713f16876dd050ae5b7ad53ccb90855c93956648358adfd966422f52498732d68d1d7fbef10d78034ab8dcb6f0fcf885cc2b2ea2c3e6ac86609ea058a9da8cc63531dc915414df568b09482ddac1954dec7eb714f6ff7d44cd5b86f6bd115810930637c01d0f6013bc9740fa2c633ba89";
    const A_PUB: &str = "fab6f5d2615d1e323512e7991cc37443f487da604ca8c9230fcb04e541dce6280b27ca4680b0374f179dc3bdc7553fe62459798c701ad864a91390a28c93b644adbf9c00745b942b79f9012a21b9b78782319d83a1f8362866fbd6f46bfc0ddb2e1ab6e4b45a9906b82e37f05d6f97f6a3eb6e182079759c4f6847837b62321ac1b4fa68641fcb4bb98dd697a0c73641385f4bab25b793584cc39fc8d48d4bd867a9a3c10f8ea12170268e34fe3bbe6ff89998d60da2f3e4283cbec1393d52af724a57230c604e9fbce583d7613e6bffd67596ad121a8707eec46944957033686a155f644d5c5863b48f61bdbf19a53eab6dad0a186b8c152e5f5d8cad4b0ef8aa4ea5008834c3cd342e5e0f167ad04592cd8bd279639398ef9e114dfaaab919e14e850989224ddd98576d79385d2210902e9f9b1f2d86cfa47ee244635465f71058421a0184be51dd10cc9d079e6f1604e7aa9b7cf7883c7d4ce12b06ebe16081e23f27a231d18432d7d1bb55c28ae21ffcf005f57528d15a88881bb3bbb7fe";
    const B_PUB: &str = "40f57088a482d4c7733384fe0d301fddca9080ad7d4f6fdf09a01006c3cb6d562e41639ae8fa21de3b5dba7585b275589bdb279863c562807b2b99083cd1429cdbe89e25bfbd7e3cad3173b2e3c5a0b174da6d5391e6a06e465f037a4006254839a56bf76da84b1c94e0ae208576156fe5c140a4ba4ffc9e38c3b07b88845fc6f7ddda93381fe0ca6084c4cd2d336e5451c464ccb6ec65e7d16e548a273e826284af2559b6264274215960fff47bdd63d3aff064d6137af769661c9d4fee47382603c88eaa0980581d07758461b777e4356dda5835198b51feea308d70f75450b71675c08c7d8302fd7539dd1ff2a11cb4258aa70d234436aa42b6a0615f3f915d55cc3b966b2716b36e4d1a06ce5e5d2ea3bee5a1270e8751da45b60b997b0ffdb0f9962fee4f03bee780ba0a845b1d9271421783ae6601a61ea2e342e4f2e8bc935a409ead19f221bd1b74e2964dd19fc845f60efc09338b60b6b256d8cac889cca306cc370a0b18c8b886e95da0af5235fef4393020d2b7f3056904759042";
    const U: &str = "03ae5f3c3fa9eff1a50d7dbb8d2f60a1ea66ea712d50ae976ee34641a1cd0e51c4683da383e8595d6cb56a15d5fbc7543e07fbddd316217e01a391a18ef06dff";
    const S: &str = "f1036fecd017c8239c0d5af7e0fcf0d408b009e36411618a60b23aabbfc383397268231214baacdc94ca1c53f442fb51c1b027c318ae238e16414d60d1881b66486ade10ed02ba33d098f6ce9bcf1bb0c46ca2c47f2f174c59a9c61e2560899b83ef61131e6fb30b714f4e43b735c9fe6080477c1b83e4093e4d456b9bca492cf9339d45bc42e67ce6c02c243e49f5da42a869ec855780e84207b8a1ea6501c478aac0dfd3d22614f531a00d826b7954ae8b14a985a429315e6dd3664cf47181496a94329cde8005cae63c2f9ca4969bfe84001924037c446559bdbb9db9d4dd142fbcd75eef2e162c843065d99e8f05762c4db7abd9db203d41ac85a58c05bd4e2dbf822a934523d54e0653d376ce8b56dcb4527dddc1b994dc7509463a7468d7f02b1beb1685714ce1dd1e71808a137f788847b7c6b7bfa1364474b3b7e89478954f6a8e68d45b85a88e4ebfec13368ec0891c3bc86cf50097880178d86135e728723458538858d715b7b247406222c1019f53603f016952d497100858824c";
    const K: &str = "5cbc219db052138ee1148c71cd4498963d682549ce91ca24f098468f06015beb6af245c2093f98c3651bca83ab8cab2b580bbf02184fefdf26142f73df95ac50";
    const M1: &str = "5f7c14ab57ed0e94fd1d78c6b4dd09ed7e340b7e05d419a9fd760f6b35e523d1310777a1ae1d2826f596f3a85116cc457c7c964d4f44ded5559da818c88b617f";
    const M2: &str = "2fa0e81f5cb73b88fa0964270f321dd641f2227a5d805c40f1bfe96aaf6a19ffce8e23287965a39eab9d5a02215f89e128177ed2c4f103e655a045531bcbf7ad";

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn pad(x: &[u8]) -> [u8; N_BYTES] {
        let mut out = [0u8; N_BYTES];
        pad_into(x, &mut out);
        out
    }

    #[test]
    fn adk_srp_vector() {
        let (user, pass, salt) = (b"alice", b"password123", h(SALT));
        let v = SrpClient::new().compute_verifier(user, pass, &salt);
        assert_eq!(hex::encode(&v), V, "v");
        let b_pub = SrpServer::new().compute_public_ephemeral(&h(B_SECRET), &v);
        assert_eq!(hex::encode(&b_pub), B_PUB, "B");
        let (a_pad, b_pad) = (pad(&h(A_PUB)), pad(&b_pub));
        let u = compute_u(&a_pad, &b_pad);
        assert_eq!(hex::encode(u.to_be_bytes_trimmed_vartime()), U, "u");
        let s = SrpServer::new()
            .compute_premaster_secret(
                &BoxedUint::from_be_slice_vartime(&a_pad),
                &BoxedUint::from_be_slice_vartime(&v),
                &u,
                &BoxedUint::from_be_slice_vartime(&h(B_SECRET)),
            )
            .to_be_bytes_trimmed_vartime();
        assert_eq!(hex::encode(&s), S, "S");
        let k: [u8; 64] = Sha512::digest(&s).into();
        assert_eq!(hex::encode(k), K, "K");
        // M1 with user `alice` instead of our fixed `Pair-Setup`.
        let m1: [u8; 64] = Sha512::new()
            .chain_update(constants().hn_xor_hg)
            .chain_update(Sha512::digest(user))
            .chain_update(&salt)
            .chain_update(strip(&h(A_PUB)))
            .chain_update(strip(&b_pub))
            .chain_update(k)
            .finalize()
            .into();
        assert_eq!(hex::encode(m1), M1, "M1");
        assert_eq!(hex::encode(compute_m2(&a_pad, &m1, &k)), M2, "M2");

        // The crate's own server, with g hashed unpadded, agrees on K and M1 for this vector
        // (no leading zeros), and its M2 = H(A ‖ M1 ‖ K) agrees because A is 384 bytes long.
        let verifier = SrpServer::new_with_options(true)
            .process_reply(user, &salt, &h(B_SECRET), &v, &h(A_PUB))
            .unwrap();
        assert_eq!(hex::encode(verifier.verify_client(&m1).unwrap()), K);
        assert_eq!(hex::encode(verifier.proof()), M2);
    }

    #[test]
    fn crate_client_pads_g_in_m1_so_we_do_not_use_its_proof() {
        // Documents why client_proof computes M1 itself: srp::Client uses H(PAD(g)).
        let verifier = SrpServer::new_with_options(false)
            .process_reply(b"alice", &h(SALT), &h(B_SECRET), &h(V), &h(A_PUB))
            .unwrap();
        assert!(verifier.verify_client(&h(M1)).is_err());
    }

    #[test]
    fn server_and_client_agree_and_reject_wrong_code() {
        let server = Server::new(b"031-45-154", [3; 16], || [9; 32]);
        assert!(!server.verifier().is_empty());
        let proof =
            client_proof(b"031-45-154", server.salt(), server.public_key(), &[7; 32]).unwrap();
        let (k, m2) = server.verify(&proof.a_pub, &proof.m1).unwrap();
        assert_eq!(k, proof.k);
        assert_eq!(m2, proof.m2);

        let wrong =
            client_proof(b"031-45-155", server.salt(), server.public_key(), &[7; 32]).unwrap();
        assert_eq!(
            server.verify(&wrong.a_pub, &wrong.m1),
            Err(SrpError::BadProof)
        );
    }

    /// a values found offline (for salt [3; 16], b [9; 32], code 031-45-154) that make A,
    /// respectively S, start with a zero byte.
    const A_WITH_LEADING_ZERO: &str =
        "011a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
    const S_WITH_LEADING_ZERO: &str =
        "00675a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

    /// M1 as aiohomekit and fast-srp build it: over PAD(A), with K = H(PAD(S)).
    fn padded_convention(server: &Server, a: &[u8; 32]) -> (ClientSecret, [u8; 64], [u8; 64]) {
        let c = client_secret(b"031-45-154", server.salt(), server.public_key(), a).unwrap();
        let k: [u8; 64] = Sha512::digest(pad(&c.s)).into();
        let m1 = compute_m1(server.salt(), &c.a_pad, &c.b_pad, &k);
        (c, m1, k)
    }

    #[test]
    fn leading_zero_edge_cases_accept_both_conventions() {
        let server = Server::new(b"031-45-154", [3; 16], || [9; 32]);
        assert_eq!(
            server.public_key().len(),
            N_BYTES,
            "B must not need padding"
        );

        // A with a leading zero byte: PAD(A) in M1 (aiohomekit) and STRIP(A) (ADK) both work.
        let a: [u8; 32] = h(A_WITH_LEADING_ZERO).try_into().unwrap();
        let (c, m1, k) = padded_convention(&server, &a);
        assert_eq!(c.a_pad[0], 0, "precondition: A starts with a zero byte");
        assert_eq!(c.s.len(), N_BYTES, "precondition: S does not");
        assert_eq!(k[..], Sha512::digest(&c.s)[..], "no S ambiguity here");
        let (k_srv, m2) = server.verify(&c.a_pad, &m1).unwrap();
        assert_eq!(k_srv, k);
        assert_eq!(m2, compute_m2(&c.a_pad, &m1, &k));
        let adk = client_proof(b"031-45-154", server.salt(), server.public_key(), &a).unwrap();
        assert_ne!(adk.m1, m1, "the two conventions really differ for this A");
        assert_eq!(server.verify(&adk.a_pub, &adk.m1).unwrap().1, adk.m2);

        // S with a leading zero byte: K = H(PAD(S)) (aiohomekit) and H(STRIP(S)) (ADK).
        let a: [u8; 32] = h(S_WITH_LEADING_ZERO).try_into().unwrap();
        let (c, m1, k) = padded_convention(&server, &a);
        assert_eq!(
            c.s.len(),
            N_BYTES - 1,
            "precondition: S starts with a zero byte"
        );
        let (k_srv, m2) = server.verify(&c.a_pad, &m1).unwrap();
        assert_eq!(k_srv, k, "the padded K is the one used afterwards");
        assert_eq!(m2, compute_m2(&c.a_pad, &m1, &k));
        let adk = client_proof(b"031-45-154", server.salt(), server.public_key(), &a).unwrap();
        assert_ne!(adk.k, k);
        assert_eq!(server.verify(&adk.a_pub, &adk.m1), Ok((adk.k, adk.m2)));

        // A wrong code still fails under every convention.
        let wrong = client_secret(b"031-45-155", server.salt(), server.public_key(), &a).unwrap();
        let k: [u8; 64] = Sha512::digest(pad(&wrong.s)).into();
        let m1 = compute_m1(server.salt(), &wrong.a_pad, &wrong.b_pad, &k);
        assert_eq!(server.verify(&wrong.a_pad, &m1), Err(SrpError::BadProof));
    }

    #[test]
    fn b_with_a_leading_zero_is_redrawn() {
        // Found offline: for salt [3; 16] and this code, B starts with a zero byte.
        let short_b: [u8; 32] =
            h("0160333333333333333333333333333333333333333333333333333333333333")
                .try_into()
                .unwrap();
        let v = SrpClient::new().compute_verifier(USERNAME, b"031-45-154", &[3; 16]);
        assert!(
            SrpServer::new()
                .compute_public_ephemeral(&short_b, &v)
                .len()
                < N_BYTES
        );
        let mut draws = vec![[0x77; 32], short_b];
        let server = Server::new(b"031-45-154", [3; 16], || draws.pop().unwrap());
        assert_eq!(server.public_key().len(), N_BYTES);
        assert_eq!(server.b, [0x77; 32]);
    }

    #[test]
    fn rejects_degenerate_public_keys_without_panicking() {
        let server = Server::new(b"031-45-154", [3; 16], || [9; 32]);
        let n = constants().n;
        for a in [
            &[][..],
            &[0u8; 10][..],
            &n[..],
            &[1u8; 385][..],
            &[0xFF; 400][..],
        ] {
            assert_eq!(server.verify(a, &[0; 64]), Err(SrpError::BadPublicKey));
        }
        // N with a leading zero byte is still N.
        let mut n0 = vec![0u8];
        n0.extend_from_slice(&n);
        assert_eq!(server.verify(&n0, &[0; 64]), Err(SrpError::BadPublicKey));
        // A > N (but < 2^3072) is reduced, not a panic; the proof is just wrong.
        assert_eq!(
            server.verify(&[0xFF; 384], &[0; 64]),
            Err(SrpError::BadProof)
        );
        assert_eq!(server.verify(&[1], &[0; 64]), Err(SrpError::BadProof));
        assert!(client_proof(b"x", &[0; 16], &[], &[1; 32]).is_err());
        assert!(client_proof(b"x", &[0; 16], &n, &[1; 32]).is_err());
    }

    #[test]
    fn hkdf_vector() {
        // RFC 5869 test case 3-style vector from HomeKitADK HAPCryptoTest.c (L = 42).
        let ikm = [0x0b; 22];
        let salt = h("000102030405060708090a0b0c");
        let info = h("f0f1f2f3f4f5f6f7f8f9");
        let mut okm = [0u8; 42];
        hkdf::Hkdf::<Sha512>::new(Some(&salt), &ikm)
            .expand(&info, &mut okm)
            .unwrap();
        assert_eq!(
            hex::encode(okm),
            "832390086cda71fb47625bb5ceb168e4c8e26a1a16ed34d9fc7fe92c1481579338da362cb8d9f925d7cb"
        );
        // Our 32-byte helper is the prefix of the same expansion.
        assert_eq!(
            &super::super::crypto::hkdf_sha512_32(&ikm, &salt, &info)[..],
            &okm[..32]
        );
    }
}
