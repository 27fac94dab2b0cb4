//! What the edge writes in Via and Contact of what it sends, per protocol
//! and address family.

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::Context;

use super::Protocol;

/// What the edge writes in Via and Contact for one protocol and address family.
#[derive(Clone, Debug)]
pub(super) struct Advert {
    pub(super) host: String,
    pub(super) port: Option<u16>,
    pub(super) contact: sip::Uri,
    pub(super) sips_contact: Option<sip::Uri>,
}

/// Every protocol's advert, for each address family it listens on.
pub(super) struct Adverts {
    /// Keyed by protocol and "is IPv6"; `None` is the protocol's default.
    by_protocol: HashMap<(Protocol, Option<bool>), Advert>,
    /// Never used: `new` fills `by_protocol` for every protocol.
    fallback: Advert,
}

impl Adverts {
    /// Fails when the advertised host does not make a valid SIP URI.
    pub(super) fn new(
        advertised_host: Option<&str>,
        listeners: &[(Protocol, SocketAddr)],
    ) -> anyhow::Result<Self> {
        let mut by_protocol = HashMap::new();
        for protocol in Protocol::ALL {
            let own: Vec<SocketAddr> = listeners
                .iter()
                .filter(|(p, _)| *p == protocol)
                .map(|(_, a)| *a)
                .collect();
            let fallback = listeners.first().map(|(_, a)| *a);
            let default = own.first().copied().or(fallback);
            by_protocol.insert(
                (protocol, None),
                advert(advertised_host, protocol, default)?,
            );
            for v6 in [false, true] {
                if let Some(addr) = own.iter().find(|a| a.is_ipv6() == v6) {
                    by_protocol.insert(
                        (protocol, Some(v6)),
                        advert(advertised_host, protocol, Some(*addr))?,
                    );
                }
            }
        }
        if advertised_host.is_none() {
            if let Some((p, a)) = listeners.iter().find(|(_, a)| a.ip().is_unspecified()) {
                tracing::warn!(listener = %a, protocol = %p, "listening on a wildcard address without --advertised-host: Via and Contact will name the wildcard address");
            }
        }
        let fallback = advert(advertised_host, Protocol::Udp, None)?;
        Ok(Adverts {
            by_protocol,
            fallback,
        })
    }

    /// The advert toward `remote` (the listener of its address family, when
    /// there is one).
    pub(super) fn get(&self, protocol: Protocol, remote: Option<SocketAddr>) -> &Advert {
        remote
            .and_then(|r| self.by_protocol.get(&(protocol, Some(r.is_ipv6()))))
            .or_else(|| self.by_protocol.get(&(protocol, None)))
            .unwrap_or(&self.fallback)
    }
}

fn advert(
    advertised_host: Option<&str>,
    protocol: Protocol,
    addr: Option<SocketAddr>,
) -> anyhow::Result<Advert> {
    let host = match (advertised_host, addr) {
        (Some(host), _) => host.to_string(),
        (None, Some(SocketAddr::V6(a))) => format!("[{}]", a.ip()),
        (None, Some(SocketAddr::V4(a))) => a.ip().to_string(),
        (None, None) => "127.0.0.1".into(),
    };
    let port = addr.map(|a| a.port());
    let invalid = || format!("advertised host {host:?} is not a valid SIP host");
    let mut contact = sip::Uri::sip(None, &host, port).with_context(invalid)?;
    if let Some(transport) = protocol.uri_transport() {
        contact = contact
            .with_param("transport", Some(transport))
            .with_context(invalid)?;
    }
    let sips_contact = if protocol.is_secure() {
        let sips = sip::Uri::sips(None, &host, port).with_context(invalid)?;
        Some(match protocol {
            // sips: alone means TLS; WebSocket needs its parameter.
            Protocol::Wss => sips
                .with_param("transport", Some("ws"))
                .with_context(invalid)?,
            _ => sips,
        })
    } else {
        None
    };
    Ok(Advert {
        host,
        port,
        contact,
        sips_contact,
    })
}
