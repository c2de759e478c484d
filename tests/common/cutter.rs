//! A TCP relay that breaks connections on purpose, for fault tests against a real
//! server: it listens on 127.0.0.1, forwards bytes both ways to a target, and for
//! the connections it is armed for closes both sides, or stalls, once a set number
//! of bytes went one way. TLS passes through untouched (the certificates of the
//! testbed are for `localhost`, which is where the relay listens too).
//!
//! The cut applies to the next `k` connections only; later ones pass, so that a
//! client's retry can succeed. The relay counts what it forwarded per connection
//! and direction, so that a test can show the cut happened in the middle of a
//! transfer and not before or after it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often idle threads look whether the relay was dropped.
const POLL: Duration = Duration::from_millis(20);
/// Bytes forwarded per read.
const CHUNK: usize = 64 * 1024;

/// What happens to an armed connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Forward everything.
    Pass,
    /// Close both sides once this many bytes went client -> server.
    CloseUp(u64),
    /// Close both sides once this many bytes went server -> client.
    CloseDown(u64),
    /// Stop forwarding both ways, sockets left open, once this many bytes went
    /// client -> server.
    StallUp(u64),
    /// As [`Cut::StallUp`], counted server -> client.
    StallDown(u64),
    /// Close both sides when the server sends anything after this many bytes
    /// went client -> server: the server's answer to a request it took whole.
    CloseAnswerAfterUp(u64),
}

/// What one connection saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes forwarded client -> server.
    pub up: u64,
    /// Bytes forwarded server -> client.
    pub down: u64,
    /// Whether the cut struck (closed or stalled) this connection.
    pub cut: bool,
}

/// One relayed connection's shared state.
struct Link {
    cut: Cut,
    up: AtomicU64,
    down: AtomicU64,
    struck: AtomicBool,
    /// Set when both sockets are shut down (a stalled direction then ends).
    closed: AtomicBool,
    sockets: [TcpStream; 2],
}

struct Plan {
    cut: Cut,
    /// How many of the next connections get `cut`.
    left: usize,
}

/// The relay; stops and closes every connection when dropped.
pub struct Cutter {
    pub addr: SocketAddr,
    plan: Arc<Mutex<Plan>>,
    links: Arc<Mutex<Vec<Arc<Link>>>>,
    stop: Arc<AtomicBool>,
}

impl Cutter {
    /// A relay to `target` that cuts the first `k` connections as `cut`.
    pub fn start(target: SocketAddr, cut: Cut, k: usize) -> Cutter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let plan = Arc::new(Mutex::new(Plan { cut, left: k }));
        let links = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, l, s) = (plan.clone(), links.clone(), stop.clone());
        std::thread::spawn(move || accept_loop(listener, target, &p, &l, &s));
        Cutter {
            addr,
            plan,
            links,
            stop,
        }
    }

    /// From now on the next `k` connections get `cut` (earlier ones keep theirs).
    pub fn arm(&self, cut: Cut, k: usize) {
        *self.plan.lock().unwrap() = Plan { cut, left: k };
    }

    /// What each connection so far saw, in the order they came.
    pub fn traffic(&self) -> Vec<Traffic> {
        self.links
            .lock()
            .unwrap()
            .iter()
            .map(|l| Traffic {
                up: l.up.load(Ordering::SeqCst),
                down: l.down.load(Ordering::SeqCst),
                cut: l.struck.load(Ordering::SeqCst),
            })
            .collect()
    }

    /// Closes both sides of every connection that is stalled (the server gone for
    /// good); the others go on.
    pub fn close_stalled(&self) {
        for l in self.links.lock().unwrap().iter() {
            if l.struck.load(Ordering::SeqCst) {
                l.close();
            }
        }
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for l in self.links.lock().unwrap().iter() {
            l.close();
        }
    }
}

impl Link {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for s in &self.sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    plan: &Mutex<Plan>,
    links: &Mutex<Vec<Arc<Link>>>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(POLL);
                continue;
            }
            Err(_) => continue,
        };
        let Ok(server) = TcpStream::connect(target) else {
            continue;
        };
        let _ = client.set_nonblocking(false);
        let cut = {
            let mut p = plan.lock().unwrap();
            if p.left > 0 {
                p.left -= 1;
                p.cut
            } else {
                Cut::Pass
            }
        };
        let link = Arc::new(Link {
            cut,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            struck: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            sockets: [client.try_clone().unwrap(), server.try_clone().unwrap()],
        });
        links.lock().unwrap().push(link.clone());
        let (l, c, s) = (link.clone(), client.try_clone().unwrap(), server);
        std::thread::spawn(move || pump(&l, c, s, true));
        let l = link;
        let s = l.sockets[1].try_clone().unwrap();
        std::thread::spawn(move || pump(&l, s, client, false));
    }
}

/// Forwards `from` -> `to` (`up`: client -> server) until either side ends or the
/// cut strikes.
fn pump(link: &Link, mut from: TcpStream, mut to: TcpStream, up: bool) {
    let (mine, other) = if up {
        (&link.up, &link.down)
    } else {
        (&link.down, &link.up)
    };
    // the byte count in this direction at which the cut strikes, and how
    let limit = match (link.cut, up) {
        (Cut::CloseUp(n) | Cut::StallUp(n), true) => Some(n),
        (Cut::CloseDown(n) | Cut::StallDown(n), false) => Some(n),
        _ => None,
    };
    let stall = matches!(link.cut, Cut::StallUp(_) | Cut::StallDown(_));
    let mut buf = vec![0u8; CHUNK];
    loop {
        if link.struck.load(Ordering::SeqCst) {
            break;
        }
        let want = match limit {
            Some(n) => {
                let done = mine.load(Ordering::SeqCst);
                if done >= n {
                    strike(link, stall);
                    break;
                }
                CHUNK.min((n - done) as usize)
            }
            None => CHUNK,
        };
        let got = match from.read(&mut buf[..want]) {
            Ok(0) | Err(_) => {
                // one side ended: pass the end on, as a real network would
                if !link.struck.load(Ordering::SeqCst) {
                    let _ = to.shutdown(Shutdown::Write);
                }
                return;
            }
            Ok(n) => n,
        };
        if link.struck.load(Ordering::SeqCst) {
            break;
        }
        if let Cut::CloseAnswerAfterUp(n) = link.cut {
            if !up && other.load(Ordering::SeqCst) >= n {
                strike(link, false);
                break;
            }
        }
        if to.write_all(&buf[..got]).is_err() {
            let _ = from.shutdown(Shutdown::Read);
            return;
        }
        mine.fetch_add(got as u64, Ordering::SeqCst);
    }
    if stall {
        // keep the sockets open, read nothing more: the peer sees silence
        hold(link);
    }
}

fn strike(link: &Link, stall: bool) {
    link.struck.store(true, Ordering::SeqCst);
    if !stall {
        link.close();
    }
}

/// Parks a stalled direction until its sockets are closed (by the test or drop).
fn hold(link: &Link) {
    while !link.closed.load(Ordering::SeqCst) {
        std::thread::sleep(POLL);
    }
}
