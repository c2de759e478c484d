//! The receive pipeline: what happens to a mail between the Fachdienst's RETR and the
//! client's (gemSpec_CM_KOMLE 3.4, the POP3 PROCESS state).
//!
//! The receive pipeline will decrypt and verify here: open the CMS structure with the
//! practice's card, check the signature, restore a KAS mail, add the result headers
//! and notes, or build the spec's error mail. In this version the mail passes
//! through unchanged.

use crate::spool::Spool;

/// Turns the mail as the Fachdienst delivered it into the mail for the client.
/// For now it returns its input unchanged.
pub fn open_received(spool: Spool) -> Spool {
    spool
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_mail_through_unchanged() {
        let s = crate::spool::SpoolSettings {
            dir: std::env::temp_dir(),
            memory_limit: 1024,
        };
        let mut out = open_received(Spool::from_bytes(
            b"Subject: x\r\n\r\nbody\r\n".to_vec(),
            &s,
        ));
        assert_eq!(out.to_vec().await.unwrap(), b"Subject: x\r\n\r\nbody\r\n");
    }
}
