//! `flotilla member list|add|remove`: the control plane's membership, changed online through
//! any member's store endpoint (a new member is added as a learner, caught up, then made a
//! voter; a dead member is removed, and a replacement added, without downtime).

use std::collections::BTreeSet;

use raft_store::client::StoreClient;
use raft_store::NodeId;

#[derive(clap::Args)]
pub struct MemberArgs {
    /// Any member's store endpoint.
    #[arg(long, default_value = "127.0.0.1:2380")]
    endpoint: String,
    #[command(subcommand)]
    command: MemberCommand,
}

#[derive(clap::Subcommand)]
enum MemberCommand {
    /// The members: id, store address, role, and the leader's term.
    List,
    /// Add member ID (started with `flotilla server --id ID --join ...` or about to be) at
    /// its store address: as a learner until it has caught up, then as a voter.
    Add { id: NodeId, addr: String },
    /// Remove member ID from the voters (a dead one, or one being retired).
    Remove { id: NodeId },
}

pub async fn run(args: MemberArgs) -> anyhow::Result<()> {
    let client = StoreClient::new(&args.endpoint)?;
    let status = client.status().await?;
    match args.command {
        MemberCommand::List => {
            println!("{:<4} {:<24} {:<8} TERM", "ID", "ADDRESS", "ROLE");
            for (id, addr) in &status.addresses {
                let role = match (status.leader == Some(*id), status.voters.contains(id)) {
                    (true, _) => "leader",
                    (false, true) => "voter",
                    (false, false) => "learner",
                };
                println!("{id:<4} {addr:<24} {role:<8} {}", status.term);
            }
        }
        MemberCommand::Add { id, addr } => {
            if status.voters.contains(&id) {
                anyhow::bail!("member {id} is already a voter");
            }
            eprintln!("adding member {id} at {addr} as a learner (waits until it has caught up)");
            client.add_learner(id, &addr).await?;
            client.change_membership(status.voters.into_iter().chain([id]).collect()).await?;
            println!("member {id} added");
        }
        MemberCommand::Remove { id } => {
            if !status.voters.contains(&id) {
                anyhow::bail!("member {id} is not a voter");
            }
            let voters: BTreeSet<NodeId> = status.voters.into_iter().filter(|v| *v != id).collect();
            client.change_membership(voters).await?;
            println!("member {id} removed");
        }
    }
    Ok(())
}
