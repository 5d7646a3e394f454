//! `switchboard users add|passwd|list|remove`: the users of digest authentication, kept in the
//! store as HA1 hashes (MD5 and SHA-256), never as plaintext.
//!
//! The store is the record; a running service is told of each change over its control socket
//! (`user-put`, `user-remove`, see `control.rs`) and applies it at once: a new user can register,
//! a new password is the one checked, a removed user loses their bindings and can no longer
//! register or call. With no service running the change simply waits in the store.
//!
//! Which realm a new user's hashes are made for (the HA1 covers the realm, RFC 3261 §22.4):
//! `--realm`, else `--domain`, else the `realm`/`domain` of `--config`; else the realm of the
//! running service (asked over the control socket), else the realm the stored users already have,
//! else `switchboard` (what `serve` challenges with when it has no domain). A realm that differs
//! from the running service's is refused before anything is written.

use crate::control::{ask, user_json, AskError};
use crate::serve::{open_store, realm, store_name};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use switchboard::store::{Store, UserRecord};

/// The password flags shared by `add` and `passwd`.
#[derive(Debug, clap::Args)]
pub(crate) struct PasswordArgs {
    /// The password (other local users can read it in the process list and your shell history:
    /// prefer --password-stdin).
    #[arg(long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

/// `users` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum UsersCommand {
    /// Add a user (or change their password); a running service takes them at once.
    Add {
        /// The user name (the user part of their address).
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Change an existing user's password, keeping their realm; a running service checks the new
    /// one from the next request.
    Passwd {
        /// The user name.
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// List users.
    List,
    /// Remove a user; a running service drops their registrations and refuses them from then on.
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
    /// The shared store of the service (as `serve --store redis://HOST:PORT/DB`), instead of the
    /// data directory's SQLite file.
    #[arg(long = "store", value_name = "URL", env = "SWITCHBOARD_STORE", global = true)]
    store: Option<String>,
    /// The service's domain: the digest realm the hashes are made for (as `serve --domain`)
    /// [default: see --realm].
    #[arg(long, value_name = "DOMAIN", global = true)]
    domain: Option<String>,
    /// The digest realm the hashes are made for (as `serve --realm`) [default: --domain, else the
    /// realm/domain of --config, else the running service's realm, else the stored users' realm,
    /// else `switchboard`].
    #[arg(long, value_name = "REALM", global = true)]
    realm: Option<String>,
    /// The service's configuration file, for its realm or domain (as `serve --config`).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// The running service's control socket (as `serve --control`) [default: switchboard.sock in
    /// the data directory].
    #[arg(long, value_name = "PATH", global = true)]
    control: Option<PathBuf>,
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

fn read_password(p: PasswordArgs) -> Result<String, String> {
    let password = match (p.password, p.password_stdin) {
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
    Ok(password)
}

fn record(name: &str, realm: &str, password: &str) -> UserRecord {
    let u = switchboard::auth::UserRecord::new(name, realm, password);
    UserRecord { name: u.name, realm: u.realm, ha1_md5: u.ha1_md5, ha1_sha256: u.ha1_sha256 }
}

/// The running service's realm: `Ok(None)` when no service answers at `control`, `Ok(Some(None))`
/// when it runs with authentication off.
fn service_realm(control: &Path) -> Result<Option<Option<String>>, String> {
    match ask(control, "realm") {
        Ok(v) => Ok(Some(v.get("realm").and_then(|r| r.as_str()).map(str::to_owned))),
        Err(AskError::NotRunning) => Ok(None),
        Err(AskError::Io(e)) => Err(format!("cannot ask the service at {}: {e}", control.display())),
    }
}

/// Tells a running service of a change; says so when none runs. With a shared store (`shared`)
/// every instance on it follows the change by itself (`sb:changes`, issue 17), so a missing
/// control socket is no news.
fn tell(control: &Path, line: &str, shared: bool) -> Result<(), String> {
    if shared {
        println!("every instance on this store takes the change at once");
    }
    match ask(control, line) {
        Ok(v) => match v.get("error").and_then(|e| e.as_str()) {
            Some(e) => Err(format!("saved in the store, but the running service refused it: {e}")),
            None => {
                println!("the running service has it now");
                Ok(())
            }
        },
        Err(AskError::NotRunning) if shared => Ok(()),
        Err(AskError::NotRunning) => {
            println!("no service running at {}: it takes the change when it starts", control.display());
            Ok(())
        }
        Err(AskError::Io(e)) => Err(format!("saved in the store, but the service at {} did not answer: {e}", control.display())),
    }
}

/// The realm for a new user (see the module doc).
fn realm_for_new(
    flags: (Option<String>, Option<String>, Option<&Path>),
    store: &dyn Store,
    running: &Option<Option<String>>,
) -> Result<String, String> {
    let (realm_flag, domain_flag, config) = flags;
    let file = match config {
        Some(p) => switchboard::cli::load_config(p)?,
        None => switchboard::service::config::FileConfig::default(),
    };
    let explicit = realm_flag.or(domain_flag).or(file.realm).or(file.domain);
    if let Some(r) = explicit {
        return Ok(r);
    }
    if let Some(Some(r)) = running {
        return Ok(r.clone());
    }
    let mut stored: Vec<String> = store.users().map_err(|e| e.to_string())?.into_iter().map(|u| u.realm).collect();
    stored.sort_unstable();
    stored.dedup();
    Ok(match stored.as_slice() {
        [one] => one.clone(),
        _ => realm(None),
    })
}

/// A user name as RFC 3261 §25.1 allows in the user part, unescaped.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/".contains(c))
}

fn go(args: UsersArgs) -> Result<(), String> {
    let data = args.data.clone().unwrap_or_else(switchboard::store::default_data_dir);
    if data.as_os_str() == "none" && args.store.is_none() {
        return Err("users need a data directory (--data DIR), not none, or a shared store (--store URL)".into());
    }
    let control = args.control.clone().unwrap_or_else(|| crate::control::default_path(&data));
    let mut store = open_store(args.store.as_deref(), Some(&data))?;
    let place = store_name(args.store.as_deref(), &data);
    if let UsersCommand::Add { name, .. } | UsersCommand::Passwd { name, .. } = &args.command {
        if !valid_name(name) {
            return Err(format!("not a valid user name: {name:?}"));
        }
    }
    match args.command {
        UsersCommand::Add { name, password } => {
            let running = service_realm(&control)?;
            let realm = realm_for_new((args.realm, args.domain, args.config.as_deref()), store.as_ref(), &running)?;
            if let Some(Some(service)) = &running {
                if *service != realm {
                    return Err(format!(
                        "the running service challenges with realm {service}, not {realm}: add the user with --realm {service} (or restart the service with --realm {realm})"
                    ));
                }
            }
            let password = read_password(password)?;
            let r = record(&name, &realm, &password);
            store.put_user(&r).map_err(|e| e.to_string())?;
            store.flush().map_err(|e| e.to_string())?;
            println!("user {name} saved (realm {realm}) in {place}");
            tell(&control, &format!("user-put {}", user_json(&r)), args.store.is_some())?;
        }
        UsersCommand::Passwd { name, password } => {
            let Some(old) = store.users().map_err(|e| e.to_string())?.into_iter().find(|u| u.name == name) else {
                return Err(format!("no user {name} (add them with `switchboard users add {name}`)"));
            };
            let password = read_password(password)?;
            let r = record(&name, &old.realm, &password);
            store.put_user(&r).map_err(|e| e.to_string())?;
            store.flush().map_err(|e| e.to_string())?;
            println!("password of {name} changed (realm {}) in {place}", old.realm);
            tell(&control, &format!("user-put {}", user_json(&r)), args.store.is_some())?;
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
            tell(&control, &format!("user-remove {name}"), args.store.is_some())?;
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
    /// The shared store of the service (as `serve --store redis://HOST:PORT/DB`).
    #[arg(long = "store", value_name = "URL", env = "SWITCHBOARD_STORE")]
    store: Option<String>,
    /// Print one JSON object per binding.
    #[arg(long)]
    json: bool,
}

/// Lists the registrations in the store with their remaining expiry (expired ones are left out).
pub(crate) fn list_registrations(args: RegistrationsArgs) -> ExitCode {
    let data = args.data.unwrap_or_else(switchboard::store::default_data_dir);
    let bindings = open_store(args.store.as_deref(), Some(&data)).and_then(|s| s.bindings().map_err(|e| e.to_string()));
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
    eprintln!("{live} live registrations in {}", store_name(args.store.as_deref(), &data));
    ExitCode::SUCCESS
}
