//! ICE over TCP (RFC 6544) for networks that block UDP: the relay's passive TCP host
//! candidates. A browser connects to `server.webrtc_tcp`; each connection then carries one
//! viewer's STUN, DTLS and SRTP packets, each preceded by its length (RFC 4571,
//! [`framing`](super::framing)).
//!
//! The socket work is here: one accept task, and a reader and a writer task per connection.
//! The driver owns the table of connections ([`Connections`]) and so the routing: a
//! connection's first packet must be a STUN request that a session accepts (its ICE
//! credentials), which binds the connection to that session; str0m's TCP transmits go to
//! the connection of their (source, destination) addresses.
//!
//! The driver never waits on a socket. Packets reach a writer through a queue bounded in
//! bytes ([`QUEUE_BYTES`]): past it a slow viewer's packets are dropped, as UDP would lose
//! them (`panoptes_live_datagrams_dropped_total`; the browser asks again or resyncs), and a
//! connection that stays full for [`SLOW_CLOSE`] or whose writes stall for [`WRITE_STALL`]
//! is closed. Limits: [`MAX_CONNECTIONS`] open connections, [`MAX_UNBOUND_PER_IP`] not yet
//! bound from one IP, [`BIND_TIMEOUT`] to bind, [`MAX_INBOUND_FRAME`] bytes per frame from
//! the browser (which sends only STUN, DTLS and RTCP of at most an MTU).
//!
//! Metrics: `panoptes_live_tcp_connections` (gauge), and
//! `panoptes_live_tcp_connections_closed_total{reason}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use str0m::net::Transmit;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::framing::{self, FrameDecoder};

/// Open connections at most; more are refused at accept.
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections from one IP that have not yet sent an accepted STUN request.
pub const MAX_UNBOUND_PER_IP: usize = 16;
/// Time a connection has to send an accepted STUN request.
pub const BIND_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame taken from a browser. Browsers send STUN, DTLS and RTCP packets of at
/// most an MTU; a larger length is garbage (an HTTP request announces ~18 KB).
pub const MAX_INBOUND_FRAME: usize = 8 * 1024;
/// Bytes queued for one connection's writer; packets past it are dropped. Room for the
/// fast-start burst of a 4 Mbit/s stream with 2 s GOPs (~1 MB) while the kernel's send
/// buffer grows, and a bound on the delay a link slower than the stream builds up before
/// packets are dropped (~8 s at 2 Mbit/s; then [`SLOW_CLOSE`] applies).
pub const QUEUE_BYTES: usize = 2 * 1024 * 1024;
/// A connection whose queue stays over half full, dropping, this long is closed.
pub const SLOW_CLOSE: Duration = Duration::from_secs(10);
/// A write that does not finish in this time closes the connection.
pub const WRITE_STALL: Duration = Duration::from_secs(10);
/// Bytes read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes a writer gathers from its queue into one write.
const WRITE_BATCH: usize = 64 * 1024;

const CLOSED: &str = "panoptes_live_tcp_connections_closed_total";
const OPEN: &str = "panoptes_live_tcp_connections";

/// A connection's number.
pub(crate) type ConnId = u64;

/// Why a connection was closed (the metric's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The browser closed it, or the socket failed.
    Peer,
    /// A frame length over [`MAX_INBOUND_FRAME`].
    Framing,
    /// A first packet that is not STUN, DTLS or RTP.
    Garbage,
    /// A first packet that no session accepts.
    Unrouted,
    /// No accepted STUN request within [`BIND_TIMEOUT`].
    Unbound,
    /// Over a connection limit.
    Limit,
    /// Its queue stayed full (dropping) for [`SLOW_CLOSE`].
    Slow,
    /// A write took longer than [`WRITE_STALL`].
    Stalled,
    /// Its session ended.
    SessionEnded,
}

impl CloseReason {
    fn label(self) -> &'static str {
        match self {
            CloseReason::Peer => "peer",
            CloseReason::Framing => "framing",
            CloseReason::Garbage => "garbage",
            CloseReason::Unrouted => "unrouted",
            CloseReason::Unbound => "unbound",
            CloseReason::Limit => "limit",
            CloseReason::Slow => "slow",
            CloseReason::Stalled => "stalled",
            CloseReason::SessionEnded => "session_ended",
        }
    }

    /// Whether the writer may first send what is queued (a DTLS close alert).
    fn graceful(self) -> bool {
        self == CloseReason::SessionEnded
    }
}

/// What the connection tasks tell the driver.
pub(crate) enum TcpEvent {
    /// A new connection (sent before any of its frames).
    Opened(Connection),
    /// One packet received, without its length prefix (never empty).
    Frame { conn: ConnId, data: Vec<u8>, at: Instant },
    /// The connection's reader or writer ended.
    Closed { conn: ConnId, reason: CloseReason },
}

/// The driver's side of a connection. Dropping it lets the writer send what is queued
/// and close the connection.
pub(crate) struct Connection {
    id: ConnId,
    peer: SocketAddr,
    /// The socket's local address (the IP the browser connected to).
    local: SocketAddr,
    out: mpsc::UnboundedSender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    abort: CancellationToken,
    opened: Instant,
    /// Our candidate it reached (set when the driver takes it).
    candidate: SocketAddr,
    /// The session it carries, once its first STUN request was accepted.
    session: Option<String>,
    /// Since when its queue has been full.
    full_since: Option<Instant>,
    dropped: u64,
}

/// What happened to a transmit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Queued for the writer (its length).
    Queued(usize),
    /// Dropped: the viewer is not keeping up.
    Dropped,
    /// No connection for its addresses (closed meanwhile).
    NoRoute,
}

/// The driver's table of TCP connections.
pub(crate) struct Connections {
    conns: HashMap<ConnId, Connection>,
    /// (our candidate, peer) → connection: how str0m's transmits find theirs.
    routes: HashMap<(SocketAddr, SocketAddr), ConnId>,
    /// Our TCP candidates, and the bound address as the last resort.
    candidates: Vec<SocketAddr>,
    bound: Option<SocketAddr>,
}

impl Connections {
    pub(crate) fn new(candidates: Vec<SocketAddr>, bound: Option<SocketAddr>) -> Connections {
        Connections { conns: HashMap::new(), routes: HashMap::new(), candidates, bound }
    }

    /// Takes a new connection, unless its IP has too many unbound ones.
    pub(crate) fn open(&mut self, mut conn: Connection) {
        conn.candidate = super::driver::local_candidate(
            &self.candidates,
            self.bound.unwrap_or(conn.local),
            Some(conn.local),
            conn.peer,
        );
        let unbound =
            self.conns.values().filter(|c| c.session.is_none() && c.peer.ip() == conn.peer.ip()).count();
        let id = conn.id;
        tracing::debug!(peer = %conn.peer, candidate = %conn.candidate, "ICE-TCP connection opened");
        self.routes.insert((conn.candidate, conn.peer), id);
        self.conns.insert(id, conn);
        metrics::gauge!(OPEN).increment(1.0);
        if unbound >= MAX_UNBOUND_PER_IP {
            self.close(id, CloseReason::Limit);
        }
    }

    /// A connection's addresses for str0m: (peer, our candidate), and its session if bound.
    pub(crate) fn addresses(&self, id: ConnId) -> Option<(SocketAddr, SocketAddr, Option<&str>)> {
        self.conns.get(&id).map(|c| (c.peer, c.candidate, c.session.as_deref()))
    }

    /// Binds a connection to the session that accepted its STUN request.
    pub(crate) fn bind(&mut self, id: ConnId, session: &str) {
        if let Some(c) = self.conns.get_mut(&id) {
            tracing::debug!(peer = %c.peer, candidate = %c.candidate, "ICE-TCP connection bound to a session");
            c.session = Some(session.to_owned());
        }
    }

    /// Queues a TCP transmit on its connection, or drops it.
    pub(crate) fn send(&mut self, t: Transmit, now: Instant) -> Sent {
        let Some(c) = self.routes.get(&(t.source, t.destination)).and_then(|id| self.conns.get_mut(id))
        else {
            return Sent::NoRoute;
        };
        let len = t.contents.len();
        let queued = c.queued.load(Ordering::Relaxed);
        if queued + len > QUEUE_BYTES {
            c.dropped += 1;
            if c.full_since.is_none() {
                c.full_since = Some(now);
                tracing::warn!(peer = %c.peer, queued, "ICE-TCP viewer is not keeping up: dropping its packets");
            }
            return Sent::Dropped;
        }
        if queued < QUEUE_BYTES / 2 {
            c.full_since = None;
        }
        c.queued.fetch_add(len, Ordering::Relaxed);
        if c.out.send(Vec::from(t.contents)).is_err() {
            // The writer ended; its Closed event is on the way.
            c.queued.fetch_sub(len, Ordering::Relaxed);
            return Sent::Dropped;
        }
        Sent::Queued(len)
    }

    /// Closes a connection: at once, or after its queue for a graceful reason.
    pub(crate) fn close(&mut self, id: ConnId, reason: CloseReason) {
        let Some(c) = self.conns.remove(&id) else { return };
        if self.routes.get(&(c.candidate, c.peer)) == Some(&id) {
            self.routes.remove(&(c.candidate, c.peer));
        }
        if !reason.graceful() {
            c.abort.cancel();
        }
        metrics::gauge!(OPEN).decrement(1.0);
        metrics::counter!(CLOSED, "reason" => reason.label()).increment(1);
        let age = c.opened.elapsed().as_secs_f64();
        match reason {
            CloseReason::Slow | CloseReason::Stalled | CloseReason::Limit => {
                tracing::warn!(peer = %c.peer, reason = reason.label(), dropped = c.dropped, age, "ICE-TCP connection closed");
            }
            _ => {
                tracing::debug!(peer = %c.peer, reason = reason.label(), dropped = c.dropped, age, "ICE-TCP connection closed");
            }
        }
    }

    /// Closes the connections of a session that ended.
    pub(crate) fn close_session(&mut self, session: &str) {
        let ids: Vec<ConnId> =
            self.conns.values().filter(|c| c.session.as_deref() == Some(session)).map(|c| c.id).collect();
        for id in ids {
            self.close(id, CloseReason::SessionEnded);
        }
    }

    /// Closes connections that never bound, and slow ones.
    pub(crate) fn tick(&mut self, now: Instant) {
        let due: Vec<(ConnId, CloseReason)> = self
            .conns
            .values()
            .filter_map(|c| {
                if c.session.is_none() && now.saturating_duration_since(c.opened) > BIND_TIMEOUT {
                    Some((c.id, CloseReason::Unbound))
                } else if c.full_since.is_some_and(|t| now.saturating_duration_since(t) > SLOW_CLOSE) {
                    Some((c.id, CloseReason::Slow))
                } else {
                    None
                }
            })
            .collect();
        for (id, reason) in due {
            self.close(id, reason);
        }
    }

    /// Open connections.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }
}

/// Accepts connections until `cancel` fires, each announced to the driver on `events`
/// before its reader starts.
pub(crate) async fn listen(listener: TcpListener, events: mpsc::Sender<TcpEvent>, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut next: ConnId = 0;
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(error = %e, "ICE-TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!(CLOSED, "reason" => CloseReason::Limit.label()).increment(1);
            tracing::warn!(%peer, "ICE-TCP connection refused: {MAX_CONNECTIONS} are open");
            continue;
        };
        let Ok(local) = stream.local_addr() else { continue };
        // Small packets (STUN replies, RTCP) must not wait for more.
        let _ = stream.set_nodelay(true);
        next += 1;
        let (read, write) = stream.into_split();
        let (out, packets) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let abort = cancel.child_token();
        let conn = Connection {
            id: next,
            peer,
            local,
            out,
            queued: queued.clone(),
            abort: abort.clone(),
            opened: Instant::now(),
            candidate: local,
            session: None,
            full_since: None,
            dropped: 0,
        };
        if events.send(TcpEvent::Opened(conn)).await.is_err() {
            return;
        }
        tokio::spawn(read_loop(next, read, events.clone(), abort.clone(), slot));
        tokio::spawn(write_loop(next, write, packets, queued, events.clone(), abort));
    }
}

/// Reads frames and hands them to the driver until the peer closes, a frame is too long
/// or the connection is aborted. Holds the connection's slot.
async fn read_loop(
    id: ConnId,
    mut read: OwnedReadHalf,
    events: mpsc::Sender<TcpEvent>,
    abort: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let mut decoder = FrameDecoder::new(MAX_INBOUND_FRAME);
    let mut buf = vec![0u8; READ_CHUNK];
    let reason = 'conn: loop {
        let n = tokio::select! {
            _ = abort.cancelled() => return,
            r = read.read(&mut buf) => r,
        };
        match n {
            Ok(0) | Err(_) => break CloseReason::Peer,
            Ok(n) => decoder.push(buf.get(..n).unwrap_or_default()),
        }
        while let Some(frame) = decoder.next_frame() {
            let data = match frame {
                Ok([]) => continue,
                Ok(f) => f.to_vec(),
                Err(e) => {
                    tracing::debug!(error = %e, "ICE-TCP stream is not RFC 4571 framing");
                    break 'conn CloseReason::Framing;
                }
            };
            if events.send(TcpEvent::Frame { conn: id, data, at: Instant::now() }).await.is_err() {
                return;
            }
        }
    };
    abort.cancel();
    let _ = events.send(TcpEvent::Closed { conn: id, reason }).await;
}

/// Writes queued packets with their length prefix, several per write, until the driver
/// drops its side (then the queue is flushed and the connection shut down), a write fails
/// or stalls, or the connection is aborted.
async fn write_loop(
    id: ConnId,
    mut write: OwnedWriteHalf,
    mut packets: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    events: mpsc::Sender<TcpEvent>,
    abort: CancellationToken,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let reason = loop {
        let first = tokio::select! {
            _ = abort.cancelled() => return,
            p = packets.recv() => p,
        };
        let Some(first) = first else {
            // The driver let go: everything queued is written.
            let _ = tokio::time::timeout(WRITE_STALL, write.shutdown()).await;
            abort.cancel();
            return;
        };
        batch.clear();
        let mut taken = 0;
        let mut next = Some(first);
        while let Some(p) = next.take() {
            taken += p.len();
            if let Err(e) = framing::encode(&p, &mut batch) {
                tracing::debug!(error = %e, "ICE-TCP packet dropped");
            }
            if batch.len() < WRITE_BATCH {
                next = packets.try_recv().ok();
            }
        }
        let wrote = tokio::select! {
            _ = abort.cancelled() => return,
            r = tokio::time::timeout(WRITE_STALL, write.write_all(&batch)) => r,
        };
        queued.fetch_sub(taken, Ordering::Relaxed);
        match wrote {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break CloseReason::Peer,
            Err(_) => break CloseReason::Stalled,
        }
    };
    abort.cancel();
    let _ = events.send(TcpEvent::Closed { conn: id, reason }).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::net::Protocol;

    fn connection(id: ConnId, peer: SocketAddr) -> (Connection, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (out, rx) = mpsc::unbounded_channel();
        let local = SocketAddr::from(([127, 0, 0, 1], 8189));
        let c = Connection {
            id,
            peer,
            local,
            out,
            queued: Arc::default(),
            abort: CancellationToken::new(),
            opened: Instant::now(),
            candidate: local,
            session: None,
            full_since: None,
            dropped: 0,
        };
        (c, rx)
    }

    fn transmit(source: SocketAddr, destination: SocketAddr, len: usize) -> Transmit {
        Transmit { proto: Protocol::Tcp, source, destination, contents: vec![0x80; len].into() }
    }

    #[test]
    fn transmits_reach_their_connection_and_a_full_queue_drops() {
        let ours = SocketAddr::from(([127, 0, 0, 1], 8189));
        let (a, b) = (SocketAddr::from(([127, 0, 0, 1], 40000)), SocketAddr::from(([127, 0, 0, 1], 40001)));
        let mut t = Connections::new(vec![ours], Some(SocketAddr::from(([0, 0, 0, 0], 8189))));
        let (ca, mut ra) = connection(1, a);
        let (cb, mut rb) = connection(2, b);
        let (queued_a, abort_a) = (ca.queued.clone(), ca.abort.clone());
        t.open(ca);
        t.open(cb);
        t.bind(1, "s");
        let now = Instant::now();
        assert_eq!(t.send(transmit(ours, b, 100), now), Sent::Queued(100));
        assert_eq!(rb.try_recv().map(|p| p.len()), Ok(100));
        assert!(ra.try_recv().is_err());
        let other = SocketAddr::from(([127, 0, 0, 1], 9));
        assert_eq!(t.send(transmit(ours, other, 100), now), Sent::NoRoute);
        // A's writer is stuck: its queue fills, then drops, then the tick closes it.
        let mut sent = 0;
        while t.send(transmit(ours, a, 1200), now) != Sent::Dropped {
            sent += 1200;
        }
        assert_eq!(queued_a.load(Ordering::Relaxed), sent);
        assert!(sent <= QUEUE_BYTES && sent + 1200 > QUEUE_BYTES);
        t.tick(now + SLOW_CLOSE / 2);
        assert_eq!(t.len(), 2);
        t.tick(now + SLOW_CLOSE + BIND_TIMEOUT);
        assert!(abort_a.is_cancelled());
        assert_eq!(t.len(), 0, "A was slow, B never bound");
        assert_eq!(t.send(transmit(ours, b, 100), now), Sent::NoRoute);
    }

    #[test]
    fn bound_connections_stay_and_close_with_their_session() {
        let ours = SocketAddr::from(([127, 0, 0, 1], 8189));
        let mut t = Connections::new(vec![ours], None);
        let (c, mut rx) = connection(1, SocketAddr::from(([127, 0, 0, 1], 40000)));
        let abort = c.abort.clone();
        t.open(c);
        t.bind(1, "s1");
        assert_eq!(t.addresses(1).map(|a| a.2.map(str::to_owned)), Some(Some("s1".into())));
        t.tick(Instant::now() + BIND_TIMEOUT * 2);
        assert_eq!(t.len(), 1);
        t.close_session("other");
        assert_eq!(t.len(), 1);
        t.close_session("s1");
        assert_eq!(t.len(), 0);
        // Graceful: the writer's queue is closed, not aborted, so it flushes first.
        assert!(!abort.is_cancelled());
        assert!(matches!(rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
    }

    #[test]
    fn one_ip_cannot_hold_many_unbound_connections() {
        let mut t = Connections::new(vec![SocketAddr::from(([127, 0, 0, 1], 8189))], None);
        let mut keep = Vec::new();
        for i in 0..MAX_UNBOUND_PER_IP as u16 + 3 {
            let (c, rx) = connection(u64::from(i), SocketAddr::from(([198, 51, 100, 7], 30000 + i)));
            keep.push(rx);
            t.open(c);
        }
        assert_eq!(t.len(), MAX_UNBOUND_PER_IP);
        let (c, _rx) = connection(999, SocketAddr::from(([198, 51, 100, 8], 30000)));
        t.open(c);
        assert_eq!(t.len(), MAX_UNBOUND_PER_IP + 1);
    }
}
