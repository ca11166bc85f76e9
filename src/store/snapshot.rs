//! The catalog's starting point: everything the store holds that the
//! catalog keeps, as changes to apply to an empty one.

use super::{LinkRow, Store, StoreError, TUNNEL_STALE_SECS};
use crate::catalog;
use time::OffsetDateTime;

impl Store {
    /// Everything the catalog holds, as changes to apply to an empty one:
    /// users, then API tokens, workspaces and agents.
    pub async fn snapshot(&self) -> Result<Vec<catalog::Change>, StoreError> {
        let users = self.list_users().await?;
        let tokens = self.list_api_tokens().await?;
        let workspaces = self.list_workspaces(None).await?;
        let agents = self.list_all_agents().await?;
        let mut out =
            Vec::with_capacity(users.len() + tokens.len() + workspaces.len() + agents.len());
        out.extend(users.iter().map(|u| catalog::Change::User(u.to_catalog())));
        out.extend(tokens.iter().map(|t| catalog::Change::ApiToken {
            hash: t.token_hash,
            user_id: t.user_id,
        }));
        out.extend(
            workspaces
                .iter()
                .map(|w| catalog::Change::Workspace(w.to_catalog())),
        );
        out.extend(
            agents
                .iter()
                .map(|a| catalog::Change::Agent(a.to_catalog())),
        );
        // Groups before shares, so a share's groups are known when it comes.
        out.extend(
            self.all_groups()
                .await?
                .into_iter()
                .map(catalog::Change::Group),
        );
        let (shares, apps) = self.all_shares_and_apps().await?;
        out.extend(shares.into_iter().map(catalog::Change::Share));
        out.extend(apps.into_iter().map(catalog::Change::App));
        out.extend(
            self.live_links()
                .await?
                .iter()
                .filter_map(LinkRow::to_catalog)
                .map(catalog::Change::Link),
        );
        let now_unix = OffsetDateTime::now_utc().unix_timestamp();
        out.extend(
            self.live_sessions(now_unix)
                .await?
                .into_iter()
                .map(catalog::Change::Session),
        );
        out.extend(
            self.live_tunnels(now_unix - TUNNEL_STALE_SECS)
                .await?
                .into_iter()
                .map(|(agent_id, holder)| catalog::Change::TunnelAt { agent_id, holder }),
        );
        Ok(out)
    }
}
