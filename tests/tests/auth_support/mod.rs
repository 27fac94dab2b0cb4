//! Shared by the authentication tests: requests with chosen credentials,
//! challenge parsing, Digest responses computed from the RFCs (independently
//! of the edge's own code), and a look at the stored subscription records.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use bytes::Bytes;
use cluster_tests::ua::{pidf, Ua};
use md5::Md5;
use presence::SubscriptionRecord;
use sha2::{Digest, Sha256, Sha512_256};
use sip::{Authorization, Challenge, Event, HeaderName, Method, NameAddr, Response, Uri};
use store::{Key, Kind};

/// The `Event: presence` header.
pub fn presence_event() -> Event {
    Event {
        package: "presence".into(),
        id: None,
        params: Vec::new(),
    }
}

/// Extra header lines for a request: (name, value).
pub type Extra = Vec<(HeaderName, String)>;

fn with_extra(mut builder: sip::RequestBuilder, extra: &Extra) -> sip::RequestBuilder {
    for (name, value) in extra {
        builder = builder.header(name.clone(), value);
    }
    builder
}

/// The request line URI of a REGISTER for `aor`: its domain.
pub fn register_uri(aor: &str) -> String {
    format!("sip:{}", aor.split('@').nth(1).unwrap_or("example.com"))
}

/// REGISTER of the UA's contact for `to` (the AOR), with `extra` headers.
pub async fn register(ua: &mut Ua, to: &str, extra: Extra) -> Response {
    let domain = to.split('@').nth(1).unwrap_or("example.com").to_string();
    let builder = ua
        .request(Method::Register, &domain, to)
        .header(HeaderName::Expires, 600);
    let request = with_extra(builder, &extra).build();
    ua.call(request).await
}

/// An initial PUBLISH of an open status for `presentity`.
pub async fn publish(ua: &mut Ua, presentity: &str, extra: Extra) -> Response {
    let body = pidf(presentity, "open", "authenticated");
    let builder = ua
        .request(Method::Publish, presentity, presentity)
        .header(HeaderName::Event, presence_event())
        .header(HeaderName::Expires, 600)
        .body("application/pidf+xml", Bytes::from(body));
    let request = with_extra(builder, &extra).build();
    ua.call(request).await
}

/// A SUBSCRIBE to `presentity`'s presence (From is the UA's own AOR).
pub async fn subscribe(ua: &mut Ua, presentity: &str, extra: Extra) -> Response {
    let builder = ua
        .request(Method::Subscribe, presentity, presentity)
        .header(HeaderName::Event, presence_event())
        .header(HeaderName::Accept, "application/pidf+xml")
        .header(HeaderName::Expires, 600);
    let request = with_extra(builder, &extra).build();
    ua.call(request).await
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> Extra {
    vec![(HeaderName::Authorization, format!("Bearer {token}"))]
}

/// Every WWW-Authenticate value, in order.
pub fn www_authenticate(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all(HeaderName::WwwAuthenticate)
        .map(str::to_owned)
        .collect()
}

/// The Digest challenges of a response, in order.
pub fn digest_challenges(response: &Response) -> Vec<DigestChallenge> {
    www_authenticate(response)
        .iter()
        .filter_map(|value| match value.parse::<Challenge>() {
            Ok(Challenge::Digest {
                realm,
                nonce,
                opaque,
                algorithm,
                qop,
                stale,
            }) => Some(DigestChallenge {
                realm,
                nonce,
                opaque,
                algorithm: algorithm.unwrap_or_else(|| "MD5".into()),
                qop,
                stale,
            }),
            _ => None,
        })
        .collect()
}

/// One parsed `WWW-Authenticate: Digest` challenge.
#[derive(Clone, Debug)]
pub struct DigestChallenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: String,
    pub qop: Option<String>,
    pub stale: bool,
}

/// `H(data)` in lower-case hex for an RFC 2617 / RFC 8760 algorithm name.
pub fn digest_hash(algorithm: &str, data: &str) -> String {
    match algorithm.to_ascii_uppercase().as_str() {
        "MD5" => hex::encode(Md5::digest(data.as_bytes())),
        "SHA-256" => hex::encode(Sha256::digest(data.as_bytes())),
        "SHA-512-256" => hex::encode(Sha512_256::digest(data.as_bytes())),
        other => panic!("no such Digest algorithm in these tests: {other}"),
    }
}

/// `HA1 = H(user ":" realm ":" password)` (RFC 2617 §3.2.2.2).
pub fn ha1(algorithm: &str, user: &str, realm: &str, password: &str) -> String {
    digest_hash(algorithm, &format!("{user}:{realm}:{password}"))
}

/// What a phone sends back for `challenge` (RFC 2617 §3.2.2 with
/// `qop=auth`): `response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":"
/// H(method ":" uri))`.
pub struct DigestAnswer<'a> {
    pub challenge: &'a DigestChallenge,
    pub user: &'a str,
    pub password: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    pub nc: u32,
}

impl DigestAnswer<'_> {
    pub fn authorization(&self) -> Authorization {
        let c = self.challenge;
        let nc = format!("{:08x}", self.nc);
        let cnonce = hex::encode(rand::random::<[u8; 8]>());
        let ha1 = ha1(&c.algorithm, self.user, &c.realm, self.password);
        let ha2 = digest_hash(&c.algorithm, &format!("{}:{}", self.method, self.uri));
        let response = digest_hash(
            &c.algorithm,
            &format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", c.nonce),
        );
        let mut params = vec![
            ("username".to_owned(), self.user.to_owned()),
            ("realm".to_owned(), c.realm.clone()),
            ("nonce".to_owned(), c.nonce.clone()),
            ("uri".to_owned(), self.uri.to_owned()),
            ("response".to_owned(), response),
            ("algorithm".to_owned(), c.algorithm.clone()),
            ("cnonce".to_owned(), cnonce),
            ("qop".to_owned(), "auth".to_owned()),
            ("nc".to_owned(), nc),
        ];
        if let Some(opaque) = &c.opaque {
            params.push(("opaque".to_owned(), opaque.clone()));
        }
        Authorization::Digest(params)
    }

    /// The answer as an extra header line.
    pub fn extra(&self) -> Extra {
        vec![(HeaderName::Authorization, self.authorization().to_string())]
    }
}

/// `P-Asserted-Identity: <sip:aor>`.
pub fn asserted(aor: &str) -> Extra {
    let identity = NameAddr {
        display_name: None,
        uri: Uri::parse(&format!("sip:{aor}")).expect("asserted URI"),
        params: Vec::new(),
    };
    vec![(HeaderName::PAssertedIdentity, identity.to_string())]
}

/// The stored subscriptions of `presentity`: (watcher identity, From URI
/// of the SUBSCRIBE).
pub async fn stored_subscriptions(redis_url: &str, presentity: &str) -> Vec<(String, String)> {
    let backend = store::open(redis_url).await.expect("opening Redis");
    let records = backend
        .map_list(&Key::new(Kind::Subscriptions, presentity))
        .await
        .expect("reading subscriptions");
    records
        .iter()
        .map(|(dialog_id, raw)| {
            let record = SubscriptionRecord::decode(presentity, dialog_id, raw)
                .expect("a subscription record");
            (record.dialog.watcher, record.dialog.remote_uri)
        })
        .collect()
}
