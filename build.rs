// Rebuild when a migration is added or changed: sqlx::migrate! embeds both
// backends' directories (migrations/sqlite and migrations/postgres).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=migrations/sqlite");
    println!("cargo:rerun-if-changed=migrations/postgres");
}
