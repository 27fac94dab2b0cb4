//! The requests a [`Ua`] sends: requests in and out of a dialog, built with the `sip` crate's
//! builders, and the REGISTER, PUBLISH and SUBSCRIBE exchanges built on them.

use std::net::SocketAddr;

use bytes::Bytes;
use sip::{CSeq, Event, HeaderName, Method, NameAddr, Request, RequestBuilder, Response, Uri, Via};

use super::{token, Dialog, Ua};

impl Ua {
    fn transport(&self) -> &'static str {
        self.transport_name
    }

    /// Host of this UA's address as written in Via (IPv6 in brackets).
    fn local_host(&self) -> String {
        match self.local {
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
            SocketAddr::V4(a) => a.ip().to_string(),
        }
    }

    fn my_uri(&self) -> Uri {
        Uri::parse(&format!("sip:{}", self.aor)).expect("AOR URI")
    }

    fn contact(&self) -> NameAddr {
        let user = self.aor.split('@').next().unwrap_or("ua");
        let host = self.local.ip().to_string();
        // A sips: request carries a sips: Contact (RFC 3261 §8.1.1.8).
        let mut uri = if self.sips {
            Uri::sips(Some(user), &host, Some(self.local.port()))
        } else {
            Uri::sip(Some(user), &host, Some(self.local.port()))
        }
        .expect("contact URI");
        let transport = match self.transport() {
            "UDP" => None,
            "TLS" if self.sips => None,
            // RFC 7118 §5.2: `ws` for WebSocket, secure or not.
            "WS" | "WSS" => Some("ws"),
            other => Some(other),
        };
        if let Some(t) = transport {
            uri = uri
                .with_param("transport", Some(&t.to_ascii_lowercase()))
                .expect("contact URI");
        }
        NameAddr {
            display_name: None,
            uri,
            params: Vec::new(),
        }
    }

    fn via(&self) -> Via {
        Via {
            transport: self.transport().to_string(),
            host: self.local_host(),
            port: Some(self.local.port()),
            params: vec![
                ("branch".into(), Some(format!("z9hG4bK{}", token()))),
                ("rport".into(), None),
            ],
        }
    }

    /// A request out of any dialog, with fresh Call-ID and From tag.
    pub fn request(&mut self, method: Method, target: &str, to: &str) -> RequestBuilder {
        self.cseq += 1;
        let to_uri = Uri::parse(&format!("sip:{to}")).expect("To URI");
        let scheme = if self.sips { "sips" } else { "sip" };
        Request::builder(
            method.clone(),
            Uri::parse(&format!("{scheme}:{target}")).expect("request URI"),
        )
        .header(HeaderName::Via, self.via())
        .header(HeaderName::MaxForwards, 70)
        .header(
            HeaderName::From,
            NameAddr {
                display_name: None,
                uri: self.my_uri(),
                params: vec![("tag".into(), Some(token()))],
            },
        )
        .header(
            HeaderName::To,
            NameAddr {
                display_name: None,
                uri: to_uri,
                params: Vec::new(),
            },
        )
        .header(HeaderName::CallId, format!("{}@test", token()))
        .header(
            HeaderName::CSeq,
            CSeq {
                seq: self.cseq,
                method,
            },
        )
        .header(HeaderName::Contact, self.contact())
    }

    /// A request inside `dialog`.
    pub fn in_dialog(&mut self, dialog: &mut Dialog, method: Method) -> RequestBuilder {
        dialog.cseq += 1;
        Request::builder(
            method.clone(),
            Uri::parse(&dialog.target).expect("dialog target"),
        )
        .header(HeaderName::Via, self.via())
        .header(HeaderName::MaxForwards, 70)
        .header(
            HeaderName::From,
            NameAddr {
                display_name: None,
                uri: Uri::parse(&dialog.local_uri).expect("local URI"),
                params: vec![("tag".into(), Some(dialog.local_tag.clone()))],
            },
        )
        .header(
            HeaderName::To,
            NameAddr {
                display_name: None,
                uri: Uri::parse(&dialog.remote_uri).expect("remote URI"),
                params: vec![("tag".into(), Some(dialog.remote_tag.clone()))],
            },
        )
        .header(HeaderName::CallId, &dialog.call_id)
        .header(
            HeaderName::CSeq,
            CSeq {
                seq: dialog.cseq,
                method,
            },
        )
        .header(HeaderName::Contact, self.contact())
    }

    /// REGISTER this UA's contact with `token` (or none).
    pub async fn register(&mut self, token: Option<&str>, expires: u32) -> Response {
        let aor = self.aor.clone();
        let domain = aor.split('@').nth(1).unwrap_or("example.com").to_string();
        let mut builder = self
            .request(Method::Register, &domain, &aor)
            .header(HeaderName::Expires, expires);
        if let Some(t) = token {
            builder = builder.header(HeaderName::Authorization, format!("Bearer {t}"));
        }
        self.call(builder.build()).await
    }

    /// PUBLISH presence for this UA's AOR.
    pub async fn publish(
        &mut self,
        token: &str,
        if_match: Option<&str>,
        body: Option<&str>,
        expires: u32,
    ) -> Response {
        let aor = self.aor.clone();
        let mut builder = self
            .request(Method::Publish, &aor, &aor)
            .header(
                HeaderName::Event,
                Event {
                    package: "presence".into(),
                    id: None,
                    params: Vec::new(),
                },
            )
            .header(HeaderName::Expires, expires)
            .header(HeaderName::Authorization, format!("Bearer {token}"));
        if let Some(tag) = if_match {
            builder = builder.header(HeaderName::SipIfMatch, tag);
        }
        if let Some(b) = body {
            builder = builder.body("application/pidf+xml", Bytes::copy_from_slice(b.as_bytes()));
        }
        self.call(builder.build()).await
    }

    /// SUBSCRIBE to `target`'s presence; returns the response and, on 2xx, the dialog.
    pub async fn subscribe(
        &mut self,
        target: &str,
        token: &str,
        expires: u32,
    ) -> (Response, Option<Dialog>) {
        self.subscribe_to(target, token, expires, "presence", "application/pidf+xml")
            .await
    }

    /// SUBSCRIBE to `target`'s watcher information (RFC 3857).
    pub async fn subscribe_winfo(
        &mut self,
        target: &str,
        token: &str,
        expires: u32,
    ) -> (Response, Option<Dialog>) {
        self.subscribe_to(
            target,
            token,
            expires,
            "presence.winfo",
            "application/watcherinfo+xml",
        )
        .await
    }

    /// SUBSCRIBE to `package` of `target`, accepting `accept`.
    pub async fn subscribe_to(
        &mut self,
        target: &str,
        token: &str,
        expires: u32,
        package: &str,
        accept: &str,
    ) -> (Response, Option<Dialog>) {
        let request = self
            .request(Method::Subscribe, target, target)
            .header(
                HeaderName::Event,
                Event {
                    package: package.into(),
                    id: None,
                    params: Vec::new(),
                },
            )
            .header(HeaderName::Accept, accept)
            .header(HeaderName::Expires, expires)
            .header(HeaderName::Authorization, format!("Bearer {token}"))
            .build();
        let response = self.call(request.clone()).await;
        if !(200..300).contains(&response.status()) {
            return (response, None);
        }
        let headers = request.headers();
        let to = response.headers().to().expect("To in 200 OK");
        let target_uri = match response.headers().contacts() {
            Ok(sip::Contacts::List(list)) if !list.is_empty() => list[0].name_addr.uri.to_string(),
            _ => panic!("200 OK to SUBSCRIBE without Contact"),
        };
        let dialog = Dialog {
            call_id: headers.call_id().expect("Call-ID").to_string(),
            local_tag: headers
                .from()
                .expect("From")
                .tag()
                .expect("From tag")
                .to_string(),
            remote_tag: to.tag().expect("To tag in 200 OK").to_string(),
            target: target_uri,
            local_uri: headers.from().expect("From").uri.to_string(),
            remote_uri: to.uri.to_string(),
            cseq: headers.cseq().expect("CSeq").seq,
        };
        (response, Some(dialog))
    }

    /// Refreshes (or with 0, ends) a subscription inside its dialog.
    pub async fn resubscribe(
        &mut self,
        dialog: &mut Dialog,
        token: &str,
        expires: u32,
    ) -> Response {
        self.resubscribe_to(dialog, token, expires, "presence")
            .await
    }

    /// Refreshes (or with 0, ends) a subscription to `package` inside its dialog.
    pub async fn resubscribe_to(
        &mut self,
        dialog: &mut Dialog,
        token: &str,
        expires: u32,
        package: &str,
    ) -> Response {
        let request = self
            .in_dialog(dialog, Method::Subscribe)
            .header(
                HeaderName::Event,
                Event {
                    package: package.into(),
                    id: None,
                    params: Vec::new(),
                },
            )
            .header(HeaderName::Expires, expires)
            .header(HeaderName::Authorization, format!("Bearer {token}"))
            .build();
        self.call(request).await
    }
}
