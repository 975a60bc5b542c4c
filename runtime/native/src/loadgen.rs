//! A fixed-rate HTTP/1.1 load generator for the benchmarks (`fixedRateLoad`): the latency a
//! proxy adds at a fixed request rate is a fraction of a millisecond, below what a load
//! generator on Node's event loop can resolve.
//!
//! Open loop, as wrk2 and fortio are: request `i` is due at `start + i / rate`, spread over
//! `connections` keep-alive connections (connection `k` sends requests `k`, `k + connections`,
//! ...), each on its own OS thread with blocking sockets and `clock_nanosleep`-precise
//! sleeps, so no event loop or timer wheel sits between a due time and the send. Each request's
//! latency is measured from when it was sent to its response's last byte; how late sends were
//! against their due time is reported apart (`lateP99Us`): a generator that falls behind
//! shows there instead of hiding in the latencies. Bounded: stops after `seconds`; a request
//! without an answer within 5 s is an error. The raw samples go back to the caller, which
//! summarizes them as every other benchmark row is (`runtime/src/bench/stats.ts`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use napi::bindgen_prelude::*;
use napi_derive::napi;

const IO_TIMEOUT: Duration = Duration::from_secs(5);

struct Worker {
    latencies_us: Vec<u64>,
    late_us: Vec<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Reads one response (status line, headers, `content-length` body) from `s`; Ok(status).
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed before a response"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| std::io::Error::other("response head is not UTF-8"))?;
    let status = head.get(9..12).and_then(|c| c.parse::<u16>().ok()).ok_or_else(|| std::io::Error::other("no status line"))?;
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .ok_or_else(|| std::io::Error::other("the response has no content-length (the generator reads only framed bodies)"))?;
    let mut have = buf.len() - head_end;
    while have < length {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed inside a body"));
        }
        have += n;
    }
    Ok(status)
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

fn run_worker(addr: SocketAddr, request: Vec<u8>, start: Instant, period: Duration, first: u64, step: u64, total: u64) -> Worker {
    let mut w = Worker { latencies_us: Vec::new(), late_us: Vec::new(), ok: 0, errors: 0, first_error: None };
    // Opened before the clock starts (`start` is 50 ms out), so the first request does not pay for it.
    let mut conn: Option<TcpStream> = connect(addr).ok();
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut i = first;
    while i < total {
        let due = start + period * (i as u32);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let sent = Instant::now();
        w.late_us.push(sent.saturating_duration_since(due).as_micros() as u64);
        let result = (|| -> std::io::Result<u16> {
            if conn.is_none() {
                conn = Some(connect(addr)?);
            }
            let s = conn.as_mut().unwrap();
            s.write_all(&request)?;
            read_response(s, &mut buf)
        })();
        let took = sent.elapsed().as_micros() as u64;
        match result {
            Ok(200) => {
                w.ok += 1;
                w.latencies_us.push(took);
            }
            Ok(status) => {
                w.errors += 1;
                w.first_error.get_or_insert_with(|| format!("status {status}"));
            }
            Err(e) => {
                w.errors += 1;
                w.first_error.get_or_insert_with(|| e.to_string());
                conn = None;
            }
        }
        i += step;
    }
    w
}

/// Sends `rate` GET requests per second to `host:port` `path` for `seconds`, over `connections`
/// keep-alive connections. Returns JSON: `{ sent, ok, errors, firstError, latenciesUs, lateUs }`:
/// the latency of each answered request from its send, and how late each send was.
#[napi]
pub fn fixed_rate_load(host: String, port: u32, path: String, rate: u32, seconds: u32, connections: u32) -> Result<String> {
    let ip = host.parse().map_err(|_| Error::from_reason(format!("{host} is not an IP address")))?;
    let port = u16::try_from(port).map_err(|_| Error::from_reason(format!("port {port} is out of range")))?;
    if rate == 0 || seconds == 0 || connections == 0 || rate > 1_000_000 || seconds > 600 {
        return Err(Error::from_reason("rate (1..1e6 per s), seconds (1..600) and connections (1..) must be positive"));
    }
    let addr = SocketAddr::new(ip, port);
    let request = format!("GET {path} HTTP/1.1\r\nhost: {host}:{port}\r\nuser-agent: ambit-bench\r\n\r\n").into_bytes();
    let period = Duration::from_nanos(1_000_000_000 / rate as u64);
    let total = rate as u64 * seconds as u64;
    let start = Instant::now() + Duration::from_millis(50);
    let workers: Vec<_> = (0..connections as u64)
        .map(|k| {
            let request = request.clone();
            std::thread::Builder::new()
                .name(format!("loadgen-{k}"))
                .spawn(move || run_worker(addr, request, start, period, k, connections as u64, total))
        })
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::from_reason(format!("starting the generator threads: {e}")))?;
    let mut latencies = Vec::with_capacity(total as usize);
    let mut late = Vec::with_capacity(total as usize);
    let (mut ok, mut errors, mut first_error) = (0, 0, None::<String>);
    for h in workers {
        let w = h.join().map_err(|_| Error::from_reason("a generator thread panicked"))?;
        latencies.extend(w.latencies_us);
        late.extend(w.late_us);
        ok += w.ok;
        errors += w.errors;
        if first_error.is_none() {
            first_error = w.first_error;
        }
    }
    Ok(serde_json::json!({
        "sent": total,
        "ok": ok,
        "errors": errors,
        "firstError": first_error,
        "latenciesUs": latencies,
        "lateUs": late,
    })
    .to_string())
}
