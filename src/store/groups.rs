//! Berth groups: users a share can name together, managed by admins or
//! filled at sign-in from the OpenID Connect groups claim
//! (`oidc.groups_claim`) or the person's GitHub teams
//! (`github.teams_as_groups`).

use super::{found, now, write_err, Store, StoreError};
use crate::catalog;

/// Who put a user in a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberSource {
    /// An admin, through the API or `berth groups add`.
    Berth,
    /// The sign-in provider's groups claim, at the user's last sign-in.
    Oidc,
    /// The user's GitHub teams, at their last GitHub sign-in.
    Github,
}

impl MemberSource {
    /// The stored (and JSON) spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            MemberSource::Berth => "berth",
            MemberSource::Oidc => "oidc",
            MemberSource::Github => "github",
        }
    }
}

/// A stored group with its members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRow {
    pub id: i64,
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// (user id, user name, source), by user name.
    pub members: Vec<(i64, String, MemberSource)>,
}

impl GroupRow {
    /// The catalog's view of this group.
    pub fn to_catalog(&self) -> catalog::Group {
        catalog::Group {
            id: self.id,
            name: self.name.clone(),
            members: self.members.iter().map(|m| m.0).collect(),
        }
    }
}

/// Longest group name accepted from the sign-in provider (and the API).
pub const MAX_GROUP_NAME: usize = 128;

#[derive(sqlx::FromRow)]
struct GroupRecord {
    id: i64,
    name: String,
    created_at: String,
}

#[derive(sqlx::FromRow)]
struct MemberRecord {
    group_id: i64,
    user_id: i64,
    username: String,
    source: String,
}

impl Store {
    /// Creates an empty group.
    pub async fn create_group(&self, name: &str) -> Result<GroupRow, StoreError> {
        let rec: GroupRecord = on_pool!(self, |pool| sqlx::query_as(
            "INSERT INTO user_groups (name, created_at) VALUES ($1, $2) \
             RETURNING id, name, created_at"
        )
        .bind(name)
        .bind(now())
        .fetch_one(pool)
        .await)
        .map_err(|e| write_err(e, || format!("a group named {name} already exists")))?;
        Ok(GroupRow {
            id: rec.id,
            name: rec.name,
            created_at: rec.created_at,
            members: vec![],
        })
    }

    /// Every group with its members, by name.
    pub async fn list_groups(&self) -> Result<Vec<GroupRow>, StoreError> {
        self.groups_where("", None).await
    }

    /// The group with this name.
    pub async fn group_by_name(&self, name: &str) -> Result<GroupRow, StoreError> {
        let mut rows = self.groups_where("WHERE g.name = $1", Some(name)).await?;
        found(rows.pop(), || format!("no group named {name}"))
    }

    /// The group with this id.
    pub async fn group(&self, id: i64) -> Result<GroupRow, StoreError> {
        let rows = self.groups_where("", None).await?;
        found(rows.into_iter().find(|g| g.id == id), || {
            format!("no group with id {id}")
        })
    }

    async fn groups_where(
        &self,
        filter: &str,
        name: Option<&str>,
    ) -> Result<Vec<GroupRow>, StoreError> {
        let groups_sql = format!(
            "SELECT g.id, g.name, g.created_at FROM user_groups g {filter} ORDER BY g.name"
        );
        let members_sql = format!(
            "SELECT m.group_id, m.user_id, u.username, m.source FROM group_members m \
             JOIN users u ON u.id = m.user_id JOIN user_groups g ON g.id = m.group_id \
             {filter} ORDER BY u.username"
        );
        let groups: Vec<GroupRecord> = on_pool!(self, |pool| {
            let mut q = sqlx::query_as(&groups_sql);
            if let Some(n) = name {
                q = q.bind(n);
            }
            q.fetch_all(pool).await
        })?;
        let members: Vec<MemberRecord> = on_pool!(self, |pool| {
            let mut q = sqlx::query_as(&members_sql);
            if let Some(n) = name {
                q = q.bind(n);
            }
            q.fetch_all(pool).await
        })?;
        let mut rows: Vec<GroupRow> = groups
            .into_iter()
            .map(|g| GroupRow {
                id: g.id,
                name: g.name,
                created_at: g.created_at,
                members: vec![],
            })
            .collect();
        for m in members {
            let source = match m.source.as_str() {
                "oidc" => MemberSource::Oidc,
                "github" => MemberSource::Github,
                _ => MemberSource::Berth,
            };
            if let Some(g) = rows.iter_mut().find(|g| g.id == m.group_id) {
                g.members.push((m.user_id, m.username, source));
            }
        }
        Ok(rows)
    }

    /// Renames a group; its shares and members stay (they name it by id).
    pub async fn rename_group(&self, name: &str, new_name: &str) -> Result<GroupRow, StoreError> {
        let done = on_pool!(self, |pool| sqlx::query(
            "UPDATE user_groups SET name = $2 WHERE name = $1"
        )
        .bind(name)
        .bind(new_name)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| write_err(e, || format!("a group named {new_name} already exists")))?;
        if done == 0 {
            return Err(StoreError::NotFound(format!("no group named {name}")));
        }
        self.group_by_name(new_name).await
    }

    /// Deletes a group: it drops out of every share that named it.
    pub async fn delete_group(&self, name: &str) -> Result<GroupRow, StoreError> {
        let row = self.group_by_name(name).await?;
        on_pool!(self, |pool| sqlx::query(
            "DELETE FROM user_groups WHERE id = $1"
        )
        .bind(row.id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(row)
    }

    /// Puts a user in a group as an admin's choice (a member the provider
    /// put there becomes the admin's, so the next sign-in keeps them).
    pub async fn add_group_member(&self, group_id: i64, user_id: i64) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO group_members (group_id, user_id, source) VALUES ($1, $2, 'berth') \
             ON CONFLICT (group_id, user_id) DO UPDATE SET source = 'berth'"
        )
        .bind(group_id)
        .bind(user_id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| write_err(e, String::new))?;
        Ok(())
    }

    /// Takes a user out of a group; true if they were in it.
    pub async fn remove_group_member(
        &self,
        group_id: i64,
        user_id: i64,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM group_members WHERE group_id = $1 AND user_id = $2"
        )
        .bind(group_id)
        .bind(user_id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// Makes the user's memberships from `source` (a sign-in provider)
    /// exactly `names` (groups that do not exist yet are created);
    /// memberships from any other source (an admin's, another provider's)
    /// stay as they are. Returns the ids of the groups whose members changed.
    pub async fn sync_provider_groups(
        &self,
        user_id: i64,
        source: MemberSource,
        names: &[String],
    ) -> Result<Vec<i64>, StoreError> {
        debug_assert!(
            source != MemberSource::Berth,
            "admins' memberships are not synced"
        );
        let mut changed = Vec::new();
        let mut wanted = Vec::new();
        for name in names {
            let id = match self.group_by_name(name).await {
                Ok(g) => g.id,
                Err(StoreError::NotFound(_)) => match self.create_group(name).await {
                    Ok(g) => g.id,
                    // Another sign-in created it meanwhile.
                    Err(StoreError::Conflict(_)) => self.group_by_name(name).await?.id,
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            };
            wanted.push(id);
            let added = on_pool!(self, |pool| {
                sqlx::query(
                    "INSERT INTO group_members (group_id, user_id, source) VALUES ($1, $2, $3) \
                     ON CONFLICT (group_id, user_id) DO NOTHING",
                )
                .bind(id)
                .bind(user_id)
                .bind(source.as_str())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
            })?;
            if added > 0 {
                changed.push(id);
            }
        }
        let had: Vec<(i64,)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT group_id FROM group_members WHERE user_id = $1 AND source = $2"
        )
        .bind(user_id)
        .bind(source.as_str())
        .fetch_all(pool)
        .await)?;
        for (id,) in had.into_iter().filter(|(id,)| !wanted.contains(id)) {
            // Only if still this source's: an admin may have just made it theirs.
            let removed = on_pool!(self, |pool| {
                sqlx::query(
                "DELETE FROM group_members WHERE group_id = $1 AND user_id = $2 AND source = $3"
            )
            .bind(id)
            .bind(user_id)
            .bind(source.as_str())
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
            })?;
            if removed > 0 {
                changed.push(id);
            }
        }
        Ok(changed)
    }

    /// Every group, for the catalog snapshot.
    pub(super) async fn all_groups(&self) -> Result<Vec<catalog::Group>, StoreError> {
        Ok(self
            .list_groups()
            .await?
            .iter()
            .map(GroupRow::to_catalog)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewUser, Role};

    store_test! {
        async fn groups_members_oidc_sync_and_cascades(store: Store) {
            let (alice, _, _) = crate::store::seed(&store).await;
            let bob = store
                .create_user(NewUser {
                    username: "bob".into(),
                    email: "b@x".into(),
                    password: "password1".into(),
                    role: Role::Member,
                    organization: None,
                })
                .await
                .unwrap()
                .id;
            let eng = store.create_group("eng").await.unwrap();
            assert!(matches!(store.create_group("eng").await, Err(StoreError::Conflict(_))));
            store.add_group_member(eng.id, alice).await.unwrap();
            store.add_group_member(eng.id, bob).await.unwrap();
            let g = store.group_by_name("eng").await.unwrap();
            assert_eq!(
                g.members.iter().map(|m| m.1.as_str()).collect::<Vec<_>>(),
                ["alice", "bob"]
            );
            assert_eq!(g.to_catalog().members, vec![alice, bob]);
            // Renamed: same id, same members; the old name is free.
            let renamed = store.rename_group("eng", "platform").await.unwrap();
            assert_eq!((renamed.id, renamed.members.len()), (eng.id, 2));
            assert!(matches!(store.group_by_name("eng").await, Err(StoreError::NotFound(_))));
            // The provider's claim: creates "ops", joins it; keeps the
            // admin-given "platform"; a later sign-in without "ops" leaves it.
            let changed = store
                .sync_provider_groups(bob, MemberSource::Oidc, &["ops".into(), "platform".into()])
                .await
                .unwrap();
            let ops = store.group_by_name("ops").await.unwrap();
            assert_eq!(changed, vec![ops.id]);
            assert_eq!(ops.members[0].2, MemberSource::Oidc);
            let changed = store
                .sync_provider_groups(bob, MemberSource::Oidc, &[])
                .await
                .unwrap();
            assert_eq!(changed, vec![ops.id]);
            assert!(store.group_by_name("ops").await.unwrap().members.is_empty());
            assert_eq!(store.group(eng.id).await.unwrap().members.len(), 2);
            assert!(store.remove_group_member(eng.id, bob).await.unwrap());
            assert!(!store.remove_group_member(eng.id, bob).await.unwrap());
            // A deleted user leaves every group.
            store.delete_user("alice").await.unwrap();
            assert!(store.group(eng.id).await.unwrap().members.is_empty());
            store.delete_group("platform").await.unwrap();
            assert_eq!(store.all_groups().await.unwrap().len(), 1);
        }
    }

    store_test! {
        async fn github_memberships_are_their_own_and_leave_the_others_alone(store: Store) {
            let (alice, _, _) = crate::store::seed(&store).await;
            let by_hand = store.create_group("acme/backend").await.unwrap();
            let sources = |g: GroupRow| g.members.iter().map(|m| (m.1.clone(), m.2)).collect::<Vec<_>>();
            // The OIDC claim puts her in "ops"; her GitHub teams in
            // "acme/backend" (which an admin made) and "acme/web" (made now).
            store.sync_provider_groups(alice, MemberSource::Oidc, &["ops".into()]).await.unwrap();
            let changed = store
                .sync_provider_groups(alice, MemberSource::Github, &["acme/backend".into(), "acme/web".into()])
                .await
                .unwrap();
            let web = store.group_by_name("acme/web").await.unwrap();
            assert_eq!(changed, vec![by_hand.id, web.id]);
            assert_eq!(sources(web), [("alice".to_owned(), MemberSource::Github)]);
            // The same teams again change nothing.
            let again = store
                .sync_provider_groups(alice, MemberSource::Github, &["acme/backend".into(), "acme/web".into()])
                .await
                .unwrap();
            assert!(again.is_empty(), "{again:?}");
            // An admin makes "acme/web" hers by hand: leaving the team on
            // GitHub no longer takes her out of it; leaving acme/backend does.
            let web = store.group_by_name("acme/web").await.unwrap();
            store.add_group_member(web.id, alice).await.unwrap();
            let changed = store.sync_provider_groups(alice, MemberSource::Github, &[]).await.unwrap();
            assert_eq!(changed, vec![by_hand.id]);
            assert!(store.group_by_name("acme/backend").await.unwrap().members.is_empty());
            assert_eq!(
                sources(store.group_by_name("acme/web").await.unwrap()),
                [("alice".to_owned(), MemberSource::Berth)]
            );
            // A GitHub sign-in leaves the OIDC claim's memberships alone, and
            // the other way round.
            assert_eq!(
                sources(store.group_by_name("ops").await.unwrap()),
                [("alice".to_owned(), MemberSource::Oidc)]
            );
            store.sync_provider_groups(alice, MemberSource::Github, &["acme/backend".into()]).await.unwrap();
            store.sync_provider_groups(alice, MemberSource::Oidc, &[]).await.unwrap();
            assert!(store.group_by_name("ops").await.unwrap().members.is_empty());
            assert_eq!(
                sources(store.group_by_name("acme/backend").await.unwrap()),
                [("alice".to_owned(), MemberSource::Github)]
            );
        }
    }
}
