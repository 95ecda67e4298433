//! The `atrest` command.
//!
//! `atrest serve` runs the server (the AKV-compatible keys and secrets API, the admin API and the
//! data API over TLS); the client commands talk to it over HTTPS; `backup`, `restore`,
//! `anchor`, `audit` and `inspect` work on a data directory or a file.

#![forbid(unsafe_code)]

mod audit;
mod backup;
mod client;
mod data;
mod error;
mod inspect;
mod manage;
mod secret;
mod serve;

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

/// atrest: a self-hosted key vault and encryption-at-rest service.
#[derive(Parser)]
#[command(name = "atrest", version, about, long_about = None)]
struct Cli {
    /// Output format of every command: tables for people, JSON for scripts.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. On first start creates the data directory, a root key, a local CA
    /// and server certificate, the default tenant and vault, and an admin token.
    Serve(Box<serve::ServeArgs>),
    /// Online backup of the embedded default into a new directory: consistent copies of
    /// both databases, the blob bodies, TLS material and a manifest with hashes (never the
    /// root secrets). Runs beside a serving server.
    Backup {
        /// The directory to write (new or empty).
        #[arg(long)]
        to: std::path::PathBuf,
        #[command(flatten)]
        deployment: backup::Deployment,
    },
    /// Restore a backup into an empty data directory: verifies every hash and the root
    /// secrets' fingerprints, checks the audit chains, re-sets the rollback anchor.
    Restore {
        /// The backup directory.
        #[arg(long)]
        from: std::path::PathBuf,
        #[command(flatten)]
        deployment: backup::Deployment,
    },
    /// Scan every data-service row on the server (deployment admin): edited rows,
    /// including those whose lookup columns were changed and so answer 404 to a read.
    Verify {
        #[command(flatten)]
        conn: client::Conn,
    },
    /// The rollback anchor: `reset` accepts databases older than what was acknowledged.
    #[command(subcommand)]
    Anchor(backup::AnchorCommand),
    /// Verify, list and export the audit trail of a data directory.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Tenants (over HTTPS, through the admin API).
    Tenant(client::Managed<manage::TenantCmd>),
    /// Vaults and their settings.
    Vault(client::Managed<manage::VaultCmd>),
    /// Principals: users and service identities.
    Principal(client::Managed<manage::PrincipalCmd>),
    /// API tokens: issue, list, rotate, revoke.
    Token(client::Managed<manage::TokenCmd>),
    /// S3 access keys of a principal, for the S3 front end: issue, list, revoke.
    #[command(name = "s3-key")]
    S3Key(client::Managed<manage::S3KeyCmd>),
    /// Access policies: which principal may do what on a vault.
    Policy(client::Managed<manage::PolicyCmd>),
    /// Keys of a vault (through the AKV-compatible keys API), and their usage.
    Key(client::Managed<manage::KeyCmd>),
    /// Secrets of a vault (through the AKV-compatible secrets API): set, show, list,
    /// versions, update, delete, recover, purge, backup, restore.
    Secret(client::Managed<secret::SecretCmd>),
    /// Data-service resources: create, show, list, delete, encryption, roles.
    Resource(client::Managed<data::ResourceCmd>),
    /// Records of a resource (key → bytes, with ETags).
    Record(client::Managed<data::RecordCmd>),
    /// Blobs of a resource (streamed, any size).
    Blob(client::Managed<data::BlobCmd>),
    /// Transient messages of a resource (TTL ≤ 24 h).
    Message(client::Managed<data::MessageCmd>),
    /// Re-key and re-encrypt jobs.
    Job(client::Managed<data::JobCmd>),
    /// Print a shell completion script: `atrest completions bash > /etc/bash_completion.d/atrest`
    /// (or zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Describe a sealed record or stream file from its header: format, version,
    /// algorithms, segment size and plaintext length. Reads no key and no plaintext.
    Inspect {
        /// The file to inspect.
        file: std::path::PathBuf,
    },
}

impl Command {
    /// Hands the global `--output` to the command's settings.
    fn set_output(&mut self, output: Output) {
        match self {
            Command::Backup { deployment, .. } | Command::Restore { deployment, .. } => deployment.output = output,
            Command::Verify { conn } => conn.output = output,
            Command::Anchor(backup::AnchorCommand::Reset { deployment }) => deployment.output = output,
            Command::Audit(
                audit::AuditCommand::Verify { output: o, .. } | audit::AuditCommand::List { output: o, .. },
            ) => {
                *o = output;
            }
            Command::Tenant(m) => m.conn.output = output,
            Command::Vault(m) => m.conn.output = output,
            Command::Principal(m) => m.conn.output = output,
            Command::Token(m) => m.conn.output = output,
            Command::S3Key(m) => m.conn.output = output,
            Command::Policy(m) => m.conn.output = output,
            Command::Key(m) => m.conn.output = output,
            Command::Secret(m) => m.conn.output = output,
            Command::Resource(m) => m.conn.output = output,
            Command::Record(m) => m.conn.output = output,
            Command::Blob(m) => m.conn.output = output,
            Command::Message(m) => m.conn.output = output,
            Command::Job(m) => m.conn.output = output,
            _ => {}
        }
    }
}

/// How to print results.
#[derive(Clone, Copy, Default, ValueEnum)]
pub(crate) enum Output {
    /// Aligned `field: value` lines for people.
    #[default]
    Table,
    /// One JSON object, for scripts.
    Json,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    cli.command.set_output(cli.output);
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Backup { to, deployment } => backup::backup(&deployment, &to),
        Command::Restore { from, deployment } => backup::restore(&deployment, &from),
        Command::Anchor(cmd) => backup::anchor(&cmd),
        Command::Verify { conn } => backup::verify(&conn),
        Command::Inspect { file } => inspect::run(&file, cli.output),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "atrest", &mut out);
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        Command::Tenant(m) => manage::tenant(m),
        Command::Vault(m) => manage::vault(m),
        Command::Principal(m) => manage::principal(m),
        Command::Token(m) => manage::token(m),
        Command::S3Key(m) => manage::s3_key(m),
        Command::Policy(m) => manage::policy(m),
        Command::Key(m) => manage::key(m),
        Command::Secret(m) => secret::secret(m),
        Command::Resource(m) => data::resource(m),
        Command::Record(m) => data::record(m),
        Command::Blob(m) => data::blob(m),
        Command::Message(m) => data::message(m),
        Command::Job(m) => data::job(m),
    };
    match result {
        Ok(text) => {
            // A reader that went away (`atrest … | head`) is not an error worth a panic.
            use std::io::Write as _;
            match std::io::stdout().lock().write_all(text.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("error: cannot write the output: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    /// The systemd unit in `examples/` starts a valid `atrest serve` command line with the
    /// example configuration's path, and its environment file sets only known variables.
    #[test]
    fn the_example_service_unit_is_valid() {
        use clap::Parser as _;
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let unit = std::fs::read_to_string(examples.join("atrest.service")).unwrap();
        let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("an ExecStart line");
        let argv: Vec<&str> = exec.split_whitespace().collect();
        assert!(argv[0].ends_with("/atrest"), "{exec}");
        let cli = super::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("ExecStart: {e}"));
        assert!(matches!(cli.command, super::Command::Serve(_)), "{exec}");
        assert!(exec.contains("--config /etc/atrest/atrest.toml"), "{exec}");
        assert!(unit.contains("EnvironmentFile=-/etc/atrest/atrest.env"));
        let env = std::fs::read_to_string(examples.join("atrest.env")).unwrap();
        for l in env.lines().map(|l| l.trim_start_matches("# ")).filter(|l| l.contains('=') && !l.contains(' ')) {
            let name = l.split('=').next().unwrap();
            assert!(name.starts_with("AWS_") || name.starts_with("ATREST_"), "{name}");
        }
    }

    /// Every argument and flag of every command says what it is (`--help` lists no bare
    /// `<NAME>`).
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if matches!(id, "help" | "version") || a.is_hide_set() {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&<super::Cli as clap::CommandFactory>::command(), "atrest", &mut missing);
        assert!(missing.is_empty(), "arguments without help:\n{}", missing.join("\n"));
    }
}
