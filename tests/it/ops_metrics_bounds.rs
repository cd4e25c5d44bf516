//! `metrics.listen` under hostile clients: connections bounded by `metrics.header_timeout`,
//! `metrics.idle_timeout` and `metrics.max_connections`, seen from raw TCP sockets.

use std::net::SocketAddr;
use std::time::Duration;

use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use herald::Notification;

use crate::support::daemon::Daemon;
use crate::support::receiver::Receiver;
use crate::support::scrape::{get, wait_for_status};
use crate::support::{endpoint_at, migrated, wait_for_sql, wait_until};

const REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n";
/// A request whose head never ends (no blank line): a slowloris.
const HALF_REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: herald\r\n";

/// A daemon serving the endpoints on a fresh address with these bounds.
async fn daemon(pool: &PgPool, header: &str, idle: &str, max: &str) -> (Daemon, SocketAddr) {
    migrated(pool.clone()).await;
    let (daemon, addr) = Daemon::listening(
        pool,
        &[],
        &[
            ("HERALD_METRICS__HEADER_TIMEOUT", header),
            ("HERALD_METRICS__IDLE_TIMEOUT", idle),
            ("HERALD_METRICS__MAX_CONNECTIONS", max),
        ],
    );
    wait_for_status(addr, "/healthz", 200).await;
    (daemon, addr)
}

async fn stop(daemon: Daemon) {
    daemon.terminate().await;
    assert_eq!(daemon.wait(Duration::from_secs(60)).await.code, 0);
}

/// Waits until the server closes `socket` (end of stream, or a reset); fails the test after
/// 30 s. Returns whatever arrived before.
async fn closed(socket: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.read(&mut chunk)).await {
            Err(_) => panic!(
                "the server kept the connection open; it sent {:?}",
                String::from_utf8_lossy(&seen)
            ),
            Ok(Ok(0) | Err(_)) => return seen,
            Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads one `/healthz` answer off `socket`: the whole response, ending in its body.
async fn answer(socket: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    while !seen.ends_with(b"\r\n\r\nok\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), socket.read(&mut chunk))
            .await
            .expect("an answer within 30 s")
            .expect("the connection stays up");
        assert!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(seen).unwrap()
}

/// Connections that completed the handshake but wait in `addr`'s listen backlog, not yet
/// accepted: for a listening socket the kernel shows them as its receive queue.
fn backlog(addr: SocketAddr) -> usize {
    let SocketAddr::V4(v4) = addr else {
        panic!("the tests listen on IPv4")
    };
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields[1] == local && fields[3] == "0A")
        .map(|fields| {
            let (_, rx) = fields[4].split_once(':').unwrap();
            usize::from_str_radix(rx, 16).unwrap()
        })
        .unwrap_or(0)
}

#[sqlx::test(migrations = false)]
async fn a_request_head_that_never_ends_is_cut_after_header_timeout(pool: PgPool) {
    let (daemon, addr) = daemon(&pool, "500ms", "1h", "64").await;
    let started = Instant::now();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(HALF_REQUEST).await.unwrap();
    let sent = closed(&mut slow).await;
    assert!(sent.is_empty(), "{:?}", String::from_utf8_lossy(&sent));
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(get(addr, "/healthz").await, Some((200, "ok\n".into())));
    stop(daemon).await;
}

#[sqlx::test(migrations = false)]
async fn an_idle_keep_alive_connection_is_cut_after_idle_timeout(pool: PgPool) {
    let (daemon, addr) = daemon(&pool, "1h", "500ms", "64").await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(REQUEST).await.unwrap();
    let response = answer(&mut client).await;
    let answered = Instant::now();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        !response.to_lowercase().contains("connection: close"),
        "{response}"
    );
    assert!(closed(&mut client).await.is_empty());
    // The server starts its idle clock once it has written the answer, a moment before this
    // client has read it, so the close may come slightly less than 500 ms after `answered`;
    // what matters is that the connection was kept for about the idle timeout, not cut at once.
    assert!(
        answered.elapsed() >= Duration::from_millis(400),
        "{:?}",
        answered.elapsed()
    );
    stop(daemon).await;
}

/// `header_timeout` bounds a request's head, not the wait for the next request on a connection
/// that has been served.
#[sqlx::test(migrations = false)]
async fn a_served_connection_outlives_header_timeout_while_idle(pool: PgPool) {
    let (daemon, addr) = daemon(&pool, "300ms", "1h", "64").await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(REQUEST).await.unwrap();
    assert!(answer(&mut client).await.starts_with("HTTP/1.1 200 OK\r\n"));
    // Idle for twice the header timeout: proving a close that does not come takes a window.
    let mut byte = [0u8; 1];
    let idle = tokio::time::timeout(Duration::from_millis(600), client.peek(&mut byte)).await;
    assert!(idle.is_err(), "the idle connection was closed: {idle:?}");
    client.write_all(REQUEST).await.unwrap();
    assert!(answer(&mut client).await.starts_with("HTTP/1.1 200 OK\r\n"));
    stop(daemon).await;
}

#[sqlx::test(migrations = false)]
async fn beyond_max_connections_the_next_waits_in_the_backlog_until_one_closes(pool: PgPool) {
    let (daemon, addr) = daemon(&pool, "1h", "1h", "2").await;
    // Two connections served and held open (keep-alive, idle).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        socket.write_all(REQUEST).await.unwrap();
        answer(&mut socket).await;
        held.push(socket);
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(REQUEST).await.unwrap();
    wait_until("the third connection to wait unaccepted", || {
        backlog(addr) == 1
    })
    .await;
    // The kernel holds it there for a moment under any server; it must stay unanswered. Proving
    // an answer that does not come takes a window.
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.peek(&mut byte)).await;
    assert!(early.is_err(), "served beyond max_connections: {early:?}");
    assert_eq!(backlog(addr), 1);
    drop(held.pop());
    assert!(answer(&mut third).await.starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(backlog(addr), 0);
    stop(daemon).await;
}

#[sqlx::test(migrations = false)]
async fn once_slowloris_connections_are_cut_healthz_answers_again(pool: PgPool) {
    let (daemon, addr) = daemon(&pool, "1s", "1h", "2").await;
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        socket.write_all(HALF_REQUEST).await.unwrap();
        slow.push(socket);
    }
    wait_until("all but two slowloris to wait unaccepted", || {
        backlog(addr) >= 18
    })
    .await;
    // Answered once every slowloris ahead of it has had its second.
    assert_eq!(get(addr, "/healthz").await, Some((200, "ok\n".into())));
    for socket in &mut slow {
        assert!(closed(socket).await.is_empty());
    }
    stop(daemon).await;
}

/// Descriptors the process `pid` holds.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// A flood of connections costs the daemon at most `max_connections` descriptors, and deliveries
/// go on meanwhile.
#[sqlx::test(migrations = false)]
async fn a_connection_flood_takes_no_descriptors_beyond_max_connections(pool: PgPool) {
    let (daemon, addr) = daemon(&pool, "1h", "1h", "4").await;
    let pid = daemon.pid().expect("running");
    let before = descriptors(pid);
    let mut flood = Vec::new();
    // Within the listen backlog (128): past it the kernel drops further handshakes.
    for _ in 0..100 {
        let socket = TcpStream::connect(addr).await.unwrap();
        flood.push(socket);
    }
    wait_until("all but four to wait unaccepted", || backlog(addr) == 96).await;
    let during = descriptors(pid);
    // Four connections, and a margin for the pool and the HTTP client opening theirs.
    assert!(during < before + 30, "{before} descriptors, then {during}");

    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint_at(&pool, "default", &receiver.url()).await;
    herald::enqueue(&pool, &Notification::webhook("u", "t", "b", hook))
        .await
        .unwrap();
    wait_for_sql(
        &pool,
        "the delivery",
        "select count(*) = 1 from herald.notifications where state = 'delivered'",
    )
    .await;
    drop(flood);
    stop(daemon).await;
}
