//! Reading HTTP/1.1 requests off a raw TCP socket, for receivers that must misbehave in ways a
//! framework will not (read a request whole, then hang up or answer too late).

use std::collections::HashMap;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// One request: header names lowercased, the body as sent.
#[derive(Debug)]
pub struct RawRequest {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// What reading a request gave.
#[derive(Debug)]
pub enum Read {
    Request(RawRequest),
    /// The connection ended, before or inside a request: the sender hung up (or died).
    Closed,
    /// Headers arrived whole but cannot be a request herald would send (no usable
    /// `content-length`, headers that are not UTF-8).
    Malformed,
}

/// Reads one request (keep-alive: call again for the next). No pipelining: herald's HTTP
/// client sends one request at a time per connection.
pub async fn read_request(socket: &mut TcpStream) -> Read {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return Read::Closed,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Read::Malformed;
    };
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let Some(length) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return Read::Malformed;
    };
    let mut body = buf[end + 4..].to_vec();
    while body.len() < length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return Read::Closed,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(length);
    Read::Request(RawRequest { headers, body })
}
