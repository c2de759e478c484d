//! The sidecars' simulated services in the sandbox: the SASIS ZSR-Webservice
//! with a register of 2,000 numbers and the Helsenorge change feed with a few
//! synthetic patients, each on its own loopback port with the sandbox's TLS,
//! and the `[zsr]` and `[helsenorge]` sections that point kim-cm at them, so
//! `kim-cm zsr sync` and `kim-cm helsenorge changes` work on the sandbox's
//! config as they would on a practice's.

use std::path::{Path, PathBuf};

use super::Ports;
use crate::sidecar::clock;
use crate::testbed::ca::{self, TlsFiles};
use crate::testbed::careflex::{self, CareflexSim};
use crate::testbed::helsenorge::{self, RunningHelsenorge};
use crate::testbed::nsp::{self, RunningNsp};
use crate::testbed::zsr::{generate, Credentials, ZsrSim};

type SidecarResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Numbers in the sandbox's ZSR register.
pub const SANDBOX_ZSR_NUMBERS: usize = 2_000;
/// The sandbox's SASIS credentials (test values).
const ZSR_CLIENT_ID: &str = "kim-cm-sandbox";
const ZSR_CLIENT_SECRET: &str = "sandbox-zsr-client-secret";
const ZSR_USER: &str = "praxis@sandbox.ch";
const ZSR_PASSWORD: &str = "sandbox-zsr-password";
/// The sandbox's CareFlex login and companies (test values).
const CAREFLEX_USER: &str = "sandbox@careflex.test";
const CAREFLEX_PASSWORD: &str = "sandbox-careflex-password";
const CAREFLEX_APITOKEN: &str = "sandbox-careflex-apitoken";
const CAREFLEX_ID: &str = "09ce3580d84bf087";
const CAREFLEX_OTHER_ID: &str = "09ce3580d84bf090";
/// Synthetic patients in the example patients file; the first ones changed.
const PATIENTS: usize = 5;
const CHANGED_PATIENTS: usize = 3;

/// The running simulators.
pub struct Sidecars {
    pub zsr: ZsrSim,
    pub helsenorge: RunningHelsenorge,
    pub careflex: CareflexSim,
    pub nsp: RunningNsp,
    /// The example patients file for `kim-cm helsenorge changes`.
    pub patients_file: PathBuf,
}

/// Synthetic (Tenor: month + 80) identity numbers with valid check digits.
fn synthetic_patients(n: usize) -> Vec<String> {
    (1..=28u32)
        .filter_map(|day| {
            crate::sidecar::helsenorge::nin::complete(&format!("{day:02}8185{:03}", 100 + day))
        })
        .take(n)
        .collect()
}

/// Starts both simulators and returns them with the config sections.
pub async fn start(
    data_dir: &Path,
    ports: Ports,
    tls: &TlsFiles,
) -> SidecarResult<(Sidecars, String)> {
    // ZSR: credentials in owner-only files, as a practice keeps them
    let zdir = data_dir.join("zsr");
    std::fs::create_dir_all(&zdir)?;
    ca::write_private(
        &zdir.join("client-secret"),
        format!("{ZSR_CLIENT_SECRET}\n").as_bytes(),
    )?;
    ca::write_private(
        &zdir.join("password"),
        format!("{ZSR_PASSWORD}\n").as_bytes(),
    )?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", ports.zsr)).await?;
    let zsr = ZsrSim::start(
        listener,
        tls,
        clock::system(),
        Credentials {
            client_id: ZSR_CLIENT_ID.into(),
            client_secret: ZSR_CLIENT_SECRET.into(),
            username: ZSR_USER.into(),
            password: ZSR_PASSWORD.into(),
        },
        generate(SANDBOX_ZSR_NUMBERS),
    )?;
    let mut text = format!(
        "\n# the SASIS ZSR-Webservice (simulated): kim-cm zsr sync --config <this file>\n\
         [zsr]\nauthority_url = \"{}\"\nbase_url = \"{}\"\nclient_id = \"{ZSR_CLIENT_ID}\"\n\
         client_secret_file = \"{}\"\nusername = \"{ZSR_USER}\"\npassword_file = \"{}\"\nca_file = \"{}\"\n",
        zsr.authority_url(),
        zsr.base_url(),
        zdir.join("client-secret").display(),
        zdir.join("password").display(),
        tls.ca_cert.display()
    );

    // Helsenorge: a few synthetic patients, the first ones with changes
    let hdir = data_dir.join("helsenorge");
    let helsenorge = helsenorge::start(&hdir, tls, ports.helsenorge).await?;
    let patients = synthetic_patients(PATIENTS);
    for p in patients.iter().take(CHANGED_PATIENTS) {
        helsenorge.add_change(p);
    }
    let patients_file = hdir.join("patients.txt");
    std::fs::write(&patients_file, patients.join("\n") + "\n")?;
    text.push_str(&format!(
        "\n# Helsenorge DigitaltAktiv (simulated): kim-cm helsenorge changes --config <this file> --patients {}\n{}",
        patients_file.display(),
        helsenorge.config_toml()
    ));
    // CareFlex: the managing company and one more it reports for
    let careflex = careflex::start(
        tls,
        ports.careflex,
        careflex::Credentials {
            username: CAREFLEX_USER.into(),
            password: CAREFLEX_PASSWORD.into(),
            apitoken: CAREFLEX_APITOKEN.into(),
        },
    )
    .await?;
    text.push_str(&format!(
        "\n# CareFlex incidents (simulated): kim-cm careflex report --config <this file> FILE\n{}",
        careflex.config_section(
            &data_dir.join("careflex"),
            CAREFLEX_ID,
            &[CAREFLEX_OTHER_ID]
        )?
    ));
    // NSP: the STS, BRS and the notification service on one port
    let nsp = nsp::start(&data_dir.join("nsp"), tls, ports.nsp).await?;
    text.push_str(&format!(
        "\n# NSP treatment relations and notifications (simulated): kim-cm brs --help\n{}",
        nsp.config_toml()
    ));
    Ok((
        Sidecars {
            zsr,
            helsenorge,
            careflex,
            nsp,
            patients_file,
        },
        text,
    ))
}
