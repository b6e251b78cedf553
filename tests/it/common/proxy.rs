//! The fault proxy: a TCP proxy a test puts between the sidecar and a peer (the broker, the
//! application, LocalStack, the OTLP collector) to break the network on purpose.
//!
//! It listens on a loopback port and forwards every connection to the upstream address. The test
//! switches its [`Mode`] at any time, for every connection at once: `Pass` forwards;
//! `Refuse` accepts new connections and resets them at once (the handshake completes, then an
//! RST: the peer sees "connection reset", as from a crashed listener) and resets open ones; `BlackHole` accepts and never answers (new and open connections alike: bytes are held,
//! not forwarded, until the mode changes; a peer sees timeouts, not refusals); `Latency(d)`
//! delays every chunk by `d`; `Bandwidth(b)` caps each direction at `b` bytes per second.
//! [`FaultProxy::reset_all`] resets the connections open now, mid-stream, whatever the mode;
//! [`FaultProxy::heal`] is `Pass`. It counts connections, resets and bytes, so a test can show
//! the fault really happened. Use it rather than writing another: later tests (new sources, new
//! targets) put it in front of whatever they talk to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Reset new and open connections at once.
    Refuse,
    /// Accept, hold every byte, answer nothing.
    BlackHole,
    /// Forward each chunk after this delay.
    Latency(Duration),
    /// Forward at most this many bytes per second in each direction.
    Bandwidth(u64),
}

/// What the proxy saw.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections it reset (refused, or reset mid-stream).
    pub resets: AtomicU64,
    /// Bytes forwarded, both directions.
    pub bytes: AtomicU64,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    kill: broadcast::Sender<()>,
    /// What it saw.
    pub counters: Arc<Counters>,
    stop: tokio_util::sync::CancellationToken,
}

impl FaultProxy {
    /// A proxy on a free loopback port forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fault proxy");
        Self::serve(listener, upstream)
    }

    /// A proxy on `listen` (reserved earlier, e.g. a port a broker advertises) to `upstream`.
    pub async fn start_on(listen: SocketAddr, upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind(listen).await.expect("bind the fault proxy");
        Self::serve(listener, upstream)
    }

    fn serve(listener: TcpListener, upstream: SocketAddr) -> FaultProxy {
        let addr = listener.local_addr().expect("proxy address");
        let (mode, _) = watch::channel(Mode::Pass);
        let (kill, _) = broadcast::channel(16);
        let counters = Arc::new(Counters::default());
        let stop = tokio_util::sync::CancellationToken::new();
        let (modes, kills, seen, stopped) = (mode.clone(), kill.clone(), counters.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stopped.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                seen.connections.fetch_add(1, Ordering::Relaxed);
                if *modes.borrow() == Mode::Refuse {
                    reset(client, &seen);
                    continue;
                }
                let (modes, kill, seen, stopped) =
                    (modes.subscribe(), kills.subscribe(), seen.clone(), stopped.clone());
                tokio::spawn(connection(client, upstream, modes, kill, seen, stopped));
            }
        });
        FaultProxy { addr, mode, kill, counters, stop }
    }

    /// Switches the mode for every connection.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
        if mode == Mode::Refuse {
            self.reset_all();
        }
    }

    /// Back to forwarding everything.
    pub fn heal(&self) {
        self.set(Mode::Pass);
    }

    /// The mode now.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Resets every connection open now (mid-stream).
    pub fn reset_all(&self) {
        drop(self.kill.send(()));
    }

    /// `host:port` of the proxy, for URLs and bootstrap lists.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Resets it caused so far.
    pub fn resets(&self) -> u64 {
        self.counters.resets.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.reset_all();
    }
}

/// Closes a connection with a reset (SO_LINGER 0) rather than an orderly FIN.
fn reset(stream: TcpStream, counters: &Counters) {
    counters.resets.fetch_add(1, Ordering::Relaxed);
    drop(stream.set_zero_linger());
    drop(stream);
}

async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    modes: watch::Receiver<Mode>,
    mut kill: broadcast::Receiver<()>,
    counters: Arc<Counters>,
    stop: tokio_util::sync::CancellationToken,
) {
    let server = match TcpStream::connect(upstream).await {
        Ok(server) => server,
        Err(_) => return reset(client, &counters),
    };
    drop(client.set_nodelay(true));
    drop(server.set_nodelay(true));
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let killed = {
        let up = pump(&mut client_read, &mut server_write, modes.clone(), &counters);
        let down = pump(&mut server_read, &mut client_write, modes, &counters);
        tokio::select! {
            _ = futures::future::join(up, down) => false,
            _ = kill.recv() => true,
            () = stop.cancelled() => true,
        }
    };
    if killed {
        // A reset, not an orderly close: both peers see the connection torn down mid-stream.
        // The halves are joined again first: dropping a write half would send a FIN before the
        // reset, and the peer would read an orderly end of stream.
        counters.resets.fetch_add(1, Ordering::Relaxed);
        let joined = [client_read.reunite(client_write), server_read.reunite(server_write)];
        for stream in joined.into_iter().flatten() {
            drop(stream.set_zero_linger());
        }
    }
}

/// Forwards one direction as the mode says, until the reader closes (then passes the close on).
async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    mut modes: watch::Receiver<Mode>,
    counters: &Counters,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                drop(to.shutdown().await);
                return;
            }
            Ok(n) => n,
        };
        // Hold the bytes while the path is a black hole; refused paths are reset by the owner.
        loop {
            let mode = *modes.borrow_and_update();
            match mode {
                Mode::BlackHole => {
                    if modes.changed().await.is_err() {
                        return;
                    }
                }
                Mode::Refuse => return,
                Mode::Latency(delay) => {
                    tokio::time::sleep(delay).await;
                    break;
                }
                Mode::Bandwidth(rate) => {
                    let seconds = n as f64 / rate.max(1) as f64;
                    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                    break;
                }
                Mode::Pass => break,
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn the_proxy_forwards_holds_and_resets() {
    // An echo server upstream.
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let proxy = FaultProxy::start(upstream).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut reply = [0u8; 4];
    client.write_all(b"ping").await.unwrap();
    client.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"ping");

    proxy.set(Mode::BlackHole);
    client.write_all(b"held").await.unwrap();
    let held = tokio::time::timeout(Duration::from_millis(300), client.read_exact(&mut reply)).await;
    assert!(held.is_err(), "a black hole answers nothing");
    proxy.heal();
    client.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"held", "held bytes go on when healed");

    proxy.reset_all();
    let after = tokio::time::timeout(Duration::from_secs(2), client.read(&mut reply)).await.unwrap();
    let kind = after.map_err(|err| err.kind());
    assert_eq!(kind, Err(std::io::ErrorKind::ConnectionReset), "a reset, not an orderly close");
    proxy.set(Mode::Refuse);
    let mut refused = TcpStream::connect(proxy.addr).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(2), refused.read(&mut reply)).await.unwrap();
    let kind = read.map_err(|err| err.kind());
    assert_eq!(kind, Err(std::io::ErrorKind::ConnectionReset), "refused with a reset");
    assert!(proxy.resets() >= 2);
}
