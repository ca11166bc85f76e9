//! `berth ports`: a workspace agent's listening, shared and named ports.

use super::target::resolve_target;
use super::{print_json, signed_in};
use crate::client::{format, ClientError, PortsArgs};

/// `berth ports`.
pub(super) async fn ports(a: PortsArgs) -> Result<(), ClientError> {
    let s = signed_in()?;
    let t = resolve_target(&s, &a.target).await?;
    let answer = s.get_ok(&t.ports_path()).await?;
    if a.json {
        print_json(&answer);
    } else {
        if let Some(w) = answer["warning"].as_str() {
            eprintln!("berth: note: {w}");
        }
        print!("{}", format::ports_table(&answer));
    }
    Ok(())
}
