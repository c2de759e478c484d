//! What every client-facing listener shares, SMTP and POP3 alike: its settings, the
//! accept loop with a bound on concurrent sessions, and the TLS handshake that an
//! implicit-TLS listener does before its greeting.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openssl::ssl::SslAcceptor;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::net::{Conn, Stream, TlsMode};
use crate::spool::SpoolSettings;
use crate::throttle::LoginThrottle;

/// Sessions one listener runs at once; further clients wait in the listen backlog.
pub const MAX_SESSIONS_PER_LISTENER: usize = 512;
/// Sessions one client address may hold at once on a listener, so that one
/// client (or one attacker) cannot take every slot; more are refused at once.
pub const MAX_SESSIONS_PER_PEER: usize = 64;
/// Pause after a failed accept (e.g. out of file descriptors) before the next try.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// A listener's settings.
pub struct ListenerSettings {
    /// The name in the greeting (and in SMTP's EHLO).
    pub name: String,
    pub tls: TlsMode,
    /// Set for implicit-TLS and STARTTLS listeners.
    pub acceptor: Option<Arc<SslAcceptor>>,
    /// How long the session waits for the client: for each whole command line.
    pub timeout: Duration,
    /// How long a session may go without a successful login before it is closed.
    pub login_timeout: Duration,
    /// Failed logins per client address, shared by every listener of the proxy;
    /// `None` where nothing is to be protected (the testbed's simulators).
    pub login_throttle: Option<Arc<LoginThrottle>>,
    pub spool: SpoolSettings,
}

/// Accepts connections and runs `session` for each, at most
/// [`MAX_SESSIONS_PER_LISTENER`] at once, until the task is dropped or the
/// shutdown begins; each session counts as in flight until it ends.
///
/// A client address already holding [`MAX_SESSIONS_PER_PEER`] sessions gets
/// `refusal` (none on an implicit-TLS listener, where a plain line would be
/// noise) and is closed.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    timeout: Duration,
    refusal: Option<&'static [u8]>,
    session: F,
) where
    F: Fn(Conn) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(MAX_SESSIONS_PER_LISTENER));
    let peers = Arc::new(PeerCounts::default());
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            // the listening socket closes with this task: new clients are refused
            _ = crate::shutdown::requested() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let Some(peer_slot) = PeerSlot::take(&peers, peer.ip()) else {
            tracing::warn!(%peer, "refused: {MAX_SESSIONS_PER_PEER} sessions from this address already");
            tokio::spawn(async move {
                let mut tcp = tcp;
                if let Some(r) = refusal {
                    use tokio::io::AsyncWriteExt;
                    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, tcp.write_all(r)).await;
                }
            });
            continue;
        };
        let guard = crate::shutdown::SessionGuard::new();
        let fut = session(Conn::new(Stream::Plain(tcp), peer, timeout));
        tokio::spawn(async move {
            fut.await;
            drop((slot, guard, peer_slot));
        });
    }
}

/// How long a refusal may take to write to a client over its limit.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Sessions per client address on one listener.
#[derive(Default)]
struct PeerCounts(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One session of a client address; counted until dropped.
struct PeerSlot {
    counts: Arc<PeerCounts>,
    ip: std::net::IpAddr,
}

impl PeerSlot {
    fn take(counts: &Arc<PeerCounts>, ip: std::net::IpAddr) -> Option<PeerSlot> {
        let mut map = counts.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= MAX_SESSIONS_PER_PEER {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// For an implicit-TLS listener: the handshake before anything else is said.
/// `Err` says why the session cannot go on (for its log line).
pub async fn implicit_tls(
    conn: &mut Conn,
    settings: &ListenerSettings,
) -> Result<(), &'static str> {
    if settings.tls != TlsMode::Implicit {
        return Ok(());
    }
    let Some(acc) = settings.acceptor.as_ref() else {
        return Err("listener has no TLS certificate");
    };
    conn.accept_tls(acc).await.map_err(|e| {
        tracing::debug!(peer = %conn.peer(), "TLS handshake failed: {e}");
        "TLS handshake failed"
    })
}
