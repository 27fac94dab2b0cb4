//! Requests, responses, and their serialisation.

use bytes::Bytes;

use crate::header_name::HeaderName;
use crate::headers::Headers;
use crate::method::Method;
use crate::uri::Uri;
use crate::via::Via;

/// A SIP request.
#[derive(Clone, Debug)]
pub struct Request {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: Headers,
    pub(crate) body: Bytes,
}

/// A SIP response.
#[derive(Clone, Debug)]
pub struct Response {
    pub(crate) status: u16,
    pub(crate) reason: String,
    pub(crate) headers: Headers,
    pub(crate) body: Bytes,
}

/// A parsed SIP message.
#[derive(Clone, Debug)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Writes header section, Content-Length (always the real body length) and body.
fn finish(mut out: Vec<u8>, headers: &Headers, body: &Bytes) -> Bytes {
    headers.write_to(&mut out);
    out.extend_from_slice(b"Content-Length: ");
    write_u64(&mut out, body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    Bytes::from(out)
}

impl Request {
    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The Request-URI.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The header fields.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The header fields, for changes such as adding a Record-Route or removing a Route.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// The body (empty when there is none).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Replaces the topmost Via value (other values, including any sharing its line, are
    /// kept), e.g. after adding `received`/`rport` (RFC 3261 §18.2.1, RFC 3581).
    pub fn set_top_via(&mut self, via: &Via) {
        self.headers
            .replace_first_element(&HeaderName::Via, &via.to_string());
    }

    /// Serialises the request: canonical header names, unfolded values, and a Content-Length
    /// that always matches the body.
    pub fn to_bytes(&self) -> Bytes {
        let uri = self.uri.as_str();
        let mut out = Vec::with_capacity(
            self.method.as_str().len()
                + uri.len()
                + 12
                + self.headers.encoded_len()
                + 40
                + self.body.len(),
        );
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(uri.as_bytes());
        out.extend_from_slice(b" SIP/2.0\r\n");
        finish(out, &self.headers, &self.body)
    }
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The header fields.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The header fields, for changes.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// The body (empty when there is none).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Serialises the response, with a Content-Length that always matches the body.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(
            16 + self.reason.len() + self.headers.encoded_len() + 40 + self.body.len(),
        );
        out.extend_from_slice(b"SIP/2.0 ");
        write_u64(&mut out, u64::from(self.status));
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        finish(out, &self.headers, &self.body)
    }
}

impl Message {
    /// The header fields.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => r.headers(),
            Message::Response(r) => r.headers(),
        }
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        match self {
            Message::Request(r) => r.body(),
            Message::Response(r) => r.body(),
        }
    }

    /// The request, if this is one.
    pub fn as_request(&self) -> Option<&Request> {
        match self {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        }
    }

    /// The response, if this is one.
    pub fn as_response(&self) -> Option<&Response> {
        match self {
            Message::Response(r) => Some(r),
            Message::Request(_) => None,
        }
    }

    /// Serialises the message.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Self {
        Message::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Self {
        Message::Response(r)
    }
}
