//! `kim-cm sandbox --demo`: one mail from alice to bob through the proxy and back,
//! spoken as a mail client speaks it (SMTP AUTH PLAIN with a `#` user name, POP3
//! USER/PASS), so a new user sees the whole path work in one command: the sealed
//! KIM mail as the Fachdienst stored it, then the mail as bob's client gets it.

use std::time::Duration;

use super::Sandbox;
use crate::kim::header;
use crate::net::Conn;
use crate::smtp::auth;

const DEMO_TIMEOUT: Duration = Duration::from_secs(30);

type DemoResult<T> = Result<T, String>;

async fn line(c: &mut Conn) -> DemoResult<String> {
    c.read_line(64 * 1024)
        .await
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .map_err(|e| format!("reading from the proxy: {e}"))
}

/// Reads an SMTP reply and checks its code.
async fn smtp_expect(c: &mut Conn, code: &str) -> DemoResult<String> {
    loop {
        let l = line(c).await?;
        if l.len() >= 4 && &l[3..4] == "-" {
            continue;
        }
        return if l.starts_with(code) {
            Ok(l)
        } else {
            Err(format!("expected {code}, the proxy said: {l}"))
        };
    }
}

async fn send(c: &mut Conn, text: &str) -> DemoResult<()> {
    c.send(text.as_bytes())
        .await
        .map_err(|e| format!("writing to the proxy: {e}"))
}

/// What the demo saw.
pub struct Demo {
    /// The sealed mail's header and the start of its body, as the Fachdienst stored it.
    pub sealed_excerpt: String,
    /// The mail as bob's POP3 delivered it.
    pub opened: String,
}

/// The header and first body lines of the newest mail in `address`'s Fachdienst
/// mailbox.
fn stored_excerpt(sb: &Sandbox, address: &str) -> DemoResult<String> {
    let list = sb
        .fachdienst
        .store
        .list(address)
        .map_err(|e| format!("reading the Fachdienst's mailbox: {e}"))?;
    let newest = list
        .last()
        .ok_or("bob's mailbox at the Fachdienst is empty")?;
    let mail = std::fs::read(&newest.path).map_err(|e| e.to_string())?;
    let (head, body) = header::split(&mail);
    let lines: Vec<&str> = std::str::from_utf8(body)
        .unwrap_or("")
        .lines()
        .take(3)
        .collect();
    Ok(format!(
        "{}\r\n\r\n{}\r\n[... {} more bytes of base64 ...]\r\n",
        String::from_utf8_lossy(head).trim_end(),
        lines.join("\r\n"),
        body.len()
            .saturating_sub(lines.iter().map(|l| l.len() + 2).sum())
    ))
}

/// Runs the demo.
pub async fn run(sb: &Sandbox) -> DemoResult<Demo> {
    let info = &sb.info;
    let alice = &info.accounts[0];
    let bob = &info.accounts[1];
    let marker = format!("demo-{}", hex::encode(rand::random::<[u8; 4]>()));
    let mail = format!(
        "From: <{a}>\r\nTo: <{b}>\r\nSubject: Befund ({marker})\r\nMessage-ID: <{marker}@praxis-a.kim.test>\r\n\
         Date: {d}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Guten Tag,\r\nanbei der Befund.\r\n.Eine Zeile mit Punkt am Anfang.\r\n",
        a = alice.address,
        b = bob.address,
        d = crate::testbed::smtp::rfc5322_now(),
    );

    println!(
        "--> SMTP to kim-cm at {} as {}",
        info.proxy_smtp, alice.smtp_user
    );
    let mut c = Conn::connect(&info.proxy_smtp.to_string(), DEMO_TIMEOUT)
        .await
        .map_err(|e| format!("cannot connect to the proxy: {e}"))?;
    smtp_expect(&mut c, "220").await?;
    send(&mut c, "EHLO demo.praxis-a\r\n").await?;
    smtp_expect(&mut c, "250").await?;
    let plain = auth::encode_plain(&alice.smtp_user, &alice.password);
    send(&mut c, &format!("AUTH PLAIN {}\r\n", &*plain)).await?;
    smtp_expect(&mut c, "235").await?;
    send(&mut c, &format!("MAIL FROM:<{}>\r\n", alice.address)).await?;
    smtp_expect(&mut c, "250").await?;
    send(&mut c, &format!("RCPT TO:<{}>\r\n", bob.address)).await?;
    smtp_expect(&mut c, "250").await?;
    send(&mut c, "DATA\r\n").await?;
    smtp_expect(&mut c, "354").await?;
    let mut stuffed = Vec::new();
    crate::smtp::data::stuff_into(mail.as_bytes(), &mut true, &mut stuffed);
    stuffed.extend_from_slice(b".\r\n");
    c.send(&stuffed).await.map_err(|e| e.to_string())?;
    let accepted = smtp_expect(&mut c, "250").await?;
    println!("<-- {accepted}");
    send(&mut c, "QUIT\r\n").await?;
    let _ = smtp_expect(&mut c, "221").await;
    let sealed_excerpt = stored_excerpt(sb, &bob.address)?;

    println!(
        "--> POP3 to kim-cm at {} as {}",
        info.proxy_pop3, bob.pop3_user
    );
    let mut p = Conn::connect(&info.proxy_pop3.to_string(), DEMO_TIMEOUT)
        .await
        .map_err(|e| format!("cannot connect to the proxy: {e}"))?;
    let ok = |l: String| {
        if l.starts_with("+OK") {
            Ok(l)
        } else {
            Err(format!("the proxy said: {l}"))
        }
    };
    ok(line(&mut p).await?)?;
    send(&mut p, &format!("USER {}\r\n", bob.pop3_user)).await?;
    ok(line(&mut p).await?)?;
    send(&mut p, &format!("PASS {}\r\n", bob.password)).await?;
    ok(line(&mut p).await?)?;
    send(&mut p, "UIDL\r\n").await?;
    ok(line(&mut p).await?)?;
    let mut count = 0;
    while line(&mut p).await? != "." {
        count += 1;
    }
    if count == 0 {
        return Err("bob's mailbox is empty: the mail did not arrive".into());
    }
    send(&mut p, &format!("RETR {count}\r\n")).await?;
    ok(line(&mut p).await?)?;
    let mut got = String::new();
    loop {
        let l = line(&mut p).await?;
        if l == "." {
            break;
        }
        got.push_str(l.strip_prefix('.').unwrap_or(&l));
        got.push_str("\r\n");
    }
    send(&mut p, "QUIT\r\n").await?;
    let _ = line(&mut p).await;
    if !got.contains(&marker) {
        return Err(format!(
            "the newest mail in bob's mailbox is not the demo mail ({marker})"
        ));
    }
    Ok(Demo {
        sealed_excerpt,
        opened: got,
    })
}
