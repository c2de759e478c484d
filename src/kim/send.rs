//! The send pipeline: what happens to a client's mail between its DATA and the
//! upstream transaction (gemSpec_CM_KOMLE 3.3.4, PROCESS state).
//!
//! The whole mail is received and spooled first; only then does the pipeline run,
//! and only after it does the upstream transaction start (A_23554: MAIL FROM and
//! RCPT TO go to the MTA after the processing, SIZE set to the processed size).
//! In this version the pipeline passes the mail through unchanged; sealing
//! (sign + encrypt) and the KAS plug in here.

use crate::spool::Spool;

/// The mail as it will go upstream.
pub struct Outgoing {
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub mail: Spool,
}

/// Why the pipeline refused a mail; the session turns it into an SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The client may try again later (SMTP 4xx).
    #[error("{0}")]
    Temporary(String),
    /// Sending again will not help (SMTP 5xx).
    #[error("{0}")]
    Permanent(String),
}

/// The send pipeline of one Clientmodul.
#[derive(Debug, Default, Clone)]
pub struct SendPipeline {}

impl SendPipeline {
    pub fn new() -> SendPipeline {
        SendPipeline {}
    }

    /// Turns the client's mail into the mail for the MTA.
    pub async fn run(
        &self,
        mail_from: &str,
        recipients: &[String],
        mail: Spool,
    ) -> Result<Outgoing, Refusal> {
        Ok(Outgoing {
            mail_from: mail_from.to_string(),
            recipients: recipients.to_vec(),
            mail,
        })
    }
}
