//! Brings the Redis keyspace to [`SCHEMA_VERSION`], once, under a lock; see `migrations/README.md`.
//!
//! Migrations are JSON files in `migrations/`, embedded at build time. Each names the steps (from
//! a small fixed set of operations implemented here) that turn the previous schema into its own.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::keys::{Keys, SCHEMA_VERSION};
use super::new_token;
use super::redis::Inner;
use super::StoreError;

/// The embedded migration files, in order.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_initial.json",
        include_str!("../../migrations/0001_initial.json"),
    ),
    (
        "0002_flag_versions_index.json",
        include_str!("../../migrations/0002_flag_versions_index.json"),
    ),
];

/// How long the migration lock lives unless renewed.
const LOCK_TTL: Duration = Duration::from_secs(30);

/// How long a replica waits for another one to finish migrating.
const WAIT_FOR_OTHERS: Duration = Duration::from_secs(120);

/// One migration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// The schema version this migration produces.
    pub version: u32,
    /// Short name, as in the file name.
    pub name: String,
    /// What changes with this schema version.
    pub description: String,
    /// What to do, in order.
    pub steps: Vec<Step>,
}

/// The operations a migration may use.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Moves every `{prefix}:v{n-1}:` key to `{prefix}:v{n}:`.
    RenameKeyspace,
    /// Builds the `{flags}:versions` hash from the flags hashes.
    IndexFlagVersions,
}

/// The embedded migrations, parsed and checked (numbered 1, 2, … up to [`SCHEMA_VERSION`]).
pub fn migrations() -> Result<Vec<Migration>, StoreError> {
    let mut parsed = Vec::with_capacity(MIGRATIONS.len());
    for (index, (file, text)) in MIGRATIONS.iter().enumerate() {
        let migration: Migration = serde_json::from_str(text)
            .map_err(|error| StoreError::Config(format!("migration {file}: {error}")))?;
        let expected = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let prefix = format!("{expected:04}_{}.json", migration.name);
        if migration.version != expected || *file != prefix {
            return Err(StoreError::Config(format!(
                "migration {file} declares version {} and name {:?}; expected {prefix}",
                migration.version, migration.name
            )));
        }
        parsed.push(migration);
    }
    if parsed.last().map(|m| m.version) != Some(SCHEMA_VERSION) {
        return Err(StoreError::Config(format!(
            "the last migration does not produce schema version {SCHEMA_VERSION}"
        )));
    }
    Ok(parsed)
}

/// The keyspace's recorded schema version (0 when none is recorded).
pub(crate) async fn read_version(inner: &Inner) -> Result<u32, StoreError> {
    let key = inner.keys.schema_version();
    let value: Option<String> = inner.query(redis::cmd("GET").arg(&key)).await?;
    value.map_or(Ok(0), |v| {
        v.parse().map_err(|_| StoreError::Corrupt {
            key,
            reason: format!("schema version {v:?} is not a number"),
        })
    })
}

/// Checks the version; migrates under the lock when it is older; waits when another replica is
/// migrating. Fails with [`StoreError::SchemaTooNew`] when the keyspace is newer than this build.
pub(crate) async fn run(inner: &Inner) -> Result<(), StoreError> {
    let migrations = migrations()?;
    let deadline = Instant::now() + WAIT_FOR_OTHERS;
    let mut logged_wait = false;
    loop {
        let found = check(inner, read_version(inner).await?)?;
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        let lock = Lock::try_take(inner).await?;
        if let Some(lock) = lock {
            let result = migrate_locked(inner, &lock, &migrations).await;
            lock.release(inner).await;
            return result;
        }
        if !logged_wait {
            tracing::info!(
                found,
                target = SCHEMA_VERSION,
                "another replica is migrating the redis keyspace; waiting"
            );
            logged_wait = true;
        }
        if Instant::now() >= deadline {
            return Err(StoreError::MigrationLockTimeout(SCHEMA_VERSION));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn check(inner: &Inner, found: u32) -> Result<u32, StoreError> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            prefix: inner.keys.prefix().to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

/// Applies every pending migration; the caller holds the lock.
async fn migrate_locked(
    inner: &Inner,
    lock: &Lock,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    // Another replica may have finished between our check and taking the lock.
    let found = check(inner, read_version(inner).await?)?;
    for migration in migrations.iter().filter(|m| m.version > found) {
        tracing::info!(version = migration.version, name = %migration.name, "migrating the redis keyspace");
        for step in &migration.steps {
            // A keyspace without a recorded version holds nothing of ours to move; whatever
            // matches an old namespace there belongs to someone else (e.g. the Kotlin proxy).
            if found == 0 && *step == Step::RenameKeyspace {
                continue;
            }
            apply(inner, lock, step, migration.version).await?;
        }
        lock.renew(inner).await?;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let line = format!("{} {} {stamp}", migration.version, migration.name);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(inner.keys.schema_version())
            .arg(migration.version)
            .ignore()
            .cmd("RPUSH")
            .arg(inner.keys.migration_log())
            .arg(line)
            .ignore();
        inner.pipe::<()>(&pipe).await?;
    }
    Ok(())
}

/// Runs one step producing schema `version`, page by page (`SCAN`, one pipeline per page),
/// renewing the lock between pages.
async fn apply(inner: &Inner, lock: &Lock, step: &Step, version: u32) -> Result<(), StoreError> {
    let prefix = inner.keys.prefix();
    let to = Keys::at(prefix, version);
    let from = Keys::at(prefix, version.saturating_sub(1)).base();
    let pattern = match step {
        Step::RenameKeyspace => format!("{}:*", glob_escape(&from)),
        Step::IndexFlagVersions => format!("{}*", glob_escape(&to.flags(""))),
    };
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = inner
            .query(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(inner.scan_count),
            )
            .await?;
        if !keys.is_empty() {
            match step {
                Step::RenameKeyspace => rename_page(inner, &keys, &from, &to.base()).await?,
                Step::IndexFlagVersions => index_page(inner, &keys, &to).await?,
            }
        }
        lock.renew(inner).await?;
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// `RENAMENX` each key from the `from` namespace to the `to` one (a key already present in the
/// new namespace wins).
async fn rename_page(
    inner: &Inner,
    keys: &[String],
    from: &str,
    to: &str,
) -> Result<(), StoreError> {
    let mut pipe = redis::pipe();
    for key in keys {
        if let Some(rest) = key.strip_prefix(from) {
            pipe.cmd("RENAMENX")
                .arg(key)
                .arg(format!("{to}{rest}"))
                .ignore();
        }
    }
    inner.pipe::<()>(&pipe).await
}

/// Records each flags hash's version in the versions index.
async fn index_page(inner: &Inner, keys: &[String], to: &Keys) -> Result<(), StoreError> {
    let mut reads = redis::pipe();
    for key in keys {
        reads.cmd("HGET").arg(key).arg("version");
    }
    let versions: Vec<Option<u64>> = inner.pipe(&reads).await?;
    let mut writes = redis::pipe();
    for (key, version) in keys.iter().zip(versions) {
        if let (Some(deployment), Some(version)) = (to.deployment_of(key), version) {
            writes
                .cmd("HSET")
                .arg(to.flag_versions())
                .arg(deployment)
                .arg(version)
                .ignore();
        }
    }
    inner.pipe::<()>(&writes).await
}

/// Escapes glob metacharacters for `SCAN MATCH`.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The migration lock, held with a random token.
struct Lock {
    token: String,
}

impl Lock {
    async fn try_take(inner: &Inner) -> Result<Option<Self>, StoreError> {
        let token = new_token();
        let set: Option<String> = inner
            .query(
                redis::cmd("SET")
                    .arg(inner.keys.migration_lock())
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(LOCK_TTL.as_millis() as u64),
            )
            .await?;
        Ok(set.map(|_| Self { token }))
    }

    async fn renew(&self, inner: &Inner) -> Result<(), StoreError> {
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0",
        );
        let mut invocation = script.prepare_invoke();
        invocation
            .key(inner.keys.migration_lock())
            .arg(&self.token)
            .arg(LOCK_TTL.as_millis() as u64);
        let renewed: u64 = inner.script(&invocation).await?;
        if renewed == 1 {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "lost the migration lock while migrating".into(),
            ))
        }
    }

    async fn release(self, inner: &Inner) {
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        );
        let mut invocation = script.prepare_invoke();
        invocation.key(inner.keys.migration_lock()).arg(&self.token);
        if let Err(error) = inner.script::<u64>(&invocation).await {
            tracing::warn!(%error, "could not release the migration lock; it expires on its own");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_migrations_parse_and_end_at_the_current_schema() {
        let all = migrations().unwrap();
        assert_eq!(all.len() as u32, SCHEMA_VERSION);
        assert_eq!(
            all[1].steps,
            vec![Step::RenameKeyspace, Step::IndexFlagVersions]
        );
    }

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(glob_escape("amp:v1:{flags}"), "amp:v1:{flags}");
    }
}
