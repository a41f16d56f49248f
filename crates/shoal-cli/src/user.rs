//! `shoal user`: the cluster's users and their roles (an admin's commands). A user
//! connects with a client certificate that carries its name (`shoal cert
//! create-client NAME`).

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
        UserCommand::Create { name, role } => {
            client.create_user(&name, role.name()).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"created": name, "role": role.name()})
                );
            } else {
                println!("created user {name} ({})", role.name());
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
                    println!("{}", serde_json::json!({"name": u.name, "role": u.role}));
                }
            } else {
                let mut t = table::new(["USER", "ROLE"]);
                for u in users {
                    t.add_row([u.name, u.role]);
                }
                table::write(&t, &mut std::io::stdout().lock())?;
            }
        }
    }
    Ok(())
}
