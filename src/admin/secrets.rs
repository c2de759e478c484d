//! Where the command line's passwords come from: a file named with a
//! `--*-password-file` option (its first line), else a prompt without echo on a
//! terminal, else the next line of standard input (for scripts; several
//! passwords are read one line each, in the order the command asks for them).
//! Never from a command-line value, which other users see in the process list
//! and shells keep in their history (issue 6, item 4).

use std::io::{BufRead, IsTerminal, Read};
use std::path::Path;

use zeroize::Zeroizing;

/// The longest password line read (CommonSchemas.yaml allows 256 base64
/// characters, about 190 bytes; more is not a password).
pub const MAX_SECRET_LINE: usize = 1024;

/// Reads one password: from `file` when given, else prompted as `prompt`.
pub fn read(prompt: &str, file: Option<&Path>) -> Result<Zeroizing<String>, String> {
    if let Some(p) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read the password file {}: {e}", p.display()))?,
        );
        return Ok(Zeroizing::new(
            text.lines().next().unwrap_or("").to_string(),
        ));
    }
    let secret = if std::io::stdin().is_terminal() {
        Zeroizing::new(
            rpassword::prompt_password(format!("{prompt}: "))
                .map_err(|e| format!("cannot read {prompt}: {e}"))?,
        )
    } else {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .take(MAX_SECRET_LINE as u64)
            .read_line(&mut line)
            .map_err(|e| format!("cannot read {prompt} from standard input: {e}"))?;
        Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_string())
    };
    if secret.is_empty() {
        return Err(format!(
            "{prompt} is empty: enter it at the prompt, give it on standard input, or name a file with the --*-password-file option"
        ));
    }
    Ok(secret)
}

/// Reads a new password: on a terminal asked twice, which must agree.
pub fn read_new(prompt: &str, file: Option<&Path>) -> Result<Zeroizing<String>, String> {
    let first = read(prompt, file)?;
    if file.is_none() && std::io::stdin().is_terminal() {
        let again = read(&format!("{prompt} (again)"), None)?;
        if *first != *again {
            return Err("the two entries differ; nothing was changed".into());
        }
    }
    Ok(first)
}
