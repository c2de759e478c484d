//! The simulated Fachdienst's MTA: SMTP submission that behaves like a real one.
//! Login with address and password, MAIL FROM must be the login (a KIM Fachdienst
//! refuses anything else), unknown recipients are refused at RCPT, the size limit is
//! enforced, and a delivered mail gets `Return-Path` and `Received` on top, as a
//! real MTA writes them.

use std::io::Write;
use std::sync::Arc;

use tokio::io::AsyncReadExt;

use super::mailstore::MailStore;
use super::users::Users;
use crate::smtp::auth::Credentials;
use crate::smtp::server::{Backend, ClientInfo, Envelope};
use crate::smtp::Reply;
use crate::spool::Spool;

/// The simulated MTA.
pub struct TestbedSmtp {
    pub store: Arc<MailStore>,
    pub users: Arc<Users>,
    pub max_size: u64,
    /// Host name in `Received`.
    pub name: String,
}

/// The logged-in user.
pub struct TestbedSession {
    address: String,
    peer: std::net::SocketAddr,
}

impl Backend for TestbedSmtp {
    type Session = TestbedSession;

    fn max_message_size(&self, _s: Option<&TestbedSession>) -> u64 {
        self.max_size
    }

    async fn authenticate(
        &self,
        creds: &Credentials,
        client: &ClientInfo,
    ) -> Result<TestbedSession, Reply> {
        if self.users.check(&creds.user, &creds.password) {
            Ok(TestbedSession {
                address: creds.user.to_ascii_lowercase(),
                peer: client.peer,
            })
        } else {
            Err(Reply::new(535, "5.7.8 Error: authentication failed"))
        }
    }

    fn check_sender(&self, s: &TestbedSession, address: &str) -> Result<(), Reply> {
        if address.eq_ignore_ascii_case(&s.address) {
            Ok(())
        } else {
            Err(Reply::new(
                553,
                format!(
                    "5.7.1 <{address}>: Sender address rejected: not owned by user {}",
                    s.address
                ),
            ))
        }
    }

    fn check_recipient(&self, _s: &TestbedSession, address: &str) -> Result<(), Reply> {
        if self.users.exists(address) {
            Ok(())
        } else {
            Err(Reply::new(
                550,
                format!("5.1.1 <{address}>: Recipient address rejected: User unknown"),
            ))
        }
    }

    async fn deliver(&self, s: &mut TestbedSession, env: &Envelope, mut mail: Spool) -> Reply {
        let store = self.store.clone();
        let trace = format!(
            "Return-Path: <{}>\r\nReceived: from [{}] by {} (kim-cm testbed) with ESMTPSA for <{}>; {}\r\n",
            env.mail_from,
            s.peer.ip(),
            self.name,
            env.rcpt.first().map(|r| r.address.as_str()).unwrap_or(""),
            rfc5322_now()
        );
        let (tmp, file) = match store.begin() {
            Ok(x) => x,
            Err(e) => return Reply::new(451, format!("4.3.0 Mailbox store error: {e}")),
        };
        let mut reader = match mail.reader().await {
            Ok(r) => r,
            Err(e) => return Reply::new(451, format!("4.3.0 Spool error: {e}")),
        };
        let mut file = std::io::BufWriter::with_capacity(256 * 1024, file);
        let mut buf = vec![0u8; 256 * 1024];
        let mut result = file.write_all(trace.as_bytes());
        while result.is_ok() {
            match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => result = file.write_all(&buf[..n]),
                Err(e) => result = Err(e),
            }
        }
        let result = result
            .and_then(|_| file.into_inner().map_err(|e| e.into_error()))
            .and_then(|f| f.sync_all());
        let rcpt: Vec<String> = env.rcpt.iter().map(|r| r.address.clone()).collect();
        match result.and_then(|_| store.commit(&tmp, &rcpt)) {
            Ok(()) => Reply::new(
                250,
                format!(
                    "2.0.0 Ok: queued as {}",
                    tmp.file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ),
            ),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Reply::new(451, format!("4.3.0 Mailbox store error: {e}"))
            }
        }
    }

    async fn close(&self, _s: TestbedSession) {}

    fn describe(&self, s: &TestbedSession) -> String {
        s.address.clone()
    }
}

/// The current time as an RFC 5322 date-time (UTC).
pub fn rfc5322_now() -> String {
    let t = openssl::asn1::Asn1Time::days_from_now(0).ok();
    // Asn1Time prints "Nov 23 22:31:50 2026 GMT"; turn it into RFC 5322 form
    let s = t.map(|t| t.to_string()).unwrap_or_default();
    let p: Vec<&str> = s.split_whitespace().collect();
    if p.len() == 5 {
        format!("{} {} {} {} +0000", p[1], p[0], p[3], p[2])
    } else {
        s
    }
}
