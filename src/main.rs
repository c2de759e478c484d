//! The `kim-cm` command line. Exit codes: 0 ok, 2 usage or config error, 1 runtime failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use kim_cm::config::{Config, LogFormat};
use kim_cm::{sandbox, serve};

#[derive(Parser)]
#[command(
    name = "kim-cm",
    version,
    about = "KIM Clientmodul: seals and opens KIM mail between your mail client and your KIM Fachdienst"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy with a configuration file.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file and the files it names, then exit.
    CheckConfig { file: PathBuf },
    /// Run a simulated Fachdienst and the proxy against it, all on loopback.
    Sandbox {
        /// Where the sandbox keeps its state (certificates, mailboxes, config).
        #[arg(long, default_value = "kim-cm-sandbox")]
        data_dir: PathBuf,
        /// Let the system choose free ports instead of the fixed ones.
        #[arg(long)]
        any_ports: bool,
        /// Send one mail through the proxy, fetch it back, print it and exit.
        #[arg(long)]
        demo: bool,
        /// Keep the practices' keys on smart cards in a simulated Konnektor (SOAP
        /// over TLS) instead of in PKCS#12 files.
        #[arg(long)]
        konnektor: bool,
        /// Keep the directory (VZD) in OpenLDAP: starts Debian's `slapd` on a free
        /// loopback port instead of reading certificates from a folder.
        #[arg(long)]
        ldap: bool,
    },
    /// Work on one KIM mail: `open` it as the POP3 side would deliver it, or `seal` a
    /// mail as the SMTP side would send it.
    Message {
        #[command(subcommand)]
        what: MessageCmd,
    },
    /// Make a test PKI: a CA, per account signing, encryption and authentication
    /// certificates with PKCS#12 files, and a directory folder of encryption certificates.
    Pki {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        /// A KIM address to make keys for (repeat for more).
        #[arg(long = "account", required = true)]
        accounts: Vec<String>,
    },
    /// Set the admin page's password: asks for it (or reads the first line of
    /// standard input) and writes its Argon2 hash to the file `[admin]
    /// password_hash_file` names, readable by the owner only.
    AdminPassword {
        /// Where to write the hash.
        #[arg(long)]
        out: PathBuf,
    },
    /// Work with one configured KIM account at the provider's Account Manager
    /// (docs/administration.md).
    Account {
        #[command(subcommand)]
        what: AccountCmd,
    },
    /// getLimits of the AccountLimit service for ACCOUNT (asks its KIM password).
    Limits(kim_cm::admin::cli::Login),
    /// The Account Manager's service information: password rules, token lifetime,
    /// what registration requires.
    ServiceInfo(kim_cm::admin::cli::Common),
    /// The local mirror of the Swiss ZSR register (SASIS; docs/zsr.md).
    Zsr {
        #[command(subcommand)]
        what: kim_cm::sidecar::zsr::cli::ZsrCmd,
    },
    /// Helsenorge DigitaltAktivStatusEndringer (docs/helsenorge.md).
    #[command(subcommand)]
    Helsenorge(kim_cm::sidecar::helsenorge::cli::Command),
    /// CareFlex incident reporting (docs/careflex.md).
    #[command(subcommand)]
    Careflex(kim_cm::sidecar::careflex::cli::Command),
    /// NSP Behandlingsrelationsservice and notifications, DGWS/SOSI (docs/brs.md).
    #[command(subcommand)]
    Brs(kim_cm::sidecar::brs::cli::Command),
    /// Measure the proxy (see docs/performance.md).
    Bench {
        #[command(subcommand)]
        what: kim_cm::bench::Bench,
    },
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Print the JWT for the Account Manager (A_19457-02) of ACCOUNT, signed with
    /// its AUT key (aut_pkcs12, or the SMC-B through its Konnektor), and nothing
    /// else.
    Jwt {
        #[arg(long, short)]
        config: PathBuf,
        /// The account's KIM address, as in its [[account]].
        account: String,
    },
    #[command(flatten)]
    Ops(kim_cm::admin::cli::AccountOp),
}

#[derive(Subcommand)]
enum MessageCmd {
    /// Decrypt and verify MAIL (a file, or - for standard input) and print the result
    /// with its X-KIM result fields.
    Open {
        /// The encryption key and certificate (PKCS#12).
        #[arg(long)]
        key: PathBuf,
        /// File with the PKCS#12 password (first line).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// CA certificates (PEM) that signers must chain to.
        #[arg(long)]
        trust: Option<PathBuf>,
        mail: PathBuf,
    },
    /// Sign and encrypt MAIL (a file, or - for standard input) for the To/Cc/Bcc
    /// recipients in its header and print the KIM mail.
    Seal {
        /// The sender's signing key and certificate (PKCS#12).
        #[arg(long)]
        key: PathBuf,
        /// File with the PKCS#12 password (first line).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Folder of `<address>.pem` encryption certificates, the sender's included.
        #[arg(long)]
        cert_dir: PathBuf,
        mail: PathBuf,
    },
}

/// The first line of a password file, or empty without one.
fn read_password_file(path: Option<PathBuf>) -> Result<String, String> {
    match path {
        None => Ok(String::new()),
        Some(p) => std::fs::read_to_string(&p)
            .map(|t| t.lines().next().unwrap_or("").to_string())
            .map_err(|e| format!("cannot read the password file {}: {e}", p.display())),
    }
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

type AdminFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), kim_cm::admin::cli::Failed>> + 'a>,
>;

/// Loads `config`, logs as it says, and runs one administration command.
fn admin_command(
    rt: &tokio::runtime::Runtime,
    config: &std::path::Path,
    run: impl for<'a> FnOnce(&'a kim_cm::admin::ops::AdminOps) -> AdminFuture<'a>,
) -> ExitCode {
    // inside the runtime: the Konnektor's clients may need it when built
    let result = rt.block_on(async {
        let (cfg, ops) = kim_cm::admin::cli::load(config)?;
        init_logging(cfg.log.format, &cfg.log.level);
        run(&ops).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("kim-cm: {}", f.sentence);
            ExitCode::from(f.code)
        }
    }
}

fn main() -> ExitCode {
    kim_cm::memory::return_large_buffers();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kim-cm: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::Zsr { what } => match rt.block_on(kim_cm::sidecar::zsr::cli::run(what)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(f) => {
                eprintln!("kim-cm: {}", f.sentence);
                ExitCode::from(f.code)
            }
        },
        Command::CheckConfig { file } => match Config::load(&file) {
            Err(e) => {
                eprintln!("kim-cm: {e}");
                ExitCode::from(2)
            }
            Ok(cfg) => match serve::check(&cfg) {
                Err(e) => {
                    eprintln!("kim-cm: config file {}: {e}", file.display());
                    ExitCode::from(2)
                }
                Ok(()) => {
                    println!(
                        "{}: OK ({} SMTP and {} POP3 listeners, {} accounts)",
                        file.display(),
                        cfg.smtp_listener.len(),
                        cfg.pop3_listener.len(),
                        cfg.account.len()
                    );
                    ExitCode::SUCCESS
                }
            },
        },
        Command::Serve { config } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("kim-cm: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(cfg.log.format, &cfg.log.level);
            rt.block_on(async {
                match serve::run(&config, cfg).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("kim-cm: {e}");
                        ExitCode::from(1)
                    }
                }
            })
        }
        Command::Sandbox {
            data_dir,
            any_ports,
            demo,
            konnektor,
            ldap,
        } => {
            init_logging(LogFormat::Text, if demo { "warn" } else { "info" });
            let ports = if any_ports {
                sandbox::Ports::ANY
            } else {
                sandbox::Ports::DEFAULT
            };
            rt.block_on(async {
                let backend = if konnektor {
                    sandbox::Backend::Konnektor
                } else {
                    sandbox::Backend::Software
                };
                let options = sandbox::Options { backend, ldap };
                let sb = match sandbox::start(&data_dir, ports, options).await {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("kim-cm: cannot start the sandbox: {e}");
                        return ExitCode::from(1);
                    }
                };
                if demo {
                    return match sandbox::demo::run(&sb).await {
                        Ok(demo) => {
                            println!(
                                "\nThis is what the Fachdienst stored for bob: signed and encrypted by kim-cm:\n\n{}",
                                demo.sealed_excerpt
                            );
                            println!(
                                "\nThis arrived in bob's mailbox through kim-cm:\n\n{}",
                                demo.opened
                            );
                            ExitCode::SUCCESS
                        }
                        Err(e) => {
                            eprintln!("kim-cm: the demo failed: {e}");
                            ExitCode::from(1)
                        }
                    };
                }
                println!("{}", sb.info.describe());
                println!(
                    "Settings for scripts: {}",
                    data_dir.join("sandbox.json").display()
                );
                serve::shutdown_signal().await;
                ExitCode::SUCCESS
            })
        }
        Command::Message {
            what:
                MessageCmd::Open {
                    key,
                    password_file,
                    trust,
                    mail,
                },
        } => {
            let password = match read_password_file(password_file) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("kim-cm: {e}");
                    return ExitCode::from(2);
                }
            };
            let opened = kim_cm::message::read_input(&mail)
                .and_then(|m| kim_cm::message::open(&m, &key, &password, trust.as_deref()));
            match opened {
                Ok(o) => {
                    use std::io::Write;
                    let _ = std::io::stdout().write_all(&o.mail);
                    if o.decryption.is_empty() || o.decryption == "00" && o.integrity == "01" {
                        ExitCode::SUCCESS
                    } else {
                        eprintln!(
                            "kim-cm: X-KIM-DecryptionResult {} X-KIM-IntegrityCheckResult {}",
                            o.decryption,
                            if o.integrity.is_empty() {
                                "-"
                            } else {
                                &o.integrity
                            }
                        );
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("kim-cm: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Message {
            what:
                MessageCmd::Seal {
                    key,
                    password_file,
                    cert_dir,
                    mail,
                },
        } => {
            let password = match read_password_file(password_file) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("kim-cm: {e}");
                    return ExitCode::from(2);
                }
            };
            let sealed = match kim_cm::message::read_input(&mail) {
                Ok(m) => rt.block_on(kim_cm::message::seal(m, &key, &password, &cert_dir)),
                Err(e) => Err(e),
            };
            match sealed {
                Ok(s) => {
                    use std::io::Write;
                    let _ = std::io::stdout().write_all(&s.mail);
                    if !s.unreachable.is_empty() {
                        eprintln!(
                            "kim-cm: left out (no valid encryption certificate): {}",
                            s.unreachable.join(", ")
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("kim-cm: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Pki { out, accounts } => {
            let refs: Vec<&str> = accounts.iter().map(String::as_str).collect();
            match kim_cm::testbed::pki::make(&out, &refs) {
                Ok(pki) => {
                    println!("test PKI in {} (not for production)", out.display());
                    println!("  CA certificate      {}", pki.ca_cert.display());
                    println!("  PKCS#12 password in {}", pki.password_file.display());
                    println!("  directory folder    {}", pki.directory.display());
                    for a in &pki.accounts {
                        println!(
                            "  {}: {} {} {}",
                            a.address,
                            a.signing_pkcs12.display(),
                            a.encryption_pkcs12.display(),
                            a.aut_pkcs12.display()
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("kim-cm: cannot make the test PKI in {}: {e}", out.display());
                    ExitCode::from(1)
                }
            }
        }
        Command::AdminPassword { out } => {
            use kim_cm::admin::web::password;
            let hashed = kim_cm::admin::secrets::read_new("New admin password", None)
                .and_then(|p| password::hash(&p));
            match hashed.and_then(|h| {
                kim_cm::testbed::ca::write_private(&out, format!("{h}\n").as_bytes())
                    .map_err(|e| e.to_string())
            }) {
                Ok(()) => {
                    println!("admin password hash written to {}", out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("kim-cm: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Account {
            what: AccountCmd::Jwt { config, account },
        } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("kim-cm: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(cfg.log.format, &cfg.log.level);
            if cfg.account(&account).is_none() {
                eprintln!(
                    "kim-cm: config file {}: no [[account]] with address {account}",
                    config.display()
                );
                return ExitCode::from(2);
            }
            rt.block_on(async {
                use kim_cm::crypto::jwt::JwtSource;
                let providers = match serve::jwt_providers(&cfg) {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("kim-cm: config file {}: {e}", config.display());
                        return ExitCode::from(2);
                    }
                };
                match providers.jwt_for(&account).await {
                    Ok(token) => {
                        println!("{token}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("kim-cm: {e}");
                        ExitCode::from(1)
                    }
                }
            })
        }
        Command::Account {
            what: AccountCmd::Ops(op),
        } => {
            let config = op.config().to_path_buf();
            admin_command(&rt, &config, |ops| {
                Box::pin(kim_cm::admin::cli::run_account(op, ops))
            })
        }
        Command::Limits(login) => {
            let config = login.common.config.clone();
            admin_command(&rt, &config, |ops| {
                Box::pin(kim_cm::admin::cli::run_limits(login, ops))
            })
        }
        Command::ServiceInfo(common) => {
            let config = common.config.clone();
            admin_command(&rt, &config, |ops| {
                Box::pin(kim_cm::admin::cli::run_service_info(common, ops))
            })
        }
        Command::Helsenorge(c) => kim_cm::sidecar::helsenorge::cli::run(&rt, c, init_logging),
        Command::Careflex(c) => kim_cm::sidecar::careflex::cli::run(&rt, c),
        Command::Brs(c) => kim_cm::sidecar::brs::cli::run(&rt, c, init_logging),
        Command::Bench { what } => {
            init_logging(LogFormat::Text, "warn");
            rt.block_on(async {
                match kim_cm::bench::run(what).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("kim-cm: benchmark failed: {e}");
                        ExitCode::from(1)
                    }
                }
            })
        }
    }
}
