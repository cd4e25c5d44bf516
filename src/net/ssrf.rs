//! SSRF guard: decides which network addresses herald may open webhook
//! connections to.
//!
//! Owns the address classification (which IPs are globally routable unicast),
//! the operator's allow-list (`webhook.allowed_networks`), the registration-time
//! URL check, and the connect-time enforcement for reqwest.
//!
//! Invariants:
//! - An address is refused unless it is global unicast or lies inside an
//!   allowed network; allowed networks override every class.
//! - IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are classified by their
//!   embedded IPv4 address, and are refused even when that address is global
//!   (class "ipv4-mapped") unless the mapped address or its IPv4 form is
//!   allowed. A legitimate endpoint never needs the mapped spelling, while
//!   attackers use it to slip loopback past naive string checks.
//! - IPv6 is global only inside 2000::/3, minus the special-purpose blocks
//!   listed in `IPV6_SPECIAL`; everything else is "reserved".
//!
//! Enforcement needs BOTH connect-time checks, because registration-time checks
//! cannot stop a name that later resolves to 127.0.0.1 (DNS rebinding):
//! 1. [`GuardedResolver`] installed with `ClientBuilder::dns_resolver`: it
//!    filters every resolved address of a host *name*.
//! 2. [`check_ip_literal_target`] called by the sender before every request:
//!    reqwest connects to IP-literal hosts directly and never calls the
//!    resolver for them, so the resolver alone lets `http://127.0.0.1/` through
//!    (the tests below demonstrate this).
//!
//! The client must also be built with `.no_proxy()` (a proxy would resolve
//! names itself, bypassing the resolver) and `redirect::Policy::none()` (a
//! redirect to an IP literal would skip check 2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Longest accepted webhook URL; longer ones are almost certainly abuse and
/// bloat every log line and database row that carries them.
pub const MAX_URL_BYTES: usize = 2048;

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix_len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix_len)
}

const fn v6(segments: [u16; 8], prefix_len: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix_len)
}

/// Non-global IPv4 blocks. The first match wins, so a block nested inside a
/// larger one (0.0.0.0/32 in 0.0.0.0/8, 255.255.255.255 in 240.0.0.0/4) must
/// come before it.
const IPV4_SPECIAL: &[(Ipv4Net, &str)] = &[
    (v4(0, 0, 0, 0, 32), "unspecified"),
    (v4(0, 0, 0, 0, 8), "this-network"),
    (v4(10, 0, 0, 0, 8), "private"),
    (v4(100, 64, 0, 0, 10), "shared (CGNAT)"),
    (v4(127, 0, 0, 0, 8), "loopback"),
    (v4(169, 254, 0, 0, 16), "link-local"),
    (v4(172, 16, 0, 0, 12), "private"),
    (v4(192, 0, 0, 0, 24), "ietf-protocol"),
    (v4(192, 0, 2, 0, 24), "documentation"),
    // The deprecated 6to4 relay anycast block (RFC 7526).
    (v4(192, 88, 99, 0, 24), "6to4"),
    (v4(192, 168, 0, 0, 16), "private"),
    (v4(198, 18, 0, 0, 15), "benchmarking"),
    (v4(198, 51, 100, 0, 24), "documentation"),
    (v4(203, 0, 113, 0, 24), "documentation"),
    (v4(224, 0, 0, 0, 4), "multicast"),
    (v4(255, 255, 255, 255, 32), "broadcast"),
    (v4(240, 0, 0, 0, 4), "reserved"),
];

/// Non-global IPv6 blocks; first match wins, so nested blocks come first.
/// IPv4-mapped addresses never reach this table (see [`non_global_class`]).
const IPV6_SPECIAL: &[(Ipv6Net, &str)] = &[
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified"),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    // Deprecated IPv4-compatible addresses (RFC 4291 section 2.5.5.1).
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 96), "ipv4-compatible"),
    (v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96), "nat64"),
    (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), "nat64"),
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), "discard-only"),
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), "teredo"),
    (v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48), "benchmarking"),
    // The rest of the IETF protocol assignments. IANA marks a few of them
    // globally reachable (AS112, AMT, ORCHID), but no webhook lives there.
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), "ietf-protocol"),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), "documentation"),
    (v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), "6to4"),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), "documentation"),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), "unique-local"),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link-local"),
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), "site-local"),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
];

/// The only IPv6 block IANA allocates for global unicast.
const IPV6_GLOBAL_UNICAST: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// None when `ip` is global unicast; else a short class name such as
/// "loopback", "private" or "ipv4-mapped", used in error messages.
pub fn non_global_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => ipv4_class(v4),
        // Classify the embedded IPv4 first so ::ffff:127.0.0.1 reports
        // "loopback"; a global embedded address is still refused.
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(embedded) => Some(ipv4_class(embedded).unwrap_or("ipv4-mapped")),
            None => ipv6_class(v6),
        },
    }
}

fn ipv4_class(ip: Ipv4Addr) -> Option<&'static str> {
    IPV4_SPECIAL
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, class)| *class)
}

fn ipv6_class(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some((_, class)) = IPV6_SPECIAL.iter().find(|(net, _)| net.contains(&ip)) {
        return Some(class);
    }
    if IPV6_GLOBAL_UNICAST.contains(&ip) {
        None
    } else {
        Some("reserved")
    }
}

/// Which addresses webhook connections may reach: global unicast, plus the
/// operator's `webhook.allowed_networks`.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// Ok if `ip` is globally routable, or inside an allowed network.
    pub fn check(&self, ip: IpAddr) -> Result<(), ForbiddenAddress> {
        if self.is_allowed(ip) {
            return Ok(());
        }
        match non_global_class(ip) {
            None => Ok(()),
            Some(class) => Err(ForbiddenAddress { ip, class }),
        }
    }

    /// An allowed IPv4 network also admits the mapped spelling of its
    /// addresses: `to_canonical` unwraps ::ffff:a.b.c.d (and only that form).
    fn is_allowed(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.allowed
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
    }
}

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{ip} is {article} {class} address; webhook targets must be public unless listed in webhook.allowed_networks",
    ip = .ip,
    article = indefinite_article(.class),
    class = .class
)]
pub struct ForbiddenAddress {
    pub ip: IpAddr,
    pub class: &'static str,
}

/// "an ipv4-mapped address" but "a unique-local address": the class names
/// are ours, so a small rule covers them all.
fn indefinite_article(class: &str) -> &'static str {
    let starts_with_vowel_sound = class.starts_with(['a', 'e', 'i', 'o']) || class == "unspecified";
    if starts_with_vowel_sound { "an" } else { "a" }
}

/// A webhook URL refused at registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointUrlError {
    #[error("url: must be at most {MAX_URL_BYTES} bytes, got {len}")]
    TooLong { len: usize },
    #[error(
        "url: contains whitespace or a control character {found:?} at byte {offset}; percent-encode it"
    )]
    ControlOrWhitespace { offset: usize, found: char },
    #[error("url: cannot parse: {0}")]
    Unparseable(url::ParseError),
    #[error("url: scheme must be http or https, got {0}")]
    UnsupportedScheme(String),
    #[error("url: scheme must be https because only https webhooks are permitted, got http")]
    HttpsRequired,
    #[error("url: a host is required")]
    MissingHost,
    #[error(
        "url: must not contain a username or password (credentials in URLs leak into logs; authenticate with the webhook signature or headers)"
    )]
    Credentials,
    #[error("url: {0}")]
    Forbidden(#[from] ForbiddenAddress),
}

/// Registration-time check of a webhook URL; resolves no names (see the
/// module docs for the connect-time half). Returns the parsed URL.
pub fn check_endpoint_url(
    raw: &str,
    policy: &AddressPolicy,
    https_only: bool,
) -> Result<Url, EndpointUrlError> {
    if raw.len() > MAX_URL_BYTES {
        return Err(EndpointUrlError::TooLong { len: raw.len() });
    }
    // The url crate silently strips tabs and newlines (WHATWG), so the stored
    // URL would differ from what the user typed; refuse instead of guessing.
    if let Some((offset, found)) = raw
        .char_indices()
        .find(|(_, c)| c.is_control() || c.is_whitespace())
    {
        return Err(EndpointUrlError::ControlOrWhitespace { offset, found });
    }
    let url = Url::parse(raw).map_err(|error| match error {
        url::ParseError::EmptyHost => EndpointUrlError::MissingHost,
        other => EndpointUrlError::Unparseable(other),
    })?;
    match url.scheme() {
        "https" => {}
        "http" if https_only => return Err(EndpointUrlError::HttpsRequired),
        "http" => {}
        other => return Err(EndpointUrlError::UnsupportedScheme(other.to_owned())),
    }
    if url.host().is_none() {
        return Err(EndpointUrlError::MissingHost);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointUrlError::Credentials);
    }
    check_ip_literal_target(&url, policy)?;
    // Parsing percent-encodes non-ASCII paths, so the URL that is stored can be several times
    // longer than the one typed: the limit applies to what is stored.
    if url.as_str().len() > MAX_URL_BYTES {
        return Err(EndpointUrlError::TooLong {
            len: url.as_str().len(),
        });
    }
    Ok(url)
}

/// Connect-time check for IP-literal hosts, which reqwest connects to without
/// calling the resolver. Host names pass here: [`GuardedResolver`] checks them.
pub fn check_ip_literal_target(url: &Url, policy: &AddressPolicy) -> Result<(), ForbiddenAddress> {
    match url.host() {
        Some(Host::Ipv4(ip)) => policy.check(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => policy.check(IpAddr::V6(ip)),
        Some(Host::Domain(_)) | None => Ok(()),
    }
}

/// A host name whose every resolved address the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{host} resolves only to forbidden addresses: {}; webhook targets must be public unless listed in webhook.allowed_networks",
    describe_refused(.refused)
)]
pub struct ForbiddenResolution {
    pub host: String,
    pub refused: Vec<ForbiddenAddress>,
}

fn describe_refused(refused: &[ForbiddenAddress]) -> String {
    refused
        .iter()
        .map(|forbidden| format!("{} ({})", forbidden.ip, forbidden.class))
        .collect::<Vec<_>>()
        .join(", ")
}

/// reqwest DNS resolver that drops every resolved address the policy refuses.
/// Because the check happens on the very addresses reqwest then connects to,
/// there is no window for DNS rebinding between check and use.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest substitutes the URL's port (or the scheme default).
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let mut permitted = Vec::new();
            let mut refused: Vec<ForbiddenAddress> = Vec::new();
            for addr in resolved {
                match policy.check(addr.ip()) {
                    Ok(()) => permitted.push(addr),
                    Err(forbidden) if refused.contains(&forbidden) => {}
                    Err(forbidden) => refused.push(forbidden),
                }
            }
            if !permitted.is_empty() {
                let addrs: Addrs = Box::new(permitted.into_iter());
                return Ok(addrs);
            }
            if refused.is_empty() {
                let message = format!("{host} resolved to no addresses");
                return Err(std::io::Error::new(std::io::ErrorKind::NotFound, message).into());
            }
            Err(ForbiddenResolution { host, refused }.into())
        })
    }
}

#[cfg(test)]
mod tests;
