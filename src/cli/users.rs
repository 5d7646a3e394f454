//! `switchboard users add|list|remove`: the users of digest authentication, kept in the store as
//! HA1 hashes (MD5 and SHA-256), never as plaintext.

use crate::serve::{open_store, realm};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

/// `users` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum UsersCommand {
    /// Add a user, or change their password.
    Add {
        /// The user name (the user part of their address).
        name: String,
        /// The password (visible in the process list: prefer --password-stdin).
        #[arg(long, conflicts_with = "password_stdin")]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Remove a user.
    Remove {
        /// The user name.
        name: String,
    },
}

/// Options shared by the `users` subcommands.
#[derive(Debug, clap::Args)]
pub(crate) struct UsersArgs {
    /// The data directory of the service (as `serve --data`).
    #[arg(long = "data", value_name = "DIR", env = "SWITCHBOARD_DATA", global = true)]
    data: Option<PathBuf>,
    /// The service's domain: the digest realm the hashes are made for (as `serve --domain`).
    #[arg(long, value_name = "DOMAIN", global = true)]
    domain: Option<String>,
    #[command(subcommand)]
    command: UsersCommand,
}

pub(crate) fn run(args: UsersArgs) -> ExitCode {
    match go(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e}");
            ExitCode::from(2)
        }
    }
}

fn go(args: UsersArgs) -> Result<(), String> {
    let data = args.data.unwrap_or_else(switchboard::store::default_data_dir);
    if data.as_os_str() == "none" {
        return Err("users need a data directory (--data DIR), not none".into());
    }
    let mut store = open_store(Some(&data))?;
    match args.command {
        UsersCommand::Add { name, password, password_stdin } => {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/".contains(c)) {
                return Err(format!("not a valid user name: {name:?}"));
            }
            let password = match (password, password_stdin) {
                (Some(p), _) => {
                    eprintln!("switchboard: warning: a password on the command line can be read by other local users (ps, /proc, shell history); use --password-stdin");
                    p
                }
                (None, true) => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("cannot read the password: {e}"))?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
                (None, false) => return Err("give --password P or --password-stdin".into()),
            };
            if password.is_empty() {
                return Err("the password is empty".into());
            }
            let realm = realm(args.domain.as_deref());
            let u = switchboard::auth::UserRecord::new(name.as_str(), realm.as_str(), &password);
            let record = switchboard::store::UserRecord {
                name: u.name.clone(),
                realm: u.realm.clone(),
                ha1_md5: u.ha1_md5.clone(),
                ha1_sha256: u.ha1_sha256.clone(),
            };
            store.put_user(&record).map_err(|e| e.to_string())?;
            store.flush().map_err(|e| e.to_string())?;
            println!("user {name} saved (realm {realm}) in {}", data.display());
        }
        UsersCommand::List => {
            for u in store.users().map_err(|e| e.to_string())? {
                println!("{}\trealm {}", u.name, u.realm);
            }
        }
        UsersCommand::Remove { name } => {
            if !store.remove_user(&name).map_err(|e| e.to_string())? {
                return Err(format!("no user {name}"));
            }
            store.flush().map_err(|e| e.to_string())?;
            println!("user {name} removed");
        }
    }
    Ok(())
}

/// Options of `switchboard registrations`.
#[derive(Debug, clap::Args)]
pub(crate) struct RegistrationsArgs {
    /// The data directory of the service (as `serve --data`).
    #[arg(long = "data", value_name = "DIR", env = "SWITCHBOARD_DATA")]
    data: Option<PathBuf>,
    /// Print one JSON object per binding.
    #[arg(long)]
    json: bool,
}

/// Lists the registrations in the store with their remaining expiry (expired ones are left out).
pub(crate) fn list_registrations(args: RegistrationsArgs) -> ExitCode {
    let data = args.data.unwrap_or_else(switchboard::store::default_data_dir);
    let bindings = open_store(Some(&data)).and_then(|s| s.bindings().map_err(|e| e.to_string()));
    let bindings = match bindings {
        Ok(b) => b,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut live = 0;
    for b in bindings.iter().filter(|b| b.expires_at > now) {
        live += 1;
        let remaining = b.expires_at - now;
        if args.json {
            println!(
                "{}",
                serde_json::json!({"aor": b.aor, "contact": b.contact, "expires_in": remaining, "q": f64::from(b.q_millis) / 1000.0, "source": b.source})
            );
        } else {
            println!("{}\t{}\texpires in {remaining} s\tq={}\tfrom {}", b.aor, b.contact, f64::from(b.q_millis) / 1000.0, b.source);
        }
    }
    eprintln!("{live} live registrations in {}", data.display());
    ExitCode::SUCCESS
}
