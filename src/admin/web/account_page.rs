//! One account's page: what the page knows of it, the answer of the last
//! operation, and a form for every Account Manager operation (issue 6, item 5).
//! Each form posts to `/account/<operation>` with the session's CSRF token and
//! the account's address; passwords are typed into each form anew.

use super::forms::{Answer, Operation};
use super::page::{esc, layout, when};
use super::registration::Seen;

/// What the page shows.
pub struct AccountPage<'a> {
    pub csrf: &'a str,
    pub address: &'a str,
    pub registration: Option<Seen>,
    /// The provider's password rules (serviceinfo), when it answered.
    pub password_rules: Option<String>,
    /// The operation just done and how it ended.
    pub answer: Option<(Operation, Answer)>,
    /// Why operations cannot run at all (e.g. no Account Manager configured).
    pub unavailable: Option<String>,
}

// Field ids are `<operation>-<name>`: one page holds many forms with the same
// field names.

fn password(op: Operation, name: &str, label: &str, autocomplete: &str) -> String {
    format!(
        "<label>{label} <input type=\"password\" name=\"{name}\" id=\"{}-{name}\" autocomplete=\"{autocomplete}\"></label>",
        op.slug()
    )
}

fn text(op: Operation, name: &str, label: &str, placeholder: &str) -> String {
    format!(
        "<label>{label} <input name=\"{name}\" id=\"{}-{name}\" placeholder=\"{}\"></label>",
        op.slug(),
        esc(placeholder)
    )
}

fn checkbox(op: Operation, name: &str, label: &str) -> String {
    format!(
        "<label><input type=\"checkbox\" name=\"{name}\" id=\"{}-{name}\" value=\"yes\"> {label}</label>",
        op.slug()
    )
}

/// The fields of `op`'s form besides the CSRF token and the account.
fn fields(op: Operation, rules: &str) -> String {
    let kim = || password(op, "password", "KIM password", "current-password");
    match op {
        Operation::Register => format!(
            "<p class=\"note\">With the reference id and initial password from your KIM provider's letter. {rules}</p>\
             <p>{}{}</p><p>{}{}</p><p>{}{}{}</p>",
            text(op, "reference_id", "Reference id", ""),
            password(op, "ini_password", "Initial password", "off"),
            password(op, "password", "New KIM password", "new-password"),
            password(op, "password_again", "again", "new-password"),
            text(op, "kim_version", "KIM version", "1.5+"),
            text(op, "data_time_to_live", "Days mails are kept", "90"),
            checkbox(op, "no_vzd_mail_entry", "leave out of the directory (VZD)"),
        ),
        Operation::Show
        | Operation::Limits
        | Operation::OutOfOfficeShow
        | Operation::Otp
        | Operation::RevokeDeregistration => format!("<p>{}</p>", kim()),
        Operation::OutOfOfficeSet => format!(
            "<p>{}</p><p>{}{}{}</p><p><label>Message <textarea name=\"message\" id=\"out-of-office-set-message\" rows=\"3\" cols=\"60\"></textarea></label></p>",
            kim(),
            checkbox(op, "active", "active"),
            text(op, "start", "From", "2026-12-24T00:00:00+01:00"),
            text(op, "end", "Until", "2027-01-02T00:00:00+01:00"),
        ),
        Operation::Set => format!(
            "<p class=\"note\">Fill in only what is to change. {rules}</p><p>{}</p><p>{}{}\
             <label>Directory (VZD) <select name=\"directory\" id=\"set-directory\"><option value=\"\">unchanged</option>\
             <option value=\"listed\">listed</option><option value=\"unlisted\">not listed</option></select></label></p>\
             <p>{}{}</p>",
            kim(),
            text(op, "kim_version", "KIM version", "1.5+"),
            text(op, "data_time_to_live", "Days mails are kept", ""),
            password(op, "new_password", "New KIM password", "new-password"),
            password(op, "new_password_again", "again", "new-password"),
        ),
        Operation::Cert => format!(
            "<p class=\"note\">Stored where [upstream] client_pkcs12 points, for mutual TLS to the Fachdienst; \
             restart kim-cm serve to use it.</p><p>{}</p><p>{}</p><p>{}{}</p>",
            kim(),
            text(op, "common_name", "Common name (before #CM)", "the KIM address"),
            password(op, "cert_password", "Certificate password (optional)", "new-password"),
            password(op, "cert_password_again", "again", "new-password"),
        ),
        Operation::SetTid => format!(
            "<p class=\"note\">After the account's key in the config file is the new card's.</p><p>{}{}</p>",
            kim(),
            text(op, "otp", "One-time password", ""),
        ),
        Operation::Deregister => format!(
            "<p class=\"note\">The account keeps working until the provider's deregistration date and can be revoked until then.</p><p>{}{}</p>",
            kim(),
            checkbox(op, "confirm", "yes, deregister"),
        ),
    }
}

fn answer_box(op: Operation, answer: &Answer) -> String {
    match answer {
        Ok(table) => format!(
            "<div class=\"done\" id=\"result\" role=\"status\"><strong>{}: done</strong><pre>{}</pre></div>",
            esc(op.title()),
            esc(table)
        ),
        Err(sentence) => format!(
            "<div class=\"error\" id=\"result\" role=\"alert\"><strong>{}: not done</strong><p id=\"sentence\">{}</p></div>",
            esc(op.title()),
            esc(sentence)
        ),
    }
}

/// The account's page.
pub fn account(p: &AccountPage<'_>) -> String {
    let registration = match &p.registration {
        Some(s) => format!("{} <span class=\"note\">(as of {})</span>", esc(&s.state), when(s.at)),
        None => "<span class=\"note\">not asked since kim-cm started: use \"Show the registration\"</span>".into(),
    };
    let mut body = format!(
        "<header><h1>{a}</h1><a href=\"/\" id=\"overview\">Overview</a></header>\n\
         <p>Registration: <span id=\"registration\">{registration}</span></p>\n",
        a = esc(p.address)
    );
    if let Some((op, answer)) = &p.answer {
        body.push_str(&answer_box(*op, answer));
    }
    if let Some(why) = &p.unavailable {
        body.push_str(&format!(
            "<div class=\"error\" role=\"alert\"><p>{}</p></div>",
            esc(why)
        ));
    }
    let rules = p
        .password_rules
        .as_deref()
        .map(|r| format!("Password rules: {}", esc(r)))
        .unwrap_or_default();
    for op in Operation::ALL {
        let danger = if op == Operation::Deregister {
            " danger"
        } else {
            ""
        };
        body.push_str(&format!(
            "<section class=\"op{danger}\"><h3>{title}</h3>\
             <form method=\"post\" action=\"/account/{slug}\" id=\"{slug}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"account\" value=\"{account}\">{fields}\
             <p><button type=\"submit\" id=\"{slug}-submit\">{title}</button></p></form></section>\n",
            title = esc(op.title()),
            slug = op.slug(),
            csrf = esc(p.csrf),
            account = esc(p.address),
            fields = fields(op, &rules),
        ));
    }
    layout(p.address, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(answer: Option<(Operation, Answer)>) -> String {
        account(&AccountPage {
            csrf: "c0ffee",
            address: "praxis@<x>.kim.test",
            registration: None,
            password_rules: Some("12 characters <at least>".into()),
            answer,
            unavailable: None,
        })
    }

    #[test]
    fn one_form_per_operation_each_with_the_csrf_token_and_values_escaped() {
        let html = page(None);
        for op in Operation::ALL {
            assert!(
                html.contains(&format!("action=\"/account/{}\"", op.slug())),
                "{op:?}"
            );
        }
        assert_eq!(
            html.matches("name=\"csrf\" value=\"c0ffee\"").count(),
            Operation::ALL.len()
        );
        assert!(!html.contains("<x>") && html.contains("praxis@&lt;x&gt;.kim.test"));
        assert!(html.contains("12 characters &lt;at least&gt;"));
        assert!(!html.contains("id=\"result\""));
    }

    #[test]
    fn the_answer_is_shown_as_done_or_as_its_sentence() {
        let html = page(Some((Operation::Show, Ok("state  registered\n".into()))));
        assert!(html.contains("class=\"done\"") && html.contains("state  registered"));
        let html = page(Some((
            Operation::Register,
            Err("the address <a> is taken".into()),
        )));
        assert!(html.contains("class=\"error\" id=\"result\""));
        assert!(html.contains("<p id=\"sentence\">the address &lt;a&gt; is taken</p>"));
    }
}
