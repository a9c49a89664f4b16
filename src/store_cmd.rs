//! `flotilla store`: a small client for a member's store API (status, get, put, members).

use std::collections::BTreeSet;

use raft_store::client::StoreClient;
use raft_store::{NodeId, RangeRequest};

#[derive(clap::Args)]
pub struct StoreArgs {
    /// Member to talk to.
    #[arg(long, default_value = "127.0.0.1:2380")]
    endpoint: String,
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(clap::Subcommand)]
enum StoreCommand {
    /// The member's view of the cluster, as JSON.
    Status,
    /// Read a key (or every key under a prefix with --prefix), linearizably.
    Get {
        key: String,
        #[arg(long)]
        prefix: bool,
    },
    /// Write a key.
    Put { key: String, value: String },
    /// Add a member as a learner, then make it a voter.
    AddMember { id: NodeId, addr: String },
    /// Remove a voting member.
    RemoveMember { id: NodeId },
}

pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    let client = StoreClient::new(&args.endpoint)?;
    match args.command {
        StoreCommand::Status => println!("{}", serde_json::to_string_pretty(&client.status().await?)?),
        StoreCommand::Get { key, prefix } => {
            let req = if prefix { RangeRequest::prefix(key) } else { RangeRequest::key(key) };
            let resp = client.range(&req, true).await?;
            for kv in resp.kvs {
                println!(
                    "{}\t{}\t{}",
                    String::from_utf8_lossy(&kv.key),
                    kv.mod_revision,
                    String::from_utf8_lossy(&kv.value)
                );
            }
        }
        StoreCommand::Put { key, value } => println!("revision {}", client.put(key, value).await?),
        StoreCommand::AddMember { id, addr } => {
            let voters = client.status().await?.voters;
            client.add_learner(id, &addr).await?;
            client.change_membership(voters.into_iter().chain([id]).collect()).await?;
            println!("member {id} added");
        }
        StoreCommand::RemoveMember { id } => {
            let voters: BTreeSet<NodeId> = client.status().await?.voters.into_iter().filter(|v| *v != id).collect();
            client.change_membership(voters).await?;
            println!("member {id} removed");
        }
    }
    Ok(())
}
