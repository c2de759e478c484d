//! The admin page's account operations: which form posts to which path, what
//! each form's fields mean, and the call into [`crate::admin::ops`], the same
//! functions `kim-cm account` uses, so the page shows the command line's
//! sentences and tables word for word.
//!
//! The KIM password, the initial password, a new password and a one-time
//! password are typed into each form anew: kim-cm stores none of them (issue 6,
//! item 4), and the posted fields are wiped when the operation is over.

use zeroize::{Zeroize, Zeroizing};

use super::registration::Registrations;
use crate::admin::ops::{AdminOps, CertInput, OpsError, RegisterInput, SetInput};
use crate::admin::schemas::{AccountChanges, OutOfOffice};

/// The operations the page offers, in the order it shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Register,
    Show,
    Limits,
    OutOfOfficeShow,
    OutOfOfficeSet,
    Set,
    Cert,
    Otp,
    SetTid,
    Deregister,
    RevokeDeregistration,
}

impl Operation {
    pub const ALL: [Operation; 11] = [
        Operation::Register,
        Operation::Show,
        Operation::Limits,
        Operation::OutOfOfficeShow,
        Operation::OutOfOfficeSet,
        Operation::Set,
        Operation::Cert,
        Operation::Otp,
        Operation::SetTid,
        Operation::Deregister,
        Operation::RevokeDeregistration,
    ];

    /// The last part of the path the form posts to (`/account/<slug>`), also
    /// the form's and its button's id.
    pub fn slug(self) -> &'static str {
        match self {
            Operation::Register => "register",
            Operation::Show => "show",
            Operation::Limits => "limits",
            Operation::OutOfOfficeShow => "out-of-office-show",
            Operation::OutOfOfficeSet => "out-of-office-set",
            Operation::Set => "set",
            Operation::Cert => "cert",
            Operation::Otp => "otp",
            Operation::SetTid => "set-tid",
            Operation::Deregister => "deregister",
            Operation::RevokeDeregistration => "revoke-deregistration",
        }
    }

    pub fn from_slug(slug: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.slug() == slug)
    }

    /// The form's heading and button.
    pub fn title(self) -> &'static str {
        match self {
            Operation::Register => "Register the account",
            Operation::Show => "Show the registration",
            Operation::Limits => "Show the limits",
            Operation::OutOfOfficeShow => "Show the out-of-office note",
            Operation::OutOfOfficeSet => "Set the out-of-office note",
            Operation::Set => "Change the settings or the password",
            Operation::Cert => "Create the TLS client certificate",
            Operation::Otp => "One-time password for a new card",
            Operation::SetTid => "Move to the new card",
            Operation::Deregister => "Deregister the account",
            Operation::RevokeDeregistration => "Revoke the deregistration",
        }
    }
}

/// The posted fields; wiped when dropped, since some are passwords.
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn new(fields: Vec<(String, String)>) -> Fields {
        Fields(fields)
    }

    /// The field's value, "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// The trimmed value, `None` when empty.
    fn text(&self, name: &str) -> Option<String> {
        Some(self.get(name).trim().to_string()).filter(|v| !v.is_empty())
    }

    /// Whether a checkbox was ticked.
    fn checked(&self, name: &str) -> bool {
        !self.get(name).is_empty()
    }

    /// A password as typed (not trimmed: spaces may belong to it); `None` when
    /// empty.
    fn secret(&self, name: &str) -> Option<Zeroizing<String>> {
        Some(self.get(name))
            .filter(|v| !v.is_empty())
            .map(|v| Zeroizing::new(v.to_string()))
    }

    /// A password the operation cannot do without.
    fn required_secret(&self, name: &str, what: &str) -> Result<Zeroizing<String>, OpsError> {
        self.secret(name)
            .ok_or_else(|| OpsError::Input(format!("{what} is empty: enter it and try again")))
    }

    /// A new password, typed twice.
    fn new_secret(
        &self,
        name: &str,
        again: &str,
        what: &str,
    ) -> Result<Option<Zeroizing<String>>, OpsError> {
        let first = self.secret(name);
        let second = self.secret(again);
        if first != second {
            return Err(OpsError::Input(format!(
                "the two entries of the {what} differ; nothing was changed"
            )));
        }
        Ok(first)
    }

    fn number(&self, name: &str, what: &str) -> Result<Option<u32>, OpsError> {
        self.text(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    OpsError::Input(format!("{what} \"{v}\" is not a whole number of days"))
                })
            })
            .transpose()
    }
}

impl Drop for Fields {
    fn drop(&mut self) {
        for (k, v) in &mut self.0 {
            k.zeroize();
            v.zeroize();
        }
    }
}

/// How an operation ended: the outcome's table, or the sentence saying why not.
pub type Answer = Result<String, String>;

const KIM_PASSWORD: &str = "the KIM password";

/// Runs `op` for the configured `account` with the posted fields, and notes
/// any registration state it learns.
pub async fn run(
    ops: &AdminOps,
    op: Operation,
    account: &str,
    f: &Fields,
    seen: &Registrations,
) -> Answer {
    run_op(ops, op, account, f, seen)
        .await
        .map_err(|e| e.to_string())
}

async fn run_op(
    ops: &AdminOps,
    op: Operation,
    account: &str,
    f: &Fields,
    seen: &Registrations,
) -> Result<String, OpsError> {
    if op == Operation::Register {
        let ini_password = f.required_secret("ini_password", "the initial password")?;
        let password = f
            .new_secret("password", "password_again", "new KIM password")?
            .ok_or_else(|| {
                OpsError::Input(
                    "the new KIM password is empty: enter it twice and try again".into(),
                )
            })?;
        let input = RegisterInput {
            account: account.to_string(),
            reference_id: f.text("reference_id"),
            ini_password,
            password,
            kim_version: f.text("kim_version"),
            data_time_to_live: f.number("data_time_to_live", "the data time to live")?,
            no_vzd_mail_entry: f.checked("no_vzd_mail_entry").then_some(true),
        };
        let done = ops.register(&input).await?;
        seen.saw(&done.account, "registered");
        return Ok(done.to_string());
    }
    let password = f.required_secret("password", KIM_PASSWORD)?;
    let text = match op {
        Operation::Register => unreachable!("handled above"),
        Operation::Show => {
            let view = ops.get(account, &password).await?;
            seen.saw(account, view.state());
            view.to_string()
        }
        Operation::Limits => ops.limits(account, &password).await?.to_string(),
        Operation::OutOfOfficeShow => ops.out_of_office(account, &password).await?.to_string(),
        Operation::OutOfOfficeSet => {
            let note = OutOfOffice {
                start_date: f.text("start"),
                end_date: f.text("end"),
                message: f.text("message"),
                active: Some(f.checked("active")),
            };
            ops.set_out_of_office(account, &password, &note)
                .await?
                .to_string()
        }
        Operation::Set => {
            let no_vzd_mail_entry = match f.get("directory") {
                "listed" => Some(false),
                "unlisted" => Some(true),
                _ => None,
            };
            let input = SetInput {
                account: account.to_string(),
                password,
                new_password: f.new_secret(
                    "new_password",
                    "new_password_again",
                    "new KIM password",
                )?,
                changes: AccountChanges {
                    kim_version: f.text("kim_version"),
                    data_time_to_live: f.number("data_time_to_live", "the data time to live")?,
                    no_vzd_mail_entry,
                },
            };
            ops.set(&input).await?.to_string()
        }
        Operation::Cert => {
            let input = CertInput {
                account: account.to_string(),
                password,
                common_name: f.text("common_name"),
                cert_password: f.new_secret(
                    "cert_password",
                    "cert_password_again",
                    "certificate password",
                )?,
            };
            ops.cert(&input).await?.to_string()
        }
        Operation::Otp => ops.otp(account, &password).await?.to_string(),
        Operation::SetTid => {
            let otp = f
                .text("otp")
                .ok_or_else(|| OpsError::Input("the one-time password is empty: enter the one `One-time password for a new card` showed and try again".into()))?;
            ops.set_tid(account, &password, &otp).await?.to_string()
        }
        Operation::Deregister => {
            if !f.checked("confirm") {
                return Err(OpsError::Input(
                    "tick \"yes, deregister\" to confirm; nothing was changed".into(),
                ));
            }
            let done = ops.deregister(account, &password).await?;
            seen.saw(
                account,
                "deregistered (revocable until the deregistration date)",
            );
            done.to_string()
        }
        Operation::RevokeDeregistration => {
            let done = ops.revoke_deregistration(account, &password).await?;
            seen.saw(account, "registered");
            done.to_string()
        }
    };
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_its_own_path() {
        for op in Operation::ALL {
            assert_eq!(Operation::from_slug(op.slug()), Some(op));
        }
        assert_eq!(Operation::from_slug("unknown"), None);
    }

    #[test]
    fn new_passwords_must_agree_and_numbers_be_numbers() {
        let f = Fields::new(vec![
            ("a".into(), "Geheim-1".into()),
            ("b".into(), "Geheim-2".into()),
            ("n".into(), " 30 ".into()),
            ("x".into(), "thirty".into()),
        ]);
        let e = f.new_secret("a", "b", "new KIM password").unwrap_err();
        assert!(e.to_string().contains("differ"), "{e}");
        assert_eq!(*f.new_secret("a", "a", "x").unwrap().unwrap(), "Geheim-1");
        assert_eq!(f.new_secret("none", "nothing", "x").unwrap(), None);
        assert_eq!(f.number("n", "ttl").unwrap(), Some(30));
        let e = f.number("x", "the data time to live").unwrap_err();
        assert!(e.to_string().contains("\"thirty\" is not a whole number"));
        assert_eq!(f.number("absent", "ttl").unwrap(), None);
        let e = f.required_secret("absent", KIM_PASSWORD).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the KIM password is empty: enter it and try again"
        );
    }
}
