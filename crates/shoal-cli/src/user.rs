//! `shoal user`: the cluster's users, their roles and passwords (an admin's
//! commands). A user connects with a client certificate that carries its name
//! (`shoal cert create-client NAME`), or with its password when it has one (over
//! TLS; the password is read as [`crate::password`] says).

use clap::{Subcommand, ValueEnum};

use crate::table;
use crate::{ClientArgs, Format};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Everything: nodes, ranges, users, and the data.
    Admin,
    /// Reads and writes of data.
    Readwrite,
    /// Reads of data and of the cluster's state.
    Readonly,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Readwrite => "readwrite",
            Role::Readonly => "readonly",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (refused if the name is taken).
    Create {
        /// The user's name: what its client certificate's name is.
        name: String,
        #[arg(long, value_enum)]
        role: Role,
        /// Give the user a password too (from SHOAL_NEW_PASSWORD, or asked).
        #[arg(long)]
        password: bool,
    },
    /// Set a user's password (from SHOAL_NEW_PASSWORD, or asked), or remove it.
    Passwd {
        name: String,
        /// Remove the password: the user logs in by certificate only.
        #[arg(long)]
        clear: bool,
    },
    /// Drop a user: its calls are refused within seconds on every node.
    Drop { name: String },
    /// List the users and their roles.
    Ls,
}

pub async fn run(args: &ClientArgs, op: UserCommand) -> anyhow::Result<()> {
    let client = args.client()?;
    let json = args.format == Format::Json;
    match op {
        UserCommand::Create {
            name,
            role,
            password,
        } => {
            let password = password
                .then(|| crate::password::new_password(&name))
                .transpose()?;
            client
                .create_user(&name, role.name(), password.as_deref())
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"created": name, "role": role.name()})
                );
            } else {
                println!("created user {name} ({})", role.name());
            }
        }
        UserCommand::Passwd { name, clear } => {
            let password = (!clear)
                .then(|| crate::password::new_password(&name))
                .transpose()?;
            client.set_password(&name, password.as_deref()).await?;
            let what = if clear { "removed" } else { "set" };
            if json {
                println!("{}", serde_json::json!({"user": name, "password": what}));
            } else {
                println!("password of {name} {what}");
            }
        }
        UserCommand::Drop { name } => {
            client.drop_user(&name).await?;
            if json {
                println!("{}", serde_json::json!({"dropped": name}));
            } else {
                println!("dropped user {name}");
            }
        }
        UserCommand::Ls => {
            let users = client.users().await?;
            if json {
                for u in users {
                    println!(
                        "{}",
                        serde_json::json!({"name": u.name, "role": u.role, "password": u.has_password})
                    );
                }
            } else {
                let mut t = table::new(["USER", "ROLE", "PASSWORD"]);
                for u in users {
                    let password = if u.has_password { "yes" } else { "no" };
                    t.add_row([u.name, u.role, password.into()]);
                }
                table::write(&t, &mut std::io::stdout().lock())?;
            }
        }
    }
    Ok(())
}
