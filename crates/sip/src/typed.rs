//! Typed accessors on [`Headers`]: each parses its header on demand.

use crate::auth::Authorization;
use crate::cseq::CSeq;
use crate::error::{ErrorKind, ParseError};
use crate::event::Event;
use crate::grammar::{parse_u32, trim, CommaSplit};
use crate::header_name::HeaderName;
use crate::headers::Headers;
use crate::media_type::MediaType;
use crate::name_addr::{self, Contact, Contacts, NameAddr};
use crate::subscription_state::SubscriptionState;
use crate::via::{self, Via};

impl Headers {
    /// Every comma-separated element of every line of a list header, empty ones included (so
    /// typed parsers can reject `a,,b`).
    fn elements<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.lines(name).flat_map(CommaSplit::new)
    }

    fn first_line(&self, name: &HeaderName) -> Option<&str> {
        self.lines(name).next()
    }

    fn required(&self, name: HeaderName) -> Result<&str, ParseError> {
        match self.lines(&name).next() {
            Some(v) => Ok(v),
            None => Err(ParseError::new(ErrorKind::MissingHeader(name))),
        }
    }

    fn number(&self, name: HeaderName) -> Result<Option<u32>, ParseError> {
        match self.first_line(&name) {
            None => Ok(None),
            Some(v) => parse_u32(trim(v))
                .map(Some)
                .ok_or_else(|| ParseError::invalid(name)),
        }
    }

    fn name_addrs(&self, name: HeaderName) -> Result<Vec<NameAddr>, ParseError> {
        self.elements(&name)
            .map(|v| NameAddr::parse_as(v, name.clone()))
            .collect()
    }

    fn tokens(&self, name: HeaderName) -> Vec<&str> {
        self.get_all(name).collect()
    }

    /// Every Via value, top first.
    pub fn via(&self) -> Result<Vec<Via>, ParseError> {
        let err = || ParseError::invalid(HeaderName::Via);
        let list: Vec<Via> = self
            .elements(&HeaderName::Via)
            .map(|v| {
                via::scan(v)
                    .and_then(|r| Via::from_ref(&r))
                    .map_err(|_| err())
            })
            .collect::<Result<_, _>>()?;
        if list.is_empty() {
            return Err(ParseError::new(ErrorKind::MissingHeader(HeaderName::Via)));
        }
        Ok(list)
    }

    /// The topmost Via value.
    pub fn top_via(&self) -> Result<Via, ParseError> {
        let err = || ParseError::invalid(HeaderName::Via);
        let top = self
            .elements(&HeaderName::Via)
            .next()
            .ok_or_else(|| ParseError::new(ErrorKind::MissingHeader(HeaderName::Via)))?;
        via::scan(top)
            .and_then(|r| Via::from_ref(&r))
            .map_err(|_| err())
    }

    /// The From header.
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse_as(self.required(HeaderName::From)?, HeaderName::From)
    }

    /// The To header.
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse_as(self.required(HeaderName::To)?, HeaderName::To)
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Result<&str, ParseError> {
        let v = trim(self.required(HeaderName::CallId)?);
        if v.is_empty() {
            return Err(ParseError::invalid(HeaderName::CallId));
        }
        Ok(v)
    }

    /// The CSeq header.
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        self.required(HeaderName::CSeq)?.parse()
    }

    /// The Contact header: `*`, or the listed contacts (an empty list when absent).
    pub fn contacts(&self) -> Result<Contacts, ParseError> {
        let err = || ParseError::invalid(HeaderName::Contact);
        let mut list = Vec::new();
        let mut star = false;
        for v in self.elements(&HeaderName::Contact) {
            if v == "*" {
                star = true;
                continue;
            }
            let r = name_addr::scan(v).map_err(|_| err())?;
            list.push(Contact::new(NameAddr::from_ref(&r).map_err(|_| err())?));
        }
        match (star, list.is_empty()) {
            (true, true) => Ok(Contacts::Star),
            (true, false) => Err(err()),
            (false, _) => Ok(Contacts::List(list)),
        }
    }

    /// The Expires header in seconds.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.number(HeaderName::Expires)
    }

    /// The Min-Expires header in seconds.
    pub fn min_expires(&self) -> Result<Option<u32>, ParseError> {
        self.number(HeaderName::MinExpires)
    }

    /// The Max-Forwards header (0 ..= 255).
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        match self.number(HeaderName::MaxForwards)? {
            Some(n) if n > 255 => Err(ParseError::invalid(HeaderName::MaxForwards)),
            other => Ok(other),
        }
    }

    /// The Event header.
    pub fn event(&self) -> Result<Option<Event>, ParseError> {
        self.first_line(&HeaderName::Event)
            .map(str::parse)
            .transpose()
    }

    /// The Content-Type header.
    pub fn content_type(&self) -> Result<Option<MediaType>, ParseError> {
        self.first_line(&HeaderName::ContentType)
            .map(|v| MediaType::parse_as(v, HeaderName::ContentType))
            .transpose()
    }

    /// The Content-Length header as received (serialisation always writes the real length).
    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        match self.first_line(&HeaderName::ContentLength) {
            None => Ok(None),
            Some(v) => parse_content_length(v).map(Some),
        }
    }

    /// Every media range of the Accept header(s), in order. An empty list means either no
    /// Accept header or an empty one; use `contains(HeaderName::Accept)` to tell them apart.
    pub fn accept(&self) -> Result<Vec<MediaType>, ParseError> {
        self.get_all(HeaderName::Accept)
            .map(|v| MediaType::parse_as(v, HeaderName::Accept))
            .collect()
    }

    /// The Authorization header.
    pub fn authorization(&self) -> Result<Option<Authorization>, ParseError> {
        self.first_line(&HeaderName::Authorization)
            .map(|v| Authorization::parse_as(v, HeaderName::Authorization))
            .transpose()
    }

    /// The Proxy-Authorization header.
    pub fn proxy_authorization(&self) -> Result<Option<Authorization>, ParseError> {
        self.first_line(&HeaderName::ProxyAuthorization)
            .map(|v| Authorization::parse_as(v, HeaderName::ProxyAuthorization))
            .transpose()
    }

    /// Every Route value, in order.
    pub fn route(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(HeaderName::Route)
    }

    /// Every Record-Route value, in order.
    pub fn record_route(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(HeaderName::RecordRoute)
    }

    /// Every P-Asserted-Identity value (RFC 3325).
    pub fn p_asserted_identity(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(HeaderName::PAssertedIdentity)
    }

    /// The Subscription-State header.
    pub fn subscription_state(&self) -> Result<Option<SubscriptionState>, ParseError> {
        self.first_line(&HeaderName::SubscriptionState)
            .map(str::parse)
            .transpose()
    }

    /// The SIP-ETag header (RFC 3903).
    pub fn sip_etag(&self) -> Option<&str> {
        self.first_line(&HeaderName::SipETag).map(trim)
    }

    /// The SIP-If-Match header (RFC 3903).
    pub fn sip_if_match(&self) -> Option<&str> {
        self.first_line(&HeaderName::SipIfMatch).map(trim)
    }

    /// Option tags of the Supported header(s).
    pub fn supported(&self) -> Vec<&str> {
        self.tokens(HeaderName::Supported)
    }

    /// Option tags of the Require header(s).
    pub fn require(&self) -> Vec<&str> {
        self.tokens(HeaderName::Require)
    }

    /// Option tags of the Proxy-Require header(s).
    pub fn proxy_require(&self) -> Vec<&str> {
        self.tokens(HeaderName::ProxyRequire)
    }

    /// Event packages of the Allow-Events header(s).
    pub fn allow_events(&self) -> Vec<&str> {
        self.tokens(HeaderName::AllowEvents)
    }

    /// Methods of the Allow header(s).
    pub fn allow(&self) -> Vec<&str> {
        self.tokens(HeaderName::Allow)
    }

    /// The User-Agent header.
    pub fn user_agent(&self) -> Option<&str> {
        self.first_line(&HeaderName::UserAgent)
    }

    /// The Date header, unparsed.
    pub fn date(&self) -> Option<&str> {
        self.first_line(&HeaderName::Date)
    }
}

/// A Content-Length value: 1 to 12 digits, surrounding whitespace allowed.
pub(crate) fn parse_content_length(v: &str) -> Result<usize, ParseError> {
    let v = trim(v);
    if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::new(ErrorKind::BadContentLength));
    }
    v.parse()
        .map_err(|_| ParseError::new(ErrorKind::BadContentLength))
}
