//! Building requests and responses. Every SIP message the workspace sends is built here, so
//! framing, escaping and Content-Length are right by construction.

use std::fmt;

use bytes::Bytes;

use crate::auth::{Authorization, Challenge};
use crate::cseq::CSeq;
use crate::event::Event;
use crate::header_name::HeaderName;
use crate::headers::Headers;
use crate::message::{Request, Response};
use crate::method::Method;
use crate::name_addr::{Contact, Contacts, NameAddr};
use crate::status::reason_phrase;
use crate::subscription_state::SubscriptionState;
use crate::uri::Uri;
use crate::via::Via;

/// A typed header value that knows which header it belongs to.
pub trait TypedHeader: fmt::Display {
    /// The header this value is written under.
    fn name(&self) -> HeaderName;
}

macro_rules! typed_header {
    ($($ty:ty => $name:ident),* $(,)?) => {
        $(impl TypedHeader for $ty {
            fn name(&self) -> HeaderName {
                HeaderName::$name
            }
        })*
    };
}

typed_header! {
    Via => Via,
    CSeq => CSeq,
    Event => Event,
    SubscriptionState => SubscriptionState,
    Contact => Contact,
    Contacts => Contact,
    Authorization => Authorization,
}

impl TypedHeader for Challenge {
    /// Challenges go in WWW-Authenticate; use `header(HeaderName::ProxyAuthenticate, ..)` for
    /// proxy challenges.
    fn name(&self) -> HeaderName {
        HeaderName::WwwAuthenticate
    }
}

/// Builds a [`Request`]; start with [`Request::builder`].
#[derive(Debug)]
pub struct RequestBuilder {
    request: Request,
}

/// Builds a [`Response`]; start with [`Response::for_request`] or [`Response::builder`].
#[derive(Debug)]
pub struct ResponseBuilder {
    response: Response,
}

impl Request {
    /// Starts a request with the given method and Request-URI and no headers.
    pub fn builder(method: Method, uri: Uri) -> RequestBuilder {
        RequestBuilder {
            request: Request {
                method,
                uri,
                headers: Headers::default(),
                body: Bytes::new(),
            },
        }
    }
}

impl RequestBuilder {
    /// Appends a header line (CR/LF in the value are replaced, so values cannot inject lines).
    pub fn header(mut self, name: HeaderName, value: impl fmt::Display) -> Self {
        self.request.headers.push_display(&name, &value);
        self
    }

    /// Appends a typed header under its own name.
    pub fn typed(self, value: impl TypedHeader) -> Self {
        let name = value.name();
        self.header(name, value)
    }

    /// Appends From.
    pub fn from(self, from: &NameAddr) -> Self {
        self.header(HeaderName::From, from)
    }

    /// Appends To.
    pub fn to(self, to: &NameAddr) -> Self {
        self.header(HeaderName::To, to)
    }

    /// Removes every line of a header.
    pub fn remove(mut self, name: HeaderName) -> Self {
        self.request.headers.remove(name);
        self
    }

    /// Sets the body and its Content-Type (replacing any earlier Content-Type).
    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.request
            .headers
            .set(&HeaderName::ContentType, content_type);
        self.request.body = body;
        self
    }

    /// Finishes the request.
    pub fn build(self) -> Request {
        self.request
    }
}

impl Response {
    /// Starts a response to `req`: copies every Via (in order), From, To, Call-ID and CSeq
    /// (RFC 3261 §8.2.6.2) and uses the default reason phrase for `status`.
    pub fn for_request(req: &Request, status: u16) -> ResponseBuilder {
        let mut headers = Headers::default();
        for name in [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            let copy_all = name == HeaderName::Via;
            for value in req.headers().lines(&name) {
                headers.push(&name, value);
                if !copy_all {
                    break;
                }
            }
        }
        ResponseBuilder {
            response: Response {
                status,
                reason: reason_phrase(status).to_owned(),
                headers,
                body: Bytes::new(),
            },
        }
    }

    /// Starts a response with no headers (for responses not tied to a parsed request).
    pub fn builder(status: u16) -> ResponseBuilder {
        ResponseBuilder {
            response: Response {
                status,
                reason: reason_phrase(status).to_owned(),
                headers: Headers::default(),
                body: Bytes::new(),
            },
        }
    }
}

impl ResponseBuilder {
    /// Sets the reason phrase (CR/LF are replaced by spaces).
    pub fn reason(mut self, reason: &str) -> Self {
        self.response.reason = reason.replace(['\r', '\n'], " ");
        self
    }

    /// Adds `;tag=<tag>` to To, unless To already has a tag.
    pub fn to_tag(mut self, tag: &str) -> Self {
        let headers = &mut self.response.headers;
        let Some(to) = headers.lines(&HeaderName::To).next() else {
            return self;
        };
        let new_value = match NameAddr::parse_as(to, HeaderName::To) {
            Ok(addr) if addr.tag().is_some() => return self,
            Ok(addr) => addr.with_tag(tag).to_string(),
            // Unparseable To (only possible on best-effort error answers): append verbatim.
            Err(_) if to.contains(";tag=") => return self,
            Err(_) => format!("{to};tag={tag}"),
        };
        headers.set(&HeaderName::To, &new_value);
        self
    }

    /// Appends a header line (CR/LF in the value are replaced).
    pub fn header(mut self, name: HeaderName, value: impl fmt::Display) -> Self {
        self.response.headers.push_display(&name, &value);
        self
    }

    /// Appends a typed header under its own name.
    pub fn typed(self, value: impl TypedHeader) -> Self {
        let name = value.name();
        self.header(name, value)
    }

    /// Removes every line of a header.
    pub fn remove(mut self, name: HeaderName) -> Self {
        self.response.headers.remove(name);
        self
    }

    /// Sets the body and its Content-Type (replacing any earlier Content-Type).
    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.response
            .headers
            .set(&HeaderName::ContentType, content_type);
        self.response.body = body;
        self
    }

    /// Finishes the response.
    pub fn build(self) -> Response {
        self.response
    }
}
