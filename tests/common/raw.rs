//! A raw line client for protocol-level tests: sends exactly the bytes a test wants,
//! including the broken ones real clients sometimes send.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct Raw {
    r: BufReader<TcpStream>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Raw {
            r: BufReader::new(s),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.r.get_mut().write_all(bytes).unwrap();
    }

    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l.trim_end_matches(['\r', '\n']).to_string()
    }

    /// Reads a whole SMTP reply; returns its last line (code + text).
    pub fn reply(&mut self) -> String {
        loop {
            let l = self.line();
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return l;
            }
        }
    }

    /// Reads a whole SMTP reply, all lines.
    pub fn reply_lines(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        loop {
            let l = self.line();
            let last = l.len() < 4 || l.as_bytes()[3] != b'-';
            v.push(l);
            if last {
                return v;
            }
        }
    }

    /// Sends a command line and returns the reply's last line.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// True when the server has closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }

    pub fn shutdown(self) {
        let _ = self.r.get_ref().shutdown(std::net::Shutdown::Both);
    }
}

pub fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

pub fn plain(user: &str, pw: &str) -> String {
    b64(&format!("\0{user}\0{pw}"))
}
