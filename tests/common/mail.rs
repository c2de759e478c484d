//! Mails and clients shared by the integration tests: a large client mail written
//! to a file, curl as the SMTP and POP3 client of a sandbox account, a second
//! kim-cm on the sandbox's config, header fields of a fetched mail.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::kimcm::{curl_within, url_with_login, KimCm, Sandbox};

/// A client mail of about `size` bytes with a text part and a base64 attachment.
pub fn big_mail(dir: &Path, from: &str, to: &str, size: usize, extra_part: &str) -> PathBuf {
    let path = dir.join(format!("mail-{}.eml", rand_id()));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    write!(
        f,
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: Befund gross\r\nMessage-ID: <{}@praxis-a.kim.test>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nAnbei.\r\n{extra_part}--b1\r\n\
Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        rand_id()
    )
    .unwrap();
    let line = [b'Q'; 76];
    let mut written = 400;
    while written < size {
        f.write_all(&line).unwrap();
        f.write_all(b"\r\n").unwrap();
        written += 78;
    }
    f.write_all(b"--b1--\r\n").unwrap();
    f.flush().unwrap();
    path
}

pub fn rand_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// How long one curl with a large mail may take.
const BIG_MAIL_CURL_SECS: u64 = 120;

/// curl with room for large mails.
pub fn curl(args: &[&str]) -> (i32, Vec<u8>, String) {
    curl_within(BIG_MAIL_CURL_SECS, args)
}

/// Sends `mail` as sandbox account `i` through the kim-cm SMTP at `smtp`; curl's
/// exit code and its verbose dialogue.
pub fn send_as(sb: &Sandbox, i: usize, smtp: &str, mail: &Path, rcpts: &[&str]) -> (i32, String) {
    let (from, pw, user, _) = sb.account(i);
    let url = url_with_login("smtp", smtp, &user, &pw, "");
    let mut args = vec!["-v", "--url", &url, "--mail-from", &from];
    for r in rcpts {
        args.extend(["--mail-rcpt", r]);
    }
    args.extend(["--upload-file", mail.to_str().unwrap()]);
    let (code, _, err) = curl(&args);
    (code, err)
}

/// Sends `mail` as alice to `rcpt` through the kim-cm SMTP at `smtp`.
pub fn send_via(sb: &Sandbox, smtp: &str, mail: &Path, rcpt: &str) -> (i32, String) {
    send_as(sb, 0, smtp, mail, &[rcpt])
}

/// Message `n` of sandbox account `i`, fetched through the kim-cm POP3 at `pop3`.
pub fn fetch_as(sb: &Sandbox, i: usize, pop3: &str, n: usize) -> Vec<u8> {
    let (_, pw, _, user) = sb.account(i);
    let url = url_with_login("pop3", pop3, &user, &pw, &format!("/{n}"));
    let (code, got, err) = curl(&["--url", &url]);
    assert_eq!(code, 0, "curl pop3: {err}\n{}", sb.log());
    got
}

/// Bob's message 1 fetched through the kim-cm POP3 at `pop3`.
pub fn fetch_via(sb: &Sandbox, pop3: &str) -> Vec<u8> {
    fetch_as(sb, 1, pop3, 1)
}

pub fn config_text(sb: &Sandbox) -> String {
    std::fs::read_to_string(sb.dir.path().join("sb").join("kim-cm.toml")).unwrap()
}

/// A second kim-cm on the sandbox's config, with its own listeners and data
/// folder, changed by `edit`.
pub fn second_kimcm(sb: &Sandbox, edit: impl Fn(String) -> String) -> KimCm {
    let mut text = String::new();
    for line in config_text(sb).lines() {
        if line.starts_with("address = \"127.0.0.1:") {
            text.push_str("address = \"127.0.0.1:0\"\n");
        } else if line.starts_with("data_dir") {
            text.push_str("data_dir = \"{dir}/data\"\n");
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    KimCm::serve(&edit(text))
}

pub fn header_value(mail: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(mail);
    let prefix = format!("{name}: ");
    text.lines()
        .take_while(|l| !l.is_empty())
        .find(|l| l.starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
}
