//! Tests of the SSRF guard: the address table, URL registration checks, and the resolver
//! through a real reqwest client.

use super::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn nets(texts: &[&str]) -> AddressPolicy {
    AddressPolicy::new(texts.iter().map(|text| text.parse().unwrap()).collect())
}

/// "expected class | addresses", one class per row (rows may repeat a
/// class); class "global" means the address must pass.
const CLASSIFICATION: &str = "
    unspecified     | 0.0.0.0 :: ::ffff:0.0.0.0
    this-network    | 0.0.0.1 0.255.255.255
    loopback        | 127.0.0.1 127.1.2.3 127.255.255.255 ::1 ::ffff:127.0.0.1 ::ffff:7f00:1
    loopback        | 0:0:0:0:0:ffff:127.0.0.1
    private         | 10.0.0.0 10.255.255.255 172.16.0.1 172.31.255.255 192.168.0.1
    private         | 192.168.255.255 ::ffff:10.0.0.1
    shared (CGNAT)  | 100.64.0.0 100.127.255.255 ::ffff:100.64.0.1
    link-local      | 169.254.0.1 169.254.169.254 169.254.255.255 fe80::1 febf:ffff::1
    link-local      | ::ffff:169.254.169.254
    ietf-protocol   | 192.0.0.0 192.0.0.9 192.0.0.255 2001:1::1 2001:3::1 2001:1ff:ffff::1
    teredo          | 2001:: 2001:0:4136:e378:8000:63bf:3fff:fdd2
    benchmarking    | 2001:2::1 198.18.0.0 198.19.255.255
    documentation   | 192.0.2.1 198.51.100.7 203.0.113.255 2001:db8::1 2001:db8:ffff:ffff::1
    documentation   | 3fff::1 3fff:fff:ffff::1
    6to4            | 192.88.99.1 2002::1 2002:7f00:1::1 2002:ffff:ffff::1
    multicast       | 224.0.0.1 239.255.255.250 ff02::1 ff05::1:3 ffff::1
    broadcast       | 255.255.255.255 ::ffff:255.255.255.255
    reserved        | 240.0.0.1 250.1.2.3 255.255.255.254 1::1 4000::1 5f00::1 8000::1
    reserved        | e000::1 fe00::1 100:0:0:1::1 ::ffff:0:808:808
    unique-local    | fc00::1 fd12:3456::1 fdff:ffff::1
    site-local      | fec0::1 feff::1
    ipv4-compatible | ::2 ::127.0.0.1 ::8.8.8.8
    nat64           | 64:ff9b::808:808 64:ff9b::127.0.0.1 64:ff9b:1::1
    discard-only    | 100::1 100::ffff:ffff:ffff:ffff
    ipv4-mapped     | ::ffff:8.8.8.8 ::ffff:1.1.1.1
    global          | 8.8.8.8 1.1.1.1 9.9.9.9 11.0.0.1 126.255.255.255 128.0.0.1
    global          | 100.63.255.255 100.128.0.1 169.253.255.255 169.255.0.1 172.15.255.255
    global          | 172.32.0.1 192.0.1.1 192.0.3.1 192.88.98.1 192.167.255.255 192.169.0.1
    global          | 198.17.255.255 198.20.0.1 223.255.255.255 2606:4700::1111
    global          | 2001:4860:4860::8888 2a00:1450:4001::1 2001:200::1 2003::1
    global          | 3fff:1000::1 3ffe:ffff::1
";

fn classification() -> Vec<(&'static str, Option<&'static str>)> {
    let rows = CLASSIFICATION.lines().filter_map(|row| row.split_once('|'));
    rows.flat_map(|(class, addrs)| {
        let expected = Some(class.trim()).filter(|class| *class != "global");
        addrs.split_whitespace().map(move |addr| (addr, expected))
    })
    .collect()
}

#[test]
fn classifies_every_listed_address() {
    let mismatches: Vec<String> = classification()
        .into_iter()
        .filter_map(|(text, expected)| {
            let actual = non_global_class(ip(text));
            (actual != expected).then(|| format!("{text}: got {actual:?}, want {expected:?}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

#[test]
fn empty_policy_refuses_exactly_the_non_global_addresses() {
    let policy = AddressPolicy::default();
    let cases = classification();
    assert!(cases.len() > 100, "the table lost rows: {}", cases.len());
    for (text, expected) in cases {
        let expected = match expected {
            None => Ok(()),
            Some(class) => Err(ForbiddenAddress {
                ip: ip(text),
                class,
            }),
        };
        assert_eq!(policy.check(ip(text)), expected, "{text}");
    }
}

/// First match wins, so a table entry placed after a block containing it
/// would silently never apply; every entry must own one of its ends.
#[test]
fn no_table_entry_is_shadowed() {
    for (net, class) in IPV4_SPECIAL {
        let ends = [net.network(), net.broadcast()];
        assert!(
            ends.iter().any(|end| ipv4_class(*end) == Some(class)),
            "{net}"
        );
    }
    for (net, class) in IPV6_SPECIAL {
        let ends = [net.network(), net.broadcast()];
        assert!(
            ends.iter().any(|end| ipv6_class(*end) == Some(class)),
            "{net}"
        );
    }
}

#[test]
fn forbidden_address_message() {
    let policy = AddressPolicy::default();
    let message = |text: &str| policy.check(ip(text)).unwrap_err().to_string();
    assert_eq!(
        message("127.0.0.1"),
        "127.0.0.1 is a loopback address; webhook targets must be public unless listed in webhook.allowed_networks"
    );
    assert!(message("::ffff:8.8.8.8").starts_with("::ffff:8.8.8.8 is an ipv4-mapped address;"));
    assert!(message("0.0.0.0").starts_with("0.0.0.0 is an unspecified address;"));
    assert!(message("fd00::1").starts_with("fd00::1 is a unique-local address;"));
    assert!(message("100.64.0.1").starts_with("100.64.0.1 is a shared (CGNAT) address;"));
}

#[test]
fn allowed_networks_override_every_class() {
    let policy = nets(&["127.0.0.0/8", "10.1.0.0/16", "fd00::/8", "ff02::1/128"]);
    for allowed in ["127.0.0.1", "127.9.9.9", "10.1.2.3", "fd00::1", "ff02::1"] {
        assert_eq!(policy.check(ip(allowed)), Ok(()), "{allowed}");
    }
    for refused in [
        "10.2.0.1",
        "192.168.1.1",
        "::1",
        "fc00::1",
        "ff02::2",
        "169.254.169.254",
    ] {
        assert!(policy.check(ip(refused)).is_err(), "{refused}");
    }
    assert_eq!(policy.check(ip("8.8.8.8")), Ok(()));
    assert_eq!(nets(&["0.0.0.0/0"]).check(ip("192.168.1.1")), Ok(()));
}

#[test]
fn mapped_addresses_follow_the_allow_list_of_their_ipv4_form() {
    let loopback_allowed = nets(&["127.0.0.0/8"]);
    assert_eq!(loopback_allowed.check(ip("::ffff:127.0.0.1")), Ok(()));
    assert_eq!(loopback_allowed.check(ip("::ffff:7f00:2")), Ok(()));
    // A global IPv4 address is allowed, but never its mapped spelling.
    let mapped_public = loopback_allowed.check(ip("::ffff:8.8.8.8")).unwrap_err();
    assert_eq!(mapped_public.class, "ipv4-mapped");
    // Only the mapped form is canonicalised, not the deprecated compatible one.
    assert!(loopback_allowed.check(ip("::127.0.0.1")).is_err());
    assert!(loopback_allowed.check(ip("64:ff9b::127.0.0.1")).is_err());

    let mapped_block_allowed = nets(&["::ffff:0:0/96"]);
    assert_eq!(mapped_block_allowed.check(ip("::ffff:8.8.8.8")), Ok(()));
    assert_eq!(mapped_block_allowed.check(ip("::ffff:127.0.0.1")), Ok(()));
    assert!(mapped_block_allowed.check(ip("127.0.0.1")).is_err());
}

fn check(raw: &str) -> Result<Url, EndpointUrlError> {
    check_endpoint_url(raw, &AddressPolicy::default(), false)
}

fn forbidden_class(raw: &str) -> &'static str {
    match check(raw) {
        Err(EndpointUrlError::Forbidden(forbidden)) => forbidden.class,
        other => panic!("{raw}: expected a forbidden address, got {other:?}"),
    }
}

#[test]
fn accepts_public_and_named_hosts_without_resolving() {
    for raw in [
        "https://example.com/hooks?x=1",
        "http://localhost:8080/x",
        "http://localhost./",
        "http://127.0.0.1.nip.io/",
        "HTTPS://EXAMPLE.COM/Path",
        "https://bücher.example/",
        "https://8.8.8.8/",
        "https://[2606:4700::1111]:8443/",
    ] {
        assert!(check(raw).is_ok(), "{raw}: {:?}", check(raw));
    }
    let url = check("HTTPS://EXAMPLE.COM/Path").unwrap();
    assert_eq!(url.as_str(), "https://example.com/Path");
}

#[test]
fn refuses_ip_literals_in_every_spelling() {
    for (raw, class) in [
        ("http://127.0.0.1/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://0177.0.0.1/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://127.0.0.1./", "loopback"),
        ("http://0/", "unspecified"),
        ("http://[::1]:8080/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:7f00:1]/", "loopback"),
        ("http://[0:0:0:0:0:ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:8.8.8.8]/", "ipv4-mapped"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1/", "private"),
        ("https://[fd00::1]/", "unique-local"),
    ] {
        assert_eq!(forbidden_class(raw), class, "{raw}");
    }
    let policy = nets(&["127.0.0.0/8"]);
    for raw in ["http://127.0.0.1:3000/", "http://[::ffff:127.0.0.1]/"] {
        assert!(check_endpoint_url(raw, &policy, false).is_ok(), "{raw}");
    }
}

#[test]
fn refuses_control_characters_and_whitespace_before_parsing() {
    for raw in [
        "https://example.com/\n",
        "https://exa\tmple.com/",
        "https://example.com/a b",
        " https://example.com/",
        "https://example.com/\r\nX-Injected: 1",
        "https://example.com/\u{0}",
        "https://example.com/\u{7f}",
        "https://example.com/\u{85}",
        "https://example.com/\u{a0}",
        "https://example.com/\u{3000}",
    ] {
        assert!(
            matches!(
                check(raw),
                Err(EndpointUrlError::ControlOrWhitespace { .. })
            ),
            "{raw:?}: {:?}",
            check(raw)
        );
    }
    assert_eq!(
        check("https://example.com/\n"),
        Err(EndpointUrlError::ControlOrWhitespace {
            offset: 20,
            found: '\n'
        })
    );
}

#[test]
fn refuses_each_structural_problem() {
    let at_limit = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES - 20));
    assert_eq!(at_limit.len(), MAX_URL_BYTES);
    assert!(check(&at_limit).is_ok());
    let over_limit = format!("{at_limit}a");
    assert_eq!(
        check(&over_limit),
        Err(EndpointUrlError::TooLong { len: 2049 })
    );
    // Short as typed, long as stored: each 'é' is percent-encoded into six bytes.
    let expands = format!("https://example.com/{}", "é".repeat(1000));
    assert!(expands.len() <= MAX_URL_BYTES);
    assert!(
        matches!(check(&expands), Err(EndpointUrlError::TooLong { len }) if len > MAX_URL_BYTES)
    );

    use url::ParseError;
    assert_eq!(
        check("not-a-url"),
        Err(EndpointUrlError::Unparseable(
            ParseError::RelativeUrlWithoutBase
        ))
    );
    assert_eq!(
        check("http://[::1/"),
        Err(EndpointUrlError::Unparseable(
            ParseError::InvalidIpv6Address
        ))
    );
    assert_eq!(
        check("https://example.com:99999/"),
        Err(EndpointUrlError::Unparseable(ParseError::InvalidPort))
    );
    assert!(matches!(
        check("http://[fe80::1%25eth0]/"),
        Err(EndpointUrlError::Unparseable(_))
    ));

    for (raw, scheme) in [
        ("ftp://example.com/", "ftp"),
        ("file:///etc/passwd", "file"),
        ("gopher://example.com/", "gopher"),
        ("javascript:alert(1)", "javascript"),
        ("ws://example.com/", "ws"),
    ] {
        assert_eq!(
            check(raw),
            Err(EndpointUrlError::UnsupportedScheme(scheme.into())),
            "{raw}"
        );
    }

    for raw in ["http://", "https:///", "http://:80/", "https://?x"] {
        assert_eq!(check(raw), Err(EndpointUrlError::MissingHost), "{raw}");
    }

    for raw in [
        "https://user:pass@example.com/",
        "https://user@example.com/",
        "https://:pass@example.com/",
        "https://token@127.0.0.1/",
    ] {
        assert_eq!(check(raw), Err(EndpointUrlError::Credentials), "{raw}");
    }

    let policy = AddressPolicy::default();
    assert_eq!(
        check_endpoint_url("http://example.com/", &policy, true),
        Err(EndpointUrlError::HttpsRequired)
    );
    assert!(check_endpoint_url("https://example.com/", &policy, true).is_ok());
}

#[test]
fn error_messages_are_single_lines_starting_with_url() {
    assert_eq!(
        check("ftp://example.com/").unwrap_err().to_string(),
        "url: scheme must be http or https, got ftp"
    );
    let errors = [
        check(&"x".repeat(3000)),
        check("https://example.com/\n"),
        check("not-a-url"),
        check("ftp://example.com/"),
        check_endpoint_url("http://example.com/", &AddressPolicy::default(), true),
        check("http://"),
        check("https://u:p@example.com/"),
        check("http://127.0.0.1/"),
    ];
    for error in errors {
        let message = error.unwrap_err().to_string();
        assert!(
            message.starts_with("url: ") && !message.contains('\n'),
            "{message:?}"
        );
    }
}

#[test]
fn ip_literal_target_check_ignores_names() {
    let policy = AddressPolicy::default();
    let url = |raw: &str| Url::parse(raw).unwrap();
    assert_eq!(
        check_ip_literal_target(&url("http://localhost/"), &policy),
        Ok(())
    );
    assert_eq!(
        check_ip_literal_target(&url("https://8.8.8.8/"), &policy),
        Ok(())
    );
    let refused = check_ip_literal_target(&url("http://[::ffff:7f00:1]/"), &policy);
    assert_eq!(refused.unwrap_err().class, "loopback");
}

#[tokio::test]
async fn resolver_refuses_localhost_unless_allowed() {
    let refusing = GuardedResolver::new(Arc::new(AddressPolicy::default()));
    let error = match refusing.resolve("localhost".parse().unwrap()).await {
        Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
        Err(error) => error,
    };
    let forbidden = error.downcast_ref::<ForbiddenResolution>().unwrap();
    assert_eq!(forbidden.host, "localhost");
    assert!(!forbidden.refused.is_empty());
    assert!(
        forbidden
            .refused
            .iter()
            .all(|refused| refused.class == "loopback")
    );
    let message = error.to_string();
    assert!(
        message.starts_with("localhost resolves only to forbidden addresses: "),
        "{message}"
    );
    assert!(message.contains("(loopback)"), "{message}");

    let allowing = GuardedResolver::new(Arc::new(nets(&["127.0.0.0/8", "::1/128"])));
    let addrs: Vec<SocketAddr> = allowing
        .resolve("localhost".parse().unwrap())
        .await
        .unwrap()
        .collect();
    assert!(!addrs.is_empty());
    assert!(
        addrs.iter().all(|addr| addr.ip().is_loopback()),
        "{addrs:?}"
    );
}

#[tokio::test]
async fn resolver_passes_public_names_through() {
    // A numeric name resolves without DNS, so this needs no network.
    let resolver = GuardedResolver::new(Arc::new(AddressPolicy::default()));
    let addrs: Vec<SocketAddr> = resolver
        .resolve("8.8.8.8".parse().unwrap())
        .await
        .unwrap()
        .collect();
    assert_eq!(addrs, vec!["8.8.8.8:0".parse().unwrap()]);
}

fn guarded_client(policy: AddressPolicy) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver::new(Arc::new(policy))))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Accepts one connection and answers its request with 204, using only
/// tokio's `net` feature (herald does not enable `io-util`).
async fn answer_one_request(listener: TcpListener) {
    let (stream, _) = listener.accept().await.unwrap();
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
        stream.readable().await.unwrap();
        match stream.try_read(&mut chunk) {
            Ok(0) => return,
            Ok(read) => request.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => panic!("read failed: {error}"),
        }
    }
    write_all(
        &stream,
        b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
    )
    .await;
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        stream.writable().await.unwrap();
        match stream.try_write(bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => panic!("write failed: {error}"),
        }
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut messages = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        messages.push(cause.to_string());
        source = cause.source();
    }
    messages.join(" <- ")
}

#[tokio::test]
async fn client_with_guarded_resolver_never_connects_to_refused_name() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = guarded_client(AddressPolicy::default());

    let error = client
        .get(format!("http://localhost:{port}/"))
        .send()
        .await
        .unwrap_err();
    let chain = error_chain(&error);
    assert!(
        chain.contains("localhost resolves only to forbidden addresses"),
        "{chain}"
    );

    // Any connection attempt would already sit in the accept backlog.
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(
        accepted.is_err(),
        "the listener saw a connection: {accepted:?}"
    );
}

#[tokio::test]
async fn client_with_guarded_resolver_reaches_allowed_name() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(answer_one_request(listener));
    let client = guarded_client(nets(&["127.0.0.0/8", "::1/128"]));

    let response = client
        .get(format!("http://localhost:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    server.await.unwrap();
}

/// reqwest skips the resolver for IP literals, so the resolver alone does
/// not stop them: the sender must call `check_ip_literal_target` itself.
#[tokio::test]
async fn ip_literal_bypasses_resolver_so_the_caller_must_check_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(answer_one_request(listener));
    let policy = AddressPolicy::default();
    let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();

    let refused = check_ip_literal_target(&url, &policy).unwrap_err();
    assert_eq!(refused.class, "loopback");

    let client = guarded_client(policy);
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    server.await.unwrap();
}
