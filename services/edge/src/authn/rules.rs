//! The `--auth-mode-for` rule language: which credential schemes a request
//! may use, by source network and transport.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use auth::peers::TrustedPeers;

use super::AuthConfigError;
use crate::transport::{Protocol, Source};

/// The credential schemes a request may use. Neither (`deny`) lets in only
/// trusted peers' asserted identities.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Schemes {
    pub bearer: bool,
    pub digest: bool,
}

impl Schemes {
    /// Bearer tokens only: the default.
    pub const BEARER: Schemes = Schemes {
        bearer: true,
        digest: false,
    };

    /// Parses mode names: `bearer`, `digest` (together or alone), or `deny`
    /// alone.
    pub fn parse_list<I, S>(modes: I) -> Result<Schemes, AuthConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut schemes = Schemes::default();
        let mut deny = false;
        let mut any = false;
        for mode in modes {
            let mode = mode.as_ref().trim();
            if mode.is_empty() {
                continue;
            }
            any = true;
            match mode.to_ascii_lowercase().as_str() {
                "bearer" => schemes.bearer = true,
                "digest" => schemes.digest = true,
                "deny" => deny = true,
                _ => return Err(AuthConfigError::UnknownMode(mode.to_owned())),
            }
        }
        if !any {
            return Err(AuthConfigError::NoMode);
        }
        if deny && schemes != Schemes::default() {
            return Err(AuthConfigError::DenyCombined);
        }
        Ok(schemes)
    }

    /// Whether no credentials are accepted at all.
    pub fn is_deny(self) -> bool {
        !self.bearer && !self.digest
    }
}

impl fmt::Display for Schemes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.bearer, self.digest) {
            (true, true) => f.write_str("bearer,digest"),
            (true, false) => f.write_str("bearer"),
            (false, true) => f.write_str("digest"),
            (false, false) => f.write_str("deny"),
        }
    }
}

/// The schemes accepted from requests matching a selector:
/// `SELECTOR=MODES`, where the selector is a source network (`10.0.0.0/8`,
/// `2001:db8::/32`, a single address), a transport (`udp`, `tcp`, `tls`,
/// `ws`, `wss`) or both (`udp@10.0.0.0/8`), and the modes are as for
/// [`Schemes::parse_list`], separated by `,` or `+`.
///
/// When several rules match, the one with the longest network prefix wins;
/// between equally long ones (or none), one naming the transport wins.
#[derive(Clone, Debug)]
pub struct ModeRule {
    text: String,
    protocol: Option<Protocol>,
    network: Option<TrustedPeers>,
    /// Prefix length on a common scale (IPv4 prefixes + 96), -1 for none.
    prefix: i16,
    pub schemes: Schemes,
}

impl ModeRule {
    pub(super) fn matches(&self, source: &Source) -> bool {
        self.protocol.is_none_or(|p| p == source.protocol)
            && self
                .network
                .as_ref()
                .is_none_or(|n| n.is_trusted(source.remote.ip()))
    }

    /// Orders rules most specific first.
    pub(super) fn specificity(&self) -> (i16, bool) {
        (self.prefix, self.protocol.is_some())
    }
}

impl fmt::Display for ModeRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for ModeRule {
    type Err = AuthConfigError;

    fn from_str(text: &str) -> Result<ModeRule, AuthConfigError> {
        let bad = |why: &str| AuthConfigError::BadRule(text.to_owned(), why.to_owned());
        let (selector, modes) = text
            .split_once('=')
            .ok_or_else(|| bad("expected SELECTOR=MODES"))?;
        let selector = selector.trim();
        let schemes = Schemes::parse_list(modes.split([',', '+']))?;
        let (protocol, network) = match selector.split_once('@') {
            Some((protocol, network)) => (Some(protocol), Some(network)),
            None if Protocol::parse(selector).is_some() => (Some(selector), None),
            None => (None, Some(selector)),
        };
        let protocol = protocol
            .map(|name| Protocol::parse(name.trim()).ok_or_else(|| bad("unknown transport")))
            .transpose()?;
        let (network, prefix) = match network.map(str::trim) {
            None => (None, -1),
            Some(cidr) => {
                let peers = TrustedPeers::new([cidr]).map_err(|_| {
                    bad("neither a transport (udp, tcp, tls, ws, wss) nor a network")
                })?;
                if peers.is_empty() {
                    return Err(bad("empty network"));
                }
                let (address, length) = match cidr.split_once('/') {
                    Some((address, length)) => (address, length.parse::<i16>().ok()),
                    None => (cidr, None),
                };
                let prefix = match address.parse::<IpAddr>() {
                    Ok(IpAddr::V4(_)) => 96 + length.unwrap_or(32),
                    Ok(IpAddr::V6(_)) => length.unwrap_or(128),
                    Err(_) => return Err(bad("invalid network")),
                };
                (Some(peers), prefix)
            }
        };
        Ok(ModeRule {
            text: text.trim().to_owned(),
            protocol,
            network,
            prefix,
            schemes,
        })
    }
}
