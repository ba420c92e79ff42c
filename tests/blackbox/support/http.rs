//! A minimal HTTP/1.1 client for the examples' endpoints: plain std sockets with timeouts, so a
//! test sees exactly what the app answered (or that nothing listens).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::{DEADLINE, Running};

/// A connection to 127.0.0.1:`port`, every read and write with a timeout.
pub fn connect(port: u16) -> std::io::Result<TcpStream> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
    // uvicorn's parent binds the socket before its workers can accept: a request may wait in
    // the backlog while they start.
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

/// One HTTP/1.1 GET on `stream`: the status code and the body (read to its Content-Length, so
/// a keep-alive connection stays usable).
pub fn exchange(
    stream: &mut TcpStream,
    port: u16,
    path: &str,
    keep_alive: bool,
) -> std::io::Result<(u16, String)> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\
         Connection: {connection}\r\n\r\n"
    )?;
    let mut reader = BufReader::new(&*stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line: {status_line:?}")))?;
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Err(std::io::Error::other("the connection closed in the head"));
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value
                .trim()
                .parse()
                .map_err(|_| std::io::Error::other(format!("bad {header:?}")))?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// GET `path` on a fresh connection.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    exchange(&mut connect(port)?, port, path, false)
}

/// GETs `path` until the app answers (connection refused while roadie waits and migrates),
/// failing with roadie's output at the deadline.
pub fn get(r: &Running, port: u16, path: &str) -> (u16, String) {
    let until = Instant::now() + DEADLINE;
    loop {
        match http_get(port, path) {
            Ok(response) => return response,
            Err(e) if Instant::now() > until => r.fail(&format!(
                "GET {path} on port {port}: no answer in time: {e}"
            )),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}
