//! The driver: one task that owns every session, one UDP socket for every viewer and the
//! table of ICE-TCP connections ([`tcp`](super::tcp)).
//!
//! UDP datagrams are routed to the session whose `accepts()` says so; a TCP connection's
//! first packet likewise, which binds the connection to that session for good. Frames
//! arrive from one small forwarding task per viewer (each its own gateway subscription, so
//! a lagging viewer is resynced at the next key frame by the gateway and only hurts
//! itself); after every mutation the session is drained until its next timeout, and its
//! transmits go out by their protocol: UDP straight to the socket, TCP to the connection's
//! bounded queue.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use panoptes_core::{CameraId, EncodedFrame, LiveFeed};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Input};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::session::{EndReason, SharedFrame, ViewerSession};
use super::tcp::{CloseReason, ConnId, Connections, Sent, TcpEvent};

/// Frames in flight from the forwarding tasks to the driver.
const FRAME_QUEUE: usize = 2048;
/// Bytes-for-str0m conversions kept for reuse by other viewers of the same frame.
const SHARE_TTL: Duration = Duration::from_secs(4);

/// A session's public description.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    /// Session id (also the secret part of its URL).
    pub id: String,
    /// The camera.
    pub camera: CameraId,
    /// The stream.
    pub stream: String,
    /// The viewing user's id.
    pub user_id: i64,
    /// Whether media flows.
    pub connected: bool,
    /// Seconds since the answer.
    pub age_secs: f64,
    /// Frames written.
    pub frames: u64,
}

pub(crate) enum Command {
    Start {
        id: String,
        camera: CameraId,
        stream: String,
        user_id: i64,
        session: Box<ViewerSession>,
        feed: LiveFeed,
    },
    Stop {
        id: String,
        user_id: Option<i64>,
        reply: oneshot::Sender<bool>,
    },
    List {
        reply: oneshot::Sender<Vec<SessionInfo>>,
    },
}

struct Entry {
    camera: CameraId,
    stream: String,
    user_id: i64,
    session: ViewerSession,
    next_timeout: Option<Instant>,
    forwarder: CancellationToken,
    created: Instant,
    resyncs_seen: u64,
}

/// Shared conversion of gateway frames to str0m's buffer type: one copy per frame, however
/// many viewers (the key is the frame's address; the entry holds the frame, so the
/// address is not reused while cached).
#[derive(Default)]
struct ShareCache {
    map: HashMap<usize, (SharedFrame, Instant)>,
}

impl ShareCache {
    fn get(&mut self, frame: Arc<EncodedFrame>, now: Instant) -> SharedFrame {
        let key = Arc::as_ptr(&frame) as usize;
        let entry = self.map.entry(key).or_insert_with(|| {
            let data: Arc<[u8]> = Arc::from(&frame.data[..]);
            (SharedFrame { frame, data }, now)
        });
        entry.1 = now;
        entry.0.clone()
    }

    fn prune(&mut self, now: Instant) {
        self.map.retain(|_, (_, used)| now.saturating_duration_since(*used) < SHARE_TTL);
    }
}

/// The driver's address book: where its sockets are and which addresses to advertise.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The bound UDP socket address, if UDP is on.
    pub udp: Option<SocketAddr>,
    /// The bound TCP listener address, if ICE over TCP is on.
    pub tcp: Option<SocketAddr>,
    /// UDP host candidates given to browsers.
    pub udp_candidates: Vec<SocketAddr>,
    /// TCP host candidates (passive) given to browsers.
    pub tcp_candidates: Vec<SocketAddr>,
}

impl Endpoint {
    /// An endpoint with the host candidates for the bound addresses (see [`candidates`]).
    pub fn new(udp: Option<SocketAddr>, tcp: Option<SocketAddr>, advertise: &[IpAddr]) -> Endpoint {
        Endpoint {
            udp,
            tcp,
            udp_candidates: udp.map(|a| candidates(a, advertise)).unwrap_or_default(),
            tcp_candidates: tcp.map(|a| candidates(a, advertise)).unwrap_or_default(),
        }
    }

    /// The ICE candidates for an answer: UDP ones and passive TCP ones.
    pub fn ice_candidates(&self) -> Vec<Candidate> {
        let udp = self.udp_candidates.iter().map(|a| Candidate::host(*a, "udp"));
        let tcp = self
            .tcp_candidates
            .iter()
            .map(|a| Candidate::builder().tcp().host(*a).tcptype(TcpType::Passive).build());
        udp.chain(tcp)
            .filter_map(|c| c.map_err(|e| tracing::warn!(error = %e, "skipping a WebRTC candidate")).ok())
            .collect()
    }
}

/// The local candidate a packet from `source` reached. `seen` is the local address the
/// kernel reports (a TCP connection's), which wins when it is a candidate; a UDP socket
/// bound to the unspecified address does not say, and behind NAT the advertised address is
/// not the local one, so otherwise: loopback for loopback peers, else the first
/// non-loopback candidate of the peer's family, else the first, else `bound`.
pub(crate) fn local_candidate(
    candidates: &[SocketAddr],
    bound: SocketAddr,
    seen: Option<SocketAddr>,
    source: SocketAddr,
) -> SocketAddr {
    if let Some(seen) = seen
        && candidates.contains(&seen)
    {
        return seen;
    }
    let loopback = source.ip().is_loopback();
    candidates
        .iter()
        .find(|c| c.ip().is_loopback() == loopback && c.is_ipv4() == source.is_ipv4())
        .or_else(|| candidates.first())
        .copied()
        .unwrap_or(bound)
}

/// Host candidates for a socket bound at `local`: the advertised IPs when configured, else
/// the bound IP, else loopback plus the address of the default route.
pub fn candidates(local: SocketAddr, advertise: &[IpAddr]) -> Vec<SocketAddr> {
    if !advertise.is_empty() {
        return advertise.iter().map(|ip| SocketAddr::new(*ip, local.port())).collect();
    }
    if !local.ip().is_unspecified() {
        return vec![local];
    }
    let mut v = vec![SocketAddr::from(([127, 0, 0, 1], local.port()))];
    // Connecting a UDP socket sends nothing; it only asks the kernel for the route's
    // source address (fails where there is no route, e.g. a loopback-only namespace).
    if let Ok(probe) = std::net::UdpSocket::bind("0.0.0.0:0")
        && probe.connect("192.0.2.1:9").is_ok()
        && let Ok(a) = probe.local_addr()
        && !a.ip().is_unspecified()
        && !a.ip().is_loopback()
    {
        v.push(SocketAddr::new(a.ip(), local.port()));
    }
    v
}

pub(crate) struct Driver {
    udp: Option<UdpSocket>,
    tcp: Connections,
    tcp_events: Option<mpsc::Receiver<TcpEvent>>,
    endpoint: Endpoint,
    commands: mpsc::Receiver<Command>,
    frames_tx: mpsc::Sender<(String, Arc<EncodedFrame>)>,
    frames_rx: mpsc::Receiver<(String, Arc<EncodedFrame>)>,
    sessions: HashMap<String, Entry>,
    share: ShareCache,
    cancel: CancellationToken,
    viewers: Arc<Mutex<HashMap<(CameraId, String), usize>>>,
}

impl Driver {
    /// A driver for the UDP socket and the TCP connections announced on `tcp_events`, as
    /// far as each is on.
    pub(crate) fn new(
        udp: Option<UdpSocket>,
        tcp_events: Option<mpsc::Receiver<TcpEvent>>,
        endpoint: Endpoint,
        commands: mpsc::Receiver<Command>,
        cancel: CancellationToken,
    ) -> Driver {
        let (frames_tx, frames_rx) = mpsc::channel(FRAME_QUEUE);
        Driver {
            udp,
            tcp: Connections::new(endpoint.tcp_candidates.clone(), endpoint.tcp),
            tcp_events,
            endpoint,
            commands,
            frames_tx,
            frames_rx,
            sessions: HashMap::new(),
            share: ShareCache::default(),
            cancel,
            viewers: Arc::default(),
        }
    }

    pub(crate) async fn run(mut self) {
        let mut buf = vec![0u8; 2048];
        let mut prune = tokio::time::interval(Duration::from_secs(1));
        loop {
            let next = self.sessions.values().filter_map(|e| e.next_timeout).min();
            let sleep_until = next.map(tokio::time::Instant::from_std);
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                r = recv_udp(self.udp.as_ref(), &mut buf) => match r {
                    Ok((n, source)) => self.datagram(buf.get(..n).unwrap_or_default(), source),
                    Err(e) => tracing::debug!(error = %e, "WebRTC socket receive failed"),
                },
                Some(event) = recv_tcp(self.tcp_events.as_mut()) => self.tcp_event(event),
                Some((id, frame)) = self.frames_rx.recv() => self.frame(&id, frame),
                _ = sleep(sleep_until) => self.timeouts(),
                _ = prune.tick() => {
                    let now = Instant::now();
                    self.share.prune(now);
                    self.tcp.tick(now);
                    self.timeouts();
                }
            }
        }
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            self.finish(&id, EndReason::Closed);
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Start { id, camera, stream, user_id, session, feed } => {
                let now = Instant::now();
                let forwarder = self.cancel.child_token();
                let mut entry = Entry {
                    camera: camera.clone(),
                    stream: stream.clone(),
                    user_id,
                    session: *session,
                    next_timeout: Some(now),
                    forwarder: forwarder.clone(),
                    created: now,
                    resyncs_seen: 0,
                };
                for f in feed.backlog {
                    let shared = self.share.get(f, now);
                    entry.session.push_frame(shared, now);
                }
                self.sessions.insert(id.clone(), entry);
                self.viewer_count(&camera, &stream, 1);
                tokio::spawn(forward(id, feed.frames, self.frames_tx.clone(), forwarder));
            }
            Command::Stop { id, user_id, reply } => {
                let allowed = self.sessions.get(&id).is_some_and(|e| user_id.is_none_or(|u| u == e.user_id));
                if allowed {
                    self.finish(&id, EndReason::Closed);
                }
                let _ = reply.send(allowed);
            }
            Command::List { reply } => {
                let now = Instant::now();
                let list = self
                    .sessions
                    .iter()
                    .map(|(id, e)| SessionInfo {
                        id: id.clone(),
                        camera: e.camera.clone(),
                        stream: e.stream.clone(),
                        user_id: e.user_id,
                        connected: e.session.is_connected(),
                        age_secs: now.saturating_duration_since(e.created).as_secs_f64(),
                        frames: e.session.counters().frames,
                    })
                    .collect();
                let _ = reply.send(list);
            }
        }
    }

    fn datagram(&mut self, data: &[u8], source: SocketAddr) {
        let now = Instant::now();
        let bound = self.endpoint.udp.unwrap_or(source);
        let destination = local_candidate(&self.endpoint.udp_candidates, bound, None, source);
        let Ok(receive) = Receive::new(Protocol::Udp, source, destination, data) else { return };
        let input = Input::Receive(now, receive);
        let Some((id, entry)) = self.sessions.iter_mut().find(|(_, e)| e.session.accepts(&input)) else {
            metrics::counter!("panoptes_live_datagrams_unrouted_total").increment(1);
            return;
        };
        let id = id.clone();
        entry.session.handle_input(input);
        self.drain(&id, now);
    }

    fn tcp_event(&mut self, event: TcpEvent) {
        match event {
            TcpEvent::Opened(conn) => self.tcp.open(conn),
            TcpEvent::Frame { conn, data, at } => self.tcp_frame(conn, &data, at),
            TcpEvent::Closed { conn, reason } => self.tcp.close(conn, reason),
        }
    }

    /// A packet from a TCP connection: to its session, or, for the first one, to the
    /// session that accepts it, which binds the connection; else the connection closes.
    fn tcp_frame(&mut self, conn: ConnId, data: &[u8], at: Instant) {
        let Some((peer, candidate, bound)) = self.tcp.addresses(conn) else { return };
        let bound = bound.map(str::to_owned);
        let Ok(receive) = Receive::new(Protocol::Tcp, peer, candidate, data) else {
            if bound.is_none() {
                self.tcp.close(conn, CloseReason::Garbage);
            }
            return;
        };
        let input = Input::Receive(at, receive);
        let id = match bound {
            Some(id) => id,
            None => {
                let Some(id) =
                    self.sessions.iter().find(|(_, e)| e.session.accepts(&input)).map(|(id, _)| id)
                else {
                    metrics::counter!("panoptes_live_datagrams_unrouted_total").increment(1);
                    self.tcp.close(conn, CloseReason::Unrouted);
                    return;
                };
                self.tcp.bind(conn, id);
                id.clone()
            }
        };
        let Some(entry) = self.sessions.get_mut(&id) else {
            self.tcp.close(conn, CloseReason::SessionEnded);
            return;
        };
        entry.session.handle_input(input);
        self.drain(&id, Instant::now());
    }

    fn frame(&mut self, id: &str, frame: Arc<EncodedFrame>) {
        let now = Instant::now();
        if frame.keyframe {
            // A stream's key frames tick the conversion cache's clock too.
            self.share.prune(now);
        }
        let received = frame.received;
        let shared = self.share.get(frame, now);
        let Some(entry) = self.sessions.get_mut(id) else { return };
        let live = entry.session.is_connected();
        entry.session.push_frame(shared, now);
        self.drain(id, now);
        if live {
            // Camera frame complete → its datagrams handed to the kernel, for this viewer.
            let delay = SystemTime::now().duration_since(received).unwrap_or_default();
            metrics::histogram!("panoptes_live_relay_delay_seconds").record(delay.as_secs_f64());
        }
    }

    fn timeouts(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.next_timeout.is_none_or(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if let Some(e) = self.sessions.get_mut(&id) {
                e.session.handle_timeout(now);
            }
            self.drain(&id, now);
        }
    }

    /// Polls a session until its next timeout, sends its datagrams, ends it if it ended.
    fn drain(&mut self, id: &str, now: Instant) {
        let Some(entry) = self.sessions.get_mut(id) else { return };
        let polled = entry.session.poll(now);
        entry.next_timeout = polled.next_timeout;
        let (camera, stream) = (entry.camera.as_str(), entry.stream.as_str());
        let mut bytes = 0u64;
        for t in polled.transmits {
            // A full socket buffer or TCP queue drops, as UDP loses: the browser asks for
            // a retransmission or a key frame, which resyncs only this viewer.
            let sent = match t.proto {
                Protocol::Udp => {
                    self.udp.as_ref().and_then(|s| s.try_send_to(&t.contents, t.destination).ok())
                }
                _ => match self.tcp.send(t, now) {
                    Sent::Queued(n) => Some(n),
                    Sent::Dropped | Sent::NoRoute => None,
                },
            };
            match sent {
                Some(n) => bytes += n as u64,
                None => {
                    metrics::counter!("panoptes_live_datagrams_dropped_total", "camera" => camera.to_owned(), "stream" => stream.to_owned()).increment(1);
                }
            }
        }
        if bytes > 0 {
            metrics::counter!("panoptes_live_bytes_sent_total", "camera" => camera.to_owned(), "stream" => stream.to_owned())
                .increment(bytes);
        }
        let resyncs = entry.session.counters().resyncs;
        if resyncs > entry.resyncs_seen {
            metrics::counter!("panoptes_live_resyncs_total", "camera" => camera.to_owned(), "stream" => stream.to_owned(), "reason" => "viewer_loss")
                .increment(resyncs - entry.resyncs_seen);
            entry.resyncs_seen = resyncs;
        }
        if let Some(reason) = entry.session.ended() {
            self.finish(id, reason);
        }
    }

    fn finish(&mut self, id: &str, reason: EndReason) {
        let Some(mut entry) = self.sessions.remove(id) else { return };
        entry.session.end(reason);
        // Send what closing produced (DTLS close), best effort; then let its TCP
        // connections go (their writers send what is queued first).
        let now = Instant::now();
        for t in entry.session.poll(now).transmits {
            match t.proto {
                Protocol::Udp => {
                    if let Some(s) = &self.udp {
                        let _ = s.try_send_to(&t.contents, t.destination);
                    }
                }
                _ => {
                    let _ = self.tcp.send(t, now);
                }
            }
        }
        self.tcp.close_session(id);
        entry.forwarder.cancel();
        let reason = entry.session.ended().unwrap_or(reason);
        metrics::counter!("panoptes_live_sessions_ended_total", "reason" => reason.label()).increment(1);
        tracing::info!(camera = %entry.camera, stream = %entry.stream, reason = reason.label(), "live view session ended");
        self.viewer_count(&entry.camera, &entry.stream, -1);
    }

    fn viewer_count(&self, camera: &CameraId, stream: &str, delta: isize) {
        let mut map = self.viewers.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry((camera.clone(), stream.to_owned())).or_insert(0);
        *n = n.saturating_add_signed(delta);
        metrics::gauge!("panoptes_live_viewers", "camera" => camera.to_string(), "stream" => stream.to_owned())
            .set(*n as f64);
    }
}

async fn recv_udp(socket: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn recv_tcp(events: Option<&mut mpsc::Receiver<TcpEvent>>) -> Option<TcpEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep(until: Option<tokio::time::Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Moves a viewer's frames to the driver until the session or the stream ends.
async fn forward(
    id: String,
    mut frames: std::pin::Pin<Box<dyn futures::Stream<Item = Arc<EncodedFrame>> + Send>>,
    tx: mpsc::Sender<(String, Arc<EncodedFrame>)>,
    cancel: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => return,
            f = frames.next() => f,
        };
        let Some(frame) = frame else { return };
        let age = SystemTime::now().duration_since(frame.received).unwrap_or_default();
        metrics::histogram!("panoptes_live_frame_age_seconds").record(age.as_secs_f64());
        if tx.send((id.clone(), frame)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_ips_win_and_keep_the_port() {
        let local: SocketAddr = ([0, 0, 0, 0], 8189).into();
        let c = candidates(local, &["203.0.113.7".parse().unwrap_or_else(|e| panic!("{e}"))]);
        assert_eq!(c, vec![SocketAddr::from(([203, 0, 113, 7], 8189))]);
        let bound: SocketAddr = ([127, 0, 0, 1], 9000).into();
        assert_eq!(candidates(bound, &[]), vec![bound]);
        let any = candidates(local, &[]);
        assert_eq!(any[0], SocketAddr::from(([127, 0, 0, 1], 8189)));
    }

    #[test]
    fn loopback_peers_reach_the_loopback_candidate() {
        let bound = SocketAddr::from(([0, 0, 0, 0], 8189));
        let c: Vec<SocketAddr> = vec![([127, 0, 0, 1], 8189).into(), ([192, 0, 2, 10], 8189).into()];
        assert_eq!(local_candidate(&c, bound, None, ([127, 0, 0, 1], 5000).into()), c[0]);
        assert_eq!(local_candidate(&c, bound, None, ([192, 0, 2, 99], 5000).into()), c[1]);
        // A TCP connection's local address wins when it is a candidate...
        assert_eq!(local_candidate(&c, bound, Some(c[1]), ([127, 0, 0, 1], 5000).into()), c[1]);
        // ...not when it is not (behind NAT: the advertised address is not local).
        let private = SocketAddr::from(([10, 0, 0, 2], 8189));
        assert_eq!(local_candidate(&c, bound, Some(private), ([192, 0, 2, 99], 5000).into()), c[1]);
        assert_eq!(local_candidate(&[], bound, None, ([192, 0, 2, 99], 5000).into()), bound);
    }

    #[test]
    fn both_transports_give_candidates_on_the_advertised_ips() {
        let e = Endpoint::new(
            Some(([0, 0, 0, 0], 8189).into()),
            Some(([0, 0, 0, 0], 8443).into()),
            &["203.0.113.7".parse().unwrap_or_else(|e| panic!("{e}"))],
        );
        let sdp: Vec<String> = e.ice_candidates().iter().map(Candidate::to_sdp_string).collect();
        assert_eq!(sdp.len(), 2, "{sdp:?}");
        assert!(sdp[0].contains("udp") && sdp[0].contains("203.0.113.7 8189 typ host"), "{sdp:?}");
        assert!(
            sdp[1].contains("tcp") && sdp[1].ends_with("203.0.113.7 8443 typ host tcptype passive"),
            "{sdp:?}"
        );
        let tcp_only = Endpoint::new(None, Some(([127, 0, 0, 1], 8443).into()), &[]);
        assert_eq!(tcp_only.ice_candidates().len(), 1);
    }
}
