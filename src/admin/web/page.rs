//! The admin page's HTML, rendered on the server: no script, no external asset
//! (no CDN), one small inline style sheet, every value escaped.

use time::OffsetDateTime;

use super::health::Health;
use super::registration::Seen;
use crate::activity::AccountActivity;
use crate::limits::AccountLimit;

/// `&`, `<`, `>`, `"` and `'` as entities.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:72em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#f2f2f2}.ok{color:#176f2c}.bad{color:#a40000;font-weight:bold}.note{color:#555}\
.error{border:2px solid #a40000;background:#fff0f0;padding:.6em;margin:1em 0}\
.done{border:2px solid #176f2c;background:#f0fff2;padding:.6em;margin:1em 0}\
header{display:flex;justify-content:space-between;align-items:center}form.inline{display:inline}\
section.op{border:1px solid #ccc;padding:.2em 1em 1em;margin:0 0 1em}section.op h3{margin:.6em 0}\
label{display:inline-block;margin:.2em 1em .2em 0}pre{white-space:pre-wrap;margin:0}.danger{border-color:#a40000}";

pub(super) fn layout(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{t} – kim-cm</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n",
        t = esc(title)
    )
}

/// The login form, with a message and the name given after a failed try.
pub fn login(message: Option<&str>, user: &str) -> String {
    let msg = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)))
        .unwrap_or_default();
    layout(
        "Login",
        &format!(
            "<h1>kim-cm administration</h1>{msg}\
             <form method=\"post\" action=\"/login\">\
             <p><label>User <input name=\"user\" id=\"user\" autocomplete=\"username\" value=\"{user}\" required></label></p>\
             <p><label>Password <input name=\"password\" id=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
             <p><button type=\"submit\" id=\"login\">Log in</button></p></form>",
            user = esc(user)
        ),
    )
}

/// One account's row.
pub struct AccountRow {
    pub address: String,
    /// "PKCS#12 files" or "Konnektor <id>".
    pub keys: String,
    /// The cached getLimits answer and when it was fetched (unix seconds).
    pub limits: Option<(AccountLimit, i64)>,
    /// The registration state the account operations last saw.
    pub registration: Option<Seen>,
    pub activity: AccountActivity,
}

/// What the dashboard shows.
pub struct Dashboard<'a> {
    pub user: &'a str,
    pub csrf: &'a str,
    pub accounts: Vec<AccountRow>,
    pub health_at: OffsetDateTime,
    pub health: Vec<Health>,
}

pub(super) fn when(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn bytes(n: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else if n >= 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} bytes")
    }
}

fn limits_cell(l: &Option<(AccountLimit, i64)>) -> String {
    let Some((l, fetched)) = l else {
        return "<span class=\"note\">not fetched yet (the first send asks for them)</span>".into();
    };
    let quota = if l.quota < 0 {
        "unlimited".to_string()
    } else {
        format!(
            "{} of {} left",
            bytes(l.remain_quota.max(0) as u64),
            bytes(l.quota as u64)
        )
    };
    let fetched = OffsetDateTime::from_unix_timestamp(*fetched)
        .map(when)
        .unwrap_or_default();
    format!(
        "largest mail {}<br>quota: {}<br>kept {} days<br><span class=\"note\">as of {}</span>",
        bytes(l.max_mail_size),
        esc(&quota),
        l.ttl_days(),
        esc(&fetched)
    )
}

fn activity_cell(a: &AccountActivity) -> String {
    let mut s = format!(
        "sent {} ({}), refused {}<br>opened {}, with problems {}",
        a.sent,
        bytes(a.sent_bytes),
        a.refused,
        a.opened,
        a.open_problems
    );
    if let Some(t) = a.last_sent {
        s.push_str(&format!(
            "<br><span class=\"note\">last sent {}</span>",
            when(t)
        ));
    }
    if let Some(t) = a.last_opened {
        s.push_str(&format!(
            "<br><span class=\"note\">last opened {}</span>",
            when(t)
        ));
    }
    s
}

/// The overview: accounts, limits, activity, upstream health.
pub fn dashboard(d: &Dashboard<'_>) -> String {
    let mut body = format!(
        "<header><h1>kim-cm administration</h1>\
         <form class=\"inline\" method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         {user} <button type=\"submit\" id=\"logout\">Log out</button></form></header>\n\
         <h2>Accounts</h2>\n<table id=\"accounts\"><tr><th>KIM address</th><th>Registration</th><th>Keys</th><th>Limits (getLimits)</th>\
         <th>Since start</th><th>Last problem</th></tr>\n",
        csrf = esc(d.csrf),
        user = esc(d.user)
    );
    for a in &d.accounts {
        let problem = match &a.activity.last_problem {
            Some(p) => format!(
                "<span class=\"bad\">{}</span><br><span class=\"note\">{}</span>",
                esc(&p.what),
                when(p.at)
            ),
            None => "none".into(),
        };
        let registration = match &a.registration {
            Some(s) => format!(
                "{}<br><span class=\"note\">as of {}</span>",
                esc(&s.state),
                when(s.at)
            ),
            None => "<span class=\"note\">not asked since the start</span>".into(),
        };
        let link: String = form_urlencoded::byte_serialize(a.address.as_bytes()).collect();
        body.push_str(&format!(
            "<tr><td>{}<br><a href=\"/account?address={}\">manage</a></td><td>{registration}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&a.address),
            esc(&link),
            esc(&a.keys),
            limits_cell(&a.limits),
            activity_cell(&a.activity),
            problem
        ));
    }
    body.push_str("</table>\n");
    body.push_str(&format!(
        "<h2>Upstreams</h2>\n<div class=\"note\">checked {} \
         <form class=\"inline\" method=\"post\" action=\"/health\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\" id=\"check\">Check now</button></form></div>\n\
         <table id=\"health\"><tr><th>Service</th><th>Where</th><th>State</th><th>Detail</th></tr>\n",
        when(d.health_at),
        esc(d.csrf)
    ));
    for h in &d.health {
        let state = if h.ok {
            "<span class=\"ok\">reachable</span>"
        } else {
            "<span class=\"bad\">unreachable</span>"
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{state}</td><td>{}</td></tr>\n",
            esc(&h.name),
            esc(&h.target),
            esc(&h.detail)
        ));
    }
    if d.health.is_empty() {
        body.push_str("<tr><td colspan=\"4\">no upstream configured</td></tr>\n");
    }
    body.push_str("</table>\n");
    layout("Administration", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        let page = login(Some("<b>no</b>"), "\"><script>");
        assert!(
            page.contains("value=\"&quot;&gt;&lt;script&gt;\""),
            "{page}"
        );
        assert!(page.contains("&lt;b&gt;no&lt;/b&gt;") && !page.contains("<b>no"));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no external asset"
        );
    }
}
