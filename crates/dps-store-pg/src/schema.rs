//! Versioned, idempotent schema migrations, applied at start by every node. Only portable SQL
//! (no advisory locks, no LISTEN/NOTIFY), so CockroachDB and YugabyteDB accept it too: nodes
//! starting together may race, and each step is `IF NOT EXISTS` and retried.

/// The schema version this build writes.
pub const CURRENT: i64 = 3;

/// Migration steps by version; `{s}` is replaced by the schema name.
pub const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1,
        &[
            "CREATE TABLE IF NOT EXISTS {s}.enrollments (scope TEXT NOT NULL, key TEXT NOT NULL, etag TEXT NOT NULL, doc BYTEA NOT NULL, PRIMARY KEY (scope, key))",
            "CREATE TABLE IF NOT EXISTS {s}.enrollment_groups (scope TEXT NOT NULL, key TEXT NOT NULL, etag TEXT NOT NULL, doc BYTEA NOT NULL, PRIMARY KEY (scope, key))",
            "CREATE TABLE IF NOT EXISTS {s}.group_versions (scope TEXT PRIMARY KEY, version BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS {s}.registrations (scope TEXT NOT NULL, key TEXT NOT NULL, group_key TEXT, etag TEXT NOT NULL, doc BYTEA NOT NULL, PRIMARY KEY (scope, key))",
            "CREATE INDEX IF NOT EXISTS registrations_by_group ON {s}.registrations (scope, group_key, key)",
            "CREATE TABLE IF NOT EXISTS {s}.operations (scope TEXT NOT NULL, id TEXT NOT NULL, created BIGINT NOT NULL, doc BYTEA NOT NULL, PRIMARY KEY (scope, id))",
            "CREATE INDEX IF NOT EXISTS operations_by_created ON {s}.operations (scope, created)",
            "CREATE TABLE IF NOT EXISTS {s}.meters (scope TEXT NOT NULL, kind TEXT NOT NULL, count BIGINT NOT NULL, PRIMARY KEY (scope, kind))",
        ],
    ),
    // 2: the scope's CA certificates; meters sharded over several rows per (scope, kind) so
    // concurrent registration commits do not serialize on one row lock (the version-1
    // `meters` rows keep counting in the totals).
    (
        2,
        &[
            "CREATE TABLE IF NOT EXISTS {s}.ca_certificates (scope TEXT NOT NULL, key TEXT NOT NULL, etag TEXT NOT NULL, doc BYTEA NOT NULL, PRIMARY KEY (scope, key))",
            "CREATE TABLE IF NOT EXISTS {s}.meter_shards (scope TEXT NOT NULL, kind TEXT NOT NULL, shard INT NOT NULL, count BIGINT NOT NULL, PRIMARY KEY (scope, kind, shard))",
        ],
    ),
    // 3: device identities of the hubs dpsd hosts itself (the `embedded` connector), keyed by
    // hub rather than by scope.
    (
        3,
        &[
            "CREATE TABLE IF NOT EXISTS {s}.hub_identities (hub TEXT NOT NULL, device_id TEXT NOT NULL, doc BYTEA NOT NULL, PRIMARY KEY (hub, device_id))",
        ],
    ),
];

/// Statements that create the schema and its version table.
pub fn bootstrap(schema: &str) -> Vec<String> {
    vec![
        format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {schema}.dps_meta (k TEXT PRIMARY KEY, v BIGINT NOT NULL)"
        ),
        format!(
            "INSERT INTO {schema}.dps_meta (k, v) VALUES ('schema_version', 0) ON CONFLICT (k) DO NOTHING"
        ),
    ]
}

/// Whether `name` is safe to splice into SQL as a schema name.
pub fn valid_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        assert!(valid_schema_name("dps"));
        assert!(valid_schema_name("dps_test_42"));
        for bad in ["", "1dps", "dps;drop", "Dps", "a b", &"x".repeat(64)] {
            assert!(!valid_schema_name(bad), "{bad}");
        }
    }

    #[test]
    fn migrations_are_ordered_and_end_at_current() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(versions.last(), Some(&CURRENT));
        assert!(
            MIGRATIONS
                .iter()
                .flat_map(|(_, s)| s.iter())
                .all(|s| s.contains("IF NOT EXISTS"))
        );
    }
}
