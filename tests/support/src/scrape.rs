//! Reading the daemon's operator endpoints (`metrics.listen`) the way Prometheus and a
//! load balancer do: plain HTTP GETs.

use std::net::SocketAddr;
use std::time::Duration;

/// An address on loopback that nothing listens on right now.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `GET http://addr/path`: the status and body, or `None` when nothing answers.
pub async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .unwrap();
    let response = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Polls `path` until it answers `status`; returns the body. Fails the test after 60 s.
pub async fn wait_for_status(addr: SocketAddr, path: &str, status: u16) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answer = get(addr, path).await;
        if let Some((code, body)) = &answer
            && *code == status
        {
            return body.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never answered {status}; last answer: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the sample `series` (name with its labels, exactly as exposed), if present.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}
