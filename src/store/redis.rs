//! The shared store: Redis, for several replicas.
//!
//! A [`bb8`] pool of multiplexed connections to one Redis server (`redis://` or `rediss://` for
//! TLS via rustls; `redis://user:password@host:port/db` for ACL users). Every call runs under the
//! configured command timeout; getting a pooled connection under the connection timeout (while
//! Redis is unreachable, one call per second tries and the others fail at once). On
//! start-up [`RedisStore::connect`] migrates the keyspace ([`super::migrate`]) and starts a
//! follower that turns pub/sub messages into [`Change`] / [`CohortChange`] signals.
//!
//! Every write publishes its change on the channel (inside the Lua script for flags, so version
//! and signal cannot disagree); every replica, the writer included, signals its subscribers from
//! that one ordered source, so a change is signalled once, usually within milliseconds. After
//! (re)subscribing, the follower compares the version keys (`{flags}:versions`, the cohort
//! index) with what it signalled and signals the differences: nothing is lost to an outage.
//!
//! # Key layout (schema version 2)
//!
//! `P` is the configured prefix (default `amplitude`; no braces). User-supplied segments
//! (`<deployment>`, `<cohort>`, `<groupType>`, `<member>`, `<name>`, `<key>`) are escaped with
//! [`super::keys::escape`]: `%` `:` `{` `}` become `%25` `%3A` `%7B` `%7D`. Braces in the
//! templates below are literal Redis Cluster hash tags: every multi-key operation (Lua scripts,
//! `SDIFFSTORE`, `RENAME`, `MGET`) touches keys of a single tag only. `<environment>` is a
//! hash of a Flagsmith server-side key (see [`crate::flagsmith::sync::environment_id`]): the
//! keys themselves never reach Redis.
//!
//! | Key | Type | Content | TTL |
//! |---|---|---|---|
//! | `P:schema_version` | STRING | keyspace schema version (`2`) | none |
//! | `P:migration_lock` | STRING | token of the replica migrating | PX 30 s, renewed |
//! | `P:migration_log` | LIST | one line per applied migration | none |
//! | `P:v2:{flags}:deployment:<deployment>` | HASH | `json` (the `/sdk/v2/flags` array), `version` | none |
//! | `P:v2:{flags}:versions` | HASH | deployment -> version (followers catch up from it) | none |
//! | `P:v2:{cohort:<cohort>}:description` | STRING | CohortDescription JSON | none |
//! | `P:v2:{cohort:<cohort>}:members` | SET | members of the stored version | none |
//! | `P:v2:{cohort:<cohort>}:blob` | STRING | the blob of the stored version | none |
//! | `P:v2:{cohort:<cohort>}:pending` | STRING | `{"groupType","token"}` of a write in progress | none; deleted when it completes |
//! | `P:v2:{cohort:<cohort>}:temp:staged:<token>` | SET | a write's new members, staged while downloading (renamed to `members` at the end) | PX 1 h while staging; none once pending |
//! | `P:v2:{cohort:<cohort>}:temp:blob:<token>` | STRING | a write's new blob (renamed to `blob` at the end) | PX 1 h |
//! | `P:v2:{cohort:<cohort>}:temp:removing:<token>` | SET | a removal's members, unindexed page by page | PX 1 h, deleted after use |
//! | `P:v2:{cohorts}:index` | HASH | cohortId -> CohortDescription JSON | none |
//! | `P:v2:membership:<groupType>:<member>` | SET | ids of the cohorts containing the member | none |
//! | `P:v2:{flagsmith}:environment:<environment>` | HASH | `json` (a Flagsmith environment document), `version`, `confirmed_at` (Unix ms) | none |
//! | `P:v2:{flagsmith}:versions` | HASH | environment -> document version (followers catch up from it) | none |
//! | `P:v2:dedup:<key>` | STRING | `1` (`SET NX PX`, pipelined) | the claim's TTL |
//! | `P:v2:lease:<name>` | STRING | holder's random token (Lua compare-and-set/delete) | the lease's TTL |
//! | `P:v2:project:<project>:deployments` | STRING | JSON array of the deployment keys the lease holder listed | none |
//! | `P:v2:changes` | pub/sub channel | `flags <version> <deployment>`, `flags_removed 0 <deployment>`, `cohort <lastModified> <cohort>`, `cohort_removed 0 <cohort>`, `flagsmith <version> <environment>` | - |
//!
//! Bulk paths use `SCAN`/`SSCAN`/`HSCAN` (`COUNT` = `scan_count`), never `KEYS`; member writes
//! go in pipelines of `pipeline_batch_size` commands, up to 8 pipelines in flight at once. No
//! command works on a whole large set at once (large sets are diffed page by page and freed
//! with `UNLINK`); the cohort write path is in `redis/write.rs`.
//! The request path reads only bounded things: one membership set (`SMEMBERS`, at most one id
//! per cohort; answers are kept in a bounded replica-local cache cleared on every cohort change
//! signal, see [`super::membership_cache`]), one description + blob (`MGET`). Membership
//! lookups are answered without Redis at all once the replica-local mirror of every stored
//! cohort's members has loaded ([`super::cohort_mirror`]); the `SMEMBERS` path is the fallback
//! while it loads or while change signals are not followed.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bb8::{Pool, PooledConnection, RunError};
use bytes::Bytes;
use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, FromRedisValue, RedisError, Script};
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::cohort_mirror::CohortMirror;
use super::keys::Keys;
use super::membership_cache::MembershipCache;
use super::{
    new_token, Change, CohortBlob, CohortChange, CohortDescription, CohortWriter, DocumentChange,
    DocumentStatus, Store, StoreError, StoredDocument, StoredFlags,
};

mod write;

/// Default commands per pipeline (`pipelineBatchSize`) and `COUNT` per scan page (`scanLimit`).
pub const BATCH: usize = 1000;

/// Default bound of the replica-local membership cache (entries; about 10-20 MB when full).
pub const MEMBERSHIP_CACHE_SIZE: usize = 100_000;

/// Pipelines a bulk write keeps in flight (at most the pool size).
const PIPELINES_IN_FLIGHT: usize = 8;

/// Capacity of the local change channels.
const CHANGE_CHANNEL_CAPACITY: usize = 1024;

/// How often the change-signal connection is checked with a `PING`.
const PUBSUB_KEEPALIVE: Duration = Duration::from_secs(15);

/// TTL of a cohort write's temporary sets, should the writer die before deleting them.
const TEMP_TTL_MS: u64 = 3_600_000;

/// How to reach Redis; the application maps its configuration into this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…` for TLS.
    pub uri: String,
    /// First segment of every key; lets several fleets share one Redis. Must not contain braces.
    pub prefix: String,
    /// Bound on opening a connection and on waiting for a pooled one.
    pub connection_timeout: Duration,
    /// Bound on every command, pipeline and script.
    pub command_timeout: Duration,
    /// Most connections the pool opens.
    pub pool_size: u32,
    /// Commands per pipeline for bulk writes (`pipelineBatchSize`).
    pub pipeline_batch_size: usize,
    /// `COUNT` hint of each `SCAN`/`SSCAN`/`HSCAN` page (`scanLimit`).
    pub scan_count: usize,
    /// Most membership lookups kept in the replica-local cache (0: no cache); see
    /// [`super::membership_cache`].
    pub membership_cache_size: usize,
    /// Whether each replica mirrors every stored cohort's members in memory (about the id
    /// length + 8 bytes per member) to answer membership lookups without Redis; see
    /// [`super::cohort_mirror`]. Default `true`; `false` keeps the cache + `SMEMBERS` path only.
    pub cohort_mirror: bool,
    /// For `rediss://`: the PEM certificate(s) to trust instead of the system roots (a private
    /// CA); `None` uses the platform's trust store.
    pub tls_root_cert_pem: Option<Vec<u8>>,
}

impl RedisSettings {
    /// Settings for `uri` with the reference's defaults: prefix `amplitude`, 10 s timeouts.
    pub fn new(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            prefix: "amplitude".to_owned(),
            connection_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(10),
            pool_size: 16,
            pipeline_batch_size: BATCH,
            scan_count: BATCH,
            membership_cache_size: MEMBERSHIP_CACHE_SIZE,
            cohort_mirror: true,
            tls_root_cert_pem: None,
        }
    }

    fn validate(&self) -> Result<(), StoreError> {
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(StoreError::Config(format!(
                "redis prefix {:?} must be non-empty and contain no braces",
                self.prefix
            )));
        }
        if self.connection_timeout.is_zero() || self.command_timeout.is_zero() {
            return Err(StoreError::Config("redis timeouts must be positive".into()));
        }
        if self.pipeline_batch_size == 0 || self.scan_count == 0 {
            return Err(StoreError::Config(
                "redis pipeline batch size and scan count must be at least 1".into(),
            ));
        }
        if self.pool_size == 0 {
            return Err(StoreError::Config(
                "redis pool size must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// A pooled connection, and whether a failure showed it to be unusable.
pub struct Connection {
    conn: MultiplexedConnection,
    broken: bool,
}

/// Opens multiplexed connections with the configured timeouts (`bb8-redis`'s manager would use
/// the redis crate's defaults of 1 s to connect and 500 ms per response instead, and can only
/// detect a dead connection with a `PING` before every use).
pub struct Manager {
    client: Client,
    config: AsyncConnectionConfig,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").finish_non_exhaustive()
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = Connection;
    type Error = RedisError;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        Ok(Connection {
            conn,
            broken: false,
        })
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        redis::cmd("PING").query_async::<()>(&mut conn.conn).await
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.broken
    }
}

/// One round trip's worth of work.
enum Request<'a> {
    Cmd(&'a redis::Cmd),
    Pipe(&'a redis::Pipeline),
    Script(&'a redis::ScriptInvocation<'a>),
}

/// The Lua scripts, each touching keys of one hash tag only.
struct Scripts {
    put_flags: Script,
    remove_flags: Script,
    publish_cohort: Script,
    remove_cohort: Script,
    put_document: Script,
    confirm_document: Script,
    acquire: Script,
    renew: Script,
    release: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            // KEYS: flags, versions. ARGV: json, deployment, channel.
            put_flags: Script::new(
                r"local current = redis.call('HGET', KEYS[1], 'json')
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current == ARGV[1] then return version end
version = version + 1
redis.call('HSET', KEYS[1], 'json', ARGV[1], 'version', version)
redis.call('HSET', KEYS[2], ARGV[2], version)
redis.call('PUBLISH', ARGV[3], 'flags ' .. version .. ' ' .. ARGV[2])
return version",
            ),
            // KEYS: flags, versions. ARGV: deployment, channel.
            remove_flags: Script::new(
                r"local removed = redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if removed > 0 then redis.call('PUBLISH', ARGV[2], 'flags_removed 0 ' .. ARGV[1]) end
return removed",
            ),
            // KEYS: description, members, blob, staged, pending, new blob. ARGV: description.
            // UNLINK: the replaced members set (millions of members) and blob are freed off
            // Redis' main thread; a DEL (or RENAME over them) would block every other caller.
            publish_cohort: Script::new(
                r"if redis.call('EXISTS', KEYS[6]) == 0 then
  return redis.error_reply('the new cohort blob is missing')
end
redis.call('UNLINK', KEYS[2])
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RENAME', KEYS[4], KEYS[2])
  redis.call('PERSIST', KEYS[2])
end
redis.call('UNLINK', KEYS[3])
redis.call('RENAME', KEYS[6], KEYS[3])
redis.call('PERSIST', KEYS[3])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[5])
return 1",
            ),
            // KEYS: description, members, blob, removing. ARGV: temp ttl ms.
            remove_cohort: Script::new(
                r"local moved = 0
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('RENAME', KEYS[2], KEYS[4])
  redis.call('PEXPIRE', KEYS[4], ARGV[1])
  moved = 1
end
redis.call('DEL', KEYS[1])
redis.call('UNLINK', KEYS[3])
return moved",
            ),
            // KEYS: document, versions. ARGV: json, environment, channel, confirmed_at.
            put_document: Script::new(
                r"local current = redis.call('HGET', KEYS[1], 'json')
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current == ARGV[1] then
  redis.call('HSET', KEYS[1], 'confirmed_at', ARGV[4])
  return version
end
version = version + 1
redis.call('HSET', KEYS[1], 'json', ARGV[1], 'version', version, 'confirmed_at', ARGV[4])
redis.call('HSET', KEYS[2], ARGV[2], version)
redis.call('PUBLISH', ARGV[3], 'flagsmith ' .. version .. ' ' .. ARGV[2])
return version",
            ),
            // KEYS: document. ARGV: confirmed_at.
            confirm_document: Script::new(
                r"if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'confirmed_at', ARGV[1])
return 1",
            ),
            // KEYS: lease. ARGV: token, ttl ms.
            acquire: Script::new(
                r"local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1",
            ),
            renew: Script::new(
                r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0",
            ),
            // KEYS: lease. ARGV: token.
            release: Script::new(
                r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0",
            ),
        }
    }
}

/// Versions this replica has signalled, so that a catch-up after (re)subscribing and the
/// messages that arrived meanwhile do not signal the same version twice.
#[derive(Debug, Default)]
struct Known {
    flags: HashMap<String, u64>,
    cohorts: HashMap<String, i64>,
    documents: HashMap<String, u64>,
}

/// How long calls fail at once after Redis could not be reached, before one tries again.
const OUTAGE_PAUSE: Duration = Duration::from_secs(1);

/// Remembers that Redis could not be reached (bb8 waits out the whole connection timeout when
/// it cannot connect; this keeps every other caller from doing the same).
#[derive(Debug, Default)]
struct Outage {
    /// While set: no connection attempt before this instant.
    retry_at: Mutex<Option<Instant>>,
}

impl Outage {
    /// Fails at once during a pause; otherwise lets this caller try (and pauses the others
    /// while it does).
    fn admit(&self, connection_timeout: Duration) -> Result<(), StoreError> {
        let mut retry_at = self.retry_at.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match *retry_at {
            Some(at) if now < at => Err(StoreError::Unavailable(
                "redis is unreachable; retrying shortly".into(),
            )),
            Some(_) => {
                *retry_at = Some(now + connection_timeout + OUTAGE_PAUSE);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn begin(&self) {
        *self.retry_at.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + OUTAGE_PAUSE);
    }

    fn end(&self) {
        let mut retry_at = self.retry_at.lock().unwrap_or_else(|p| p.into_inner());
        if retry_at.is_some() {
            tracing::info!("redis is reachable again");
            *retry_at = None;
        }
    }
}

/// What the store and its follower task share.
pub(crate) struct Inner {
    pool: Pool<Manager>,
    client: Client,
    pub(crate) keys: Keys,
    command_timeout: Duration,
    connection_timeout: Duration,
    /// Commands per pipeline.
    pub(crate) batch: usize,
    /// `COUNT` per scan page.
    pub(crate) scan_count: usize,
    /// Pipelines a bulk write keeps in flight.
    in_flight: usize,
    scripts: Scripts,
    outage: Outage,
    /// Membership lookups, valid while change signals are followed.
    memberships: MembershipCache,
    /// Every stored cohort's members, answering lookups once loaded.
    pub(crate) mirror: CohortMirror,
    known: Mutex<Known>,
    changes: broadcast::Sender<Change>,
    cohort_changes: broadcast::Sender<CohortChange>,
    document_changes: broadcast::Sender<DocumentChange>,
}

/// Bulk-write pipelines sent on tasks of their own, at most `in_flight` at once, so the
/// round trips overlap (and with the `SSCAN` feeding them). Dropping it aborts what is left.
struct Pipelines {
    inner: Arc<Inner>,
    tasks: tokio::task::JoinSet<Result<(), StoreError>>,
}

impl Pipelines {
    fn new(inner: &Arc<Inner>) -> Self {
        Self {
            inner: Arc::clone(inner),
            tasks: tokio::task::JoinSet::new(),
        }
    }

    /// Sends `pipe` once fewer than `in_flight` are on the wire; fails with the first error
    /// of an earlier one.
    async fn send(&mut self, pipe: redis::Pipeline) -> Result<(), StoreError> {
        while self.tasks.len() >= self.inner.in_flight {
            self.join_one().await?;
        }
        let inner = Arc::clone(&self.inner);
        self.tasks
            .spawn(async move { inner.pipe::<()>(&pipe).await });
        Ok(())
    }

    async fn join_one(&mut self) -> Result<(), StoreError> {
        match self.tasks.join_next().await {
            Some(Ok(result)) => result,
            Some(Err(error)) => Err(StoreError::Unavailable(format!(
                "a pipeline task stopped: {error}"
            ))),
            None => Ok(()),
        }
    }

    /// Waits for every pipeline sent; the first error wins.
    async fn finish(mut self) -> Result<(), StoreError> {
        while !self.tasks.is_empty() {
            self.join_one().await?;
        }
        Ok(())
    }
}

/// The Redis implementation of [`Store`]; see the module documentation.
pub struct RedisStore {
    inner: Arc<Inner>,
    _follower: DropGuard,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.keys.prefix())
            .finish()
    }
}

fn unavailable(error: RedisError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Inner {
    /// A pooled connection, within the connection timeout.
    /// While Redis is unreachable, only one caller per [`OUTAGE_PAUSE`] waits for a connection
    /// (up to the connection timeout); the others fail at once, so callers can degrade quickly.
    async fn conn(&self) -> Result<PooledConnection<'_, Manager>, StoreError> {
        self.outage.admit(self.connection_timeout)?;
        match self.pool.get().await {
            Ok(conn) => {
                self.outage.end();
                Ok(conn)
            }
            Err(error) => {
                self.outage.begin();
                Err(match error {
                    RunError::User(error) => unavailable(error),
                    RunError::TimedOut => StoreError::Timeout(self.connection_timeout),
                })
            }
        }
    }

    /// Runs one round trip on a pooled connection under the command timeout. A connection that
    /// timed out or lost its socket is marked broken, so the pool drops it and opens another.
    async fn exec<T: FromRedisValue>(&self, request: Request<'_>) -> Result<T, StoreError> {
        let mut pooled = self.conn().await?;
        let conn = &mut pooled.conn;
        let call = async {
            match request {
                Request::Cmd(cmd) => cmd.query_async(conn).await,
                Request::Pipe(pipe) => pipe.query_async(conn).await,
                Request::Script(script) => script.invoke_async(conn).await,
            }
        };
        let result = tokio::time::timeout(self.command_timeout, call).await;
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                if error.is_io_error()
                    || error.is_connection_dropped()
                    || error.is_unrecoverable_error()
                {
                    pooled.broken = true;
                }
                Err(unavailable(error))
            }
            Err(_) => {
                pooled.broken = true;
                Err(StoreError::Timeout(self.command_timeout))
            }
        }
    }

    /// One command.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.exec(Request::Cmd(cmd)).await
    }

    /// One pipeline.
    pub(crate) async fn pipe<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        self.exec(Request::Pipe(pipe)).await
    }

    /// One Lua script (`EVALSHA`, falling back to `EVAL` when the server lacks it).
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.exec(Request::Script(invocation)).await
    }

    /// One page of a `SCAN`-family command: `(next cursor, items)`.
    pub(crate) async fn scan_page<T: FromRedisValue>(
        &self,
        command: &str,
        key: &str,
        cursor: u64,
    ) -> Result<(u64, Vec<T>), StoreError> {
        self.query(
            redis::cmd(command)
                .arg(key)
                .arg(cursor)
                .arg("COUNT")
                .arg(self.scan_count),
        )
        .await
    }

    /// Every member of a set, page by page (`SSCAN`), deduplicated and sorted.
    async fn scan_set(&self, key: &str) -> Result<BTreeSet<String>, StoreError> {
        let mut all = BTreeSet::new();
        let mut cursor = 0;
        loop {
            let (next, page) = self.scan_page::<String>("SSCAN", key, cursor).await?;
            all.extend(page);
            if next == 0 {
                return Ok(all);
            }
            cursor = next;
        }
    }

    /// Every field and value of a hash, page by page (`HSCAN`).
    async fn scan_hash(&self, key: &str) -> Result<HashMap<String, String>, StoreError> {
        let mut all = HashMap::new();
        let mut cursor = 0;
        loop {
            let (next, page) = self.scan_page::<String>("HSCAN", key, cursor).await?;
            let mut items = page.into_iter();
            while let (Some(field), Some(value)) = (items.next(), items.next()) {
                all.insert(field, value);
            }
            if next == 0 {
                return Ok(all);
            }
            cursor = next;
        }
    }

    /// A pipeline of `SADD` (`add`) or `SREM` of `cohort_id` in the membership sets of
    /// `members`.
    fn index_pipe<M: AsRef<str>>(
        &self,
        members: &[M],
        group_type: &str,
        cohort_id: &str,
        add: bool,
    ) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        for member in members {
            let key = self.keys.membership(group_type, member.as_ref());
            pipe.cmd(if add { "SADD" } else { "SREM" })
                .arg(key)
                .arg(cohort_id)
                .ignore();
        }
        pipe
    }

    /// Streams a set page by page (`SSCAN`) into pipelined `SADD`/`SREM` of `cohort_id` in
    /// each member's membership set, skipping the members of the set `except` (one
    /// `SMISMEMBER` per page); the next page is read while pipelines are in flight.
    async fn index_members(
        self: &Arc<Self>,
        set: &str,
        except: Option<&str>,
        group_type: &str,
        cohort_id: &str,
        add: bool,
    ) -> Result<(), StoreError> {
        let mut pipes = Pipelines::new(self);
        let mut cursor = 0;
        loop {
            let (next, mut page) = self.scan_page::<String>("SSCAN", set, cursor).await?;
            if let Some(except) = except {
                page = self.not_in(except, page).await?;
            }
            for chunk in page.chunks(self.batch) {
                pipes
                    .send(self.index_pipe(chunk, group_type, cohort_id, add))
                    .await?;
            }
            if next == 0 {
                return pipes.finish().await;
            }
            cursor = next;
        }
    }

    /// The members of `page` that are not in the set `key` (one `SMISMEMBER`).
    async fn not_in(&self, key: &str, page: Vec<String>) -> Result<Vec<String>, StoreError> {
        if page.is_empty() {
            return Ok(page);
        }
        let present: Vec<bool> = self
            .query(redis::cmd("SMISMEMBER").arg(key).arg(&page))
            .await?;
        Ok(page
            .into_iter()
            .zip(present)
            .filter_map(|(member, present)| (!present).then_some(member))
            .collect())
    }

    /// The stored description of `cohort_id` (the write path, the mirror and `get_cohort`).
    pub(crate) async fn cohort_description(
        &self,
        cohort_id: &str,
    ) -> Result<Option<CohortDescription>, StoreError> {
        let key = self.keys.cohort_description(cohort_id);
        let json: Option<String> = self.query(redis::cmd("GET").arg(&key)).await?;
        json.map(|json| self.description_from(&key, &json))
            .transpose()
    }

    pub(crate) fn description_from(
        &self,
        key: &str,
        json: &str,
    ) -> Result<CohortDescription, StoreError> {
        serde_json::from_str(json).map_err(|error| StoreError::Corrupt {
            key: key.to_owned(),
            reason: error.to_string(),
        })
    }

    /// Signals a flags version unless it (or a newer one) was already signalled.
    fn note_flags(&self, deployment: &str, version: u64) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.flags.get(deployment).is_some_and(|v| *v >= version) {
            return;
        }
        known.flags.insert(deployment.to_owned(), version);
        let _ = self.changes.send(Change::Flags {
            deployment: deployment.to_owned(),
            version,
        });
    }

    /// Signals a removal unless it was already signalled.
    fn note_flags_removed(&self, deployment: &str) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.flags.remove(deployment).is_some() {
            let _ = self.changes.send(Change::DeploymentRemoved {
                deployment: deployment.to_owned(),
            });
        }
    }

    /// Signals a cohort version unless it (or a newer one) was already signalled.
    fn note_cohort(&self, cohort_id: &str, last_modified: i64) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known
            .cohorts
            .get(cohort_id)
            .is_some_and(|v| *v >= last_modified)
        {
            return;
        }
        known.cohorts.insert(cohort_id.to_owned(), last_modified);
        self.mirror.expect(cohort_id, last_modified);
        let _ = self.cohort_changes.send(CohortChange::Updated {
            cohort_id: cohort_id.to_owned(),
            last_modified,
        });
    }

    /// Signals a cohort removal unless it was already signalled.
    fn note_cohort_removed(&self, cohort_id: &str) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.cohorts.remove(cohort_id).is_some() {
            self.mirror.forget(cohort_id);
            let _ = self.cohort_changes.send(CohortChange::Removed {
                cohort_id: cohort_id.to_owned(),
            });
        }
    }

    /// Signals a document version unless it (or a newer one) was already signalled.
    fn note_document(&self, environment: &str, version: u64) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known
            .documents
            .get(environment)
            .is_some_and(|v| *v >= version)
        {
            return;
        }
        known.documents.insert(environment.to_owned(), version);
        let _ = self.document_changes.send(DocumentChange {
            environment: environment.to_owned(),
            version,
        });
    }

    /// Applies one pub/sub message (see the module documentation for the format).
    fn on_message(&self, payload: &str) {
        let mut parts = payload.splitn(3, ' ');
        let (Some(kind), Some(number), Some(id)) = (parts.next(), parts.next(), parts.next())
        else {
            tracing::warn!(payload, "ignoring malformed change signal");
            return;
        };
        match (kind, number.parse::<i64>()) {
            ("flags", Ok(version)) => self.note_flags(id, u64::try_from(version).unwrap_or(0)),
            ("flags_removed", _) => self.note_flags_removed(id),
            ("cohort", Ok(last_modified)) => {
                self.memberships.clear();
                self.note_cohort(id, last_modified);
            }
            ("cohort_removed", _) => {
                self.memberships.clear();
                self.note_cohort_removed(id);
            }
            ("flagsmith", Ok(version)) => {
                self.note_document(id, u64::try_from(version).unwrap_or(0));
            }
            _ => tracing::warn!(payload, "ignoring unknown change signal"),
        }
    }

    /// Compares the stored versions with what was signalled and signals the differences: what
    /// a follower missed while it was disconnected.
    async fn catch_up(&self) -> Result<(), StoreError> {
        let flags: HashMap<String, u64> = self
            .scan_hash(&self.keys.flag_versions())
            .await?
            .into_iter()
            .filter_map(|(deployment, version)| Some((deployment, version.parse().ok()?)))
            .collect();
        let cohorts: HashMap<String, i64> = self
            .scan_hash(&self.keys.cohort_index())
            .await?
            .into_iter()
            .filter_map(|(id, json)| {
                let description = self
                    .description_from(&self.keys.cohort_index(), &json)
                    .ok()?;
                Some((id, description.last_modified))
            })
            .collect();
        let documents: HashMap<String, u64> = self
            .scan_hash(&self.keys.document_versions())
            .await?
            .into_iter()
            .filter_map(|(environment, version)| Some((environment, version.parse().ok()?)))
            .collect();
        let (gone_flags, gone_cohorts) = {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            let gone_flags: Vec<String> = known
                .flags
                .keys()
                .filter(|k| !flags.contains_key(*k))
                .cloned()
                .collect();
            let gone_cohorts: Vec<String> = known
                .cohorts
                .keys()
                .filter(|k| !cohorts.contains_key(*k))
                .cloned()
                .collect();
            // A different stored version (even an older one, after a re-creation) is news.
            known
                .flags
                .retain(|k, v| flags.get(k).is_none_or(|stored| stored == v));
            known
                .cohorts
                .retain(|k, v| cohorts.get(k).is_none_or(|stored| stored == v));
            known
                .documents
                .retain(|k, v| documents.get(k).is_none_or(|stored| stored == v));
            (gone_flags, gone_cohorts)
        };
        for deployment in gone_flags {
            self.note_flags_removed(&deployment);
        }
        for cohort_id in gone_cohorts {
            self.note_cohort_removed(&cohort_id);
        }
        for (deployment, version) in flags {
            self.note_flags(&deployment, version);
        }
        for (cohort_id, last_modified) in cohorts {
            self.note_cohort(&cohort_id, last_modified);
        }
        for (environment, version) in documents {
            self.note_document(&environment, version);
        }
        Ok(())
    }
}

/// Keeps a pub/sub subscription to the change channel, reconnecting with backoff and catching
/// up from the version keys after each (re)connection, until `cancel`.
async fn follow(inner: Arc<Inner>, cancel: CancellationToken, ready: oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        match subscribe(&inner).await {
            Ok(pubsub) => match inner.catch_up().await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                    // Signals are followed from here on: membership answers may be cached.
                    inner.memberships.set_enabled(true);
                    inner.mirror.set_following(true);
                    let cancelled = relay(&inner, pubsub, &cancel).await;
                    inner.mirror.set_following(false);
                    inner.memberships.set_enabled(false);
                    if cancelled {
                        return;
                    }
                    tracing::warn!("lost the redis change-signal connection; reconnecting");
                }
                Err(error) => tracing::warn!(%error, "could not catch up with redis changes"),
            },
            Err(error) => tracing::warn!(%error, "could not subscribe to redis changes"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// A dedicated pub/sub connection subscribed to the change channel.
async fn subscribe(inner: &Inner) -> Result<redis::aio::PubSub, StoreError> {
    let channel = inner.keys.changes_channel();
    let subscribed = tokio::time::timeout(inner.connection_timeout, async {
        let mut pubsub = inner.client.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        Ok::<_, RedisError>(pubsub)
    })
    .await;
    match subscribed {
        Ok(result) => result.map_err(unavailable),
        Err(_) => Err(StoreError::Timeout(inner.connection_timeout)),
    }
}

/// Relays change messages until the connection ends or misses a keep-alive `PING` (a silently
/// dead connection would otherwise never end). Returns true when cancelled.
async fn relay(inner: &Inner, pubsub: redis::aio::PubSub, cancel: &CancellationToken) -> bool {
    let (mut sink, mut messages) = pubsub.split();
    let mut keepalive = tokio::time::interval(PUBSUB_KEEPALIVE);
    keepalive.reset();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return true,
            message = messages.next() => match message {
                Some(message) => match message.get_payload::<String>() {
                    Ok(payload) => inner.on_message(&payload),
                    Err(error) => tracing::warn!(%error, "ignoring a change signal"),
                },
                None => return false,
            },
            _ = keepalive.tick() => {
                let pong = tokio::time::timeout(inner.command_timeout, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return false;
                }
            }
        }
    }
}

impl RedisStore {
    /// Connects, migrates the keyspace to [`super::keys::SCHEMA_VERSION`] (refusing a newer
    /// one), and starts following changes. Fails when Redis cannot be reached.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, StoreError> {
        settings.validate()?;
        let client = match &settings.tls_root_cert_pem {
            None => Client::open(settings.uri.as_str()),
            Some(pem) => Client::build_with_tls(
                settings.uri.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
        }
        .map_err(|error| StoreError::Config(format!("redis uri: {error}")))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.connection_timeout))
            .set_response_timeout(Some(settings.command_timeout));
        let manager = Manager {
            client: client.clone(),
            config,
        };
        let pool = Pool::builder()
            .max_size(settings.pool_size)
            .connection_timeout(settings.connection_timeout)
            .test_on_check_out(false)
            // Fail fast while Redis is down (callers degrade) instead of retrying until the
            // connection timeout on every call.
            .retry_connection(false)
            .build_unchecked(manager);
        let (changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        let (cohort_changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        let (document_changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        let inner = Arc::new(Inner {
            pool,
            client,
            keys: Keys::new(&settings.prefix),
            command_timeout: settings.command_timeout,
            connection_timeout: settings.connection_timeout,
            scripts: Scripts::new(),
            batch: settings.pipeline_batch_size,
            scan_count: settings.scan_count,
            in_flight: PIPELINES_IN_FLIGHT.min(settings.pool_size as usize).max(1),
            outage: Outage::default(),
            memberships: MembershipCache::new(settings.membership_cache_size),
            mirror: CohortMirror::new(settings.cohort_mirror),
            known: Mutex::new(Known::default()),
            changes,
            cohort_changes,
            document_changes,
        });
        super::migrate::run(&inner).await?;
        let cancel = CancellationToken::new();
        let (ready, subscribed) = oneshot::channel();
        tokio::spawn(follow(Arc::clone(&inner), cancel.clone(), ready));
        tokio::spawn(super::cohort_mirror::run_loader(
            Arc::clone(&inner),
            cancel.clone(),
        ));
        if tokio::time::timeout(settings.connection_timeout, subscribed)
            .await
            .is_err()
        {
            tracing::warn!("not yet subscribed to redis changes; will keep trying");
        }
        Ok(Self {
            inner,
            _follower: cancel.drop_guard(),
        })
    }

    /// Whether membership lookups are answered from the replica-local cohort mirror right now
    /// (every stored cohort loaded at its stored version, change signals followed); for
    /// benchmarks, tests and diagnostics.
    pub fn mirror_ready(&self) -> bool {
        self.inner.mirror.ready()
    }

    /// Members held by the replica-local cohort mirror and the heap bytes they take.
    pub fn mirror_size(&self) -> (usize, usize) {
        self.inner.mirror.size()
    }

    /// The schema version the keyspace is at (after [`RedisStore::connect`], the current one).
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        super::migrate::read_version(&self.inner).await
    }

    async fn script<T: FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.inner.script(invocation).await
    }
}

/// The pending marker of an unfinished cohort write.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pending {
    group_type: String,
    token: String,
}

#[async_trait]
impl Store for RedisStore {
    async fn put_flags(&self, deployment: &str, json: Bytes) -> Result<u64, StoreError> {
        let keys = &self.inner.keys;
        let mut invocation = self.inner.scripts.put_flags.prepare_invoke();
        invocation
            .key(keys.flags(deployment))
            .key(keys.flag_versions())
            .arg(json.as_ref())
            .arg(deployment)
            .arg(keys.changes_channel());
        self.script(&invocation).await
    }

    async fn get_flags(&self, deployment: &str) -> Result<Option<StoredFlags>, StoreError> {
        let key = self.inner.keys.flags(deployment);
        let (json, version): (Option<Vec<u8>>, Option<u64>) = self
            .inner
            .query(redis::cmd("HMGET").arg(&key).arg("json").arg("version"))
            .await?;
        match (json, version) {
            (Some(json), Some(version)) => Ok(Some(StoredFlags {
                version,
                json: Bytes::from(json),
            })),
            (None, None) => Ok(None),
            _ => Err(StoreError::Corrupt {
                key,
                reason: "flags hash lacks `json` or `version`".into(),
            }),
        }
    }

    async fn remove_deployment(&self, deployment: &str) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let mut invocation = self.inner.scripts.remove_flags.prepare_invoke();
        invocation
            .key(keys.flags(deployment))
            .key(keys.flag_versions())
            .arg(deployment)
            .arg(keys.changes_channel());
        self.script::<u64>(&invocation).await?;
        Ok(())
    }

    async fn list_deployments(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let key = self.inner.keys.flag_versions();
        let mut list = Vec::new();
        for (deployment, version) in self.inner.scan_hash(&key).await? {
            let version = version.parse().map_err(|_| StoreError::Corrupt {
                key: key.clone(),
                reason: format!("version of {deployment:?} is not a number"),
            })?;
            list.push((deployment, version));
        }
        list.sort();
        Ok(list)
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    async fn put_project_deployments(
        &self,
        project: &str,
        deployments: &[String],
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(deployments).map_err(|e| StoreError::Corrupt {
            key: self.inner.keys.project_deployments(project),
            reason: e.to_string(),
        })?;
        let key = self.inner.keys.project_deployments(project);
        self.inner
            .query::<()>(redis::cmd("SET").arg(&key).arg(json))
            .await
    }

    async fn get_project_deployments(
        &self,
        project: &str,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let key = self.inner.keys.project_deployments(project);
        let json: Option<Vec<u8>> = self.inner.query(redis::cmd("GET").arg(&key)).await?;
        json.map(|json| {
            serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt {
                key,
                reason: e.to_string(),
            })
        })
        .transpose()
    }

    async fn begin_cohort(&self, cohort_id: &str) -> Result<Box<dyn CohortWriter>, StoreError> {
        Ok(Box::new(write::RedisCohortWriter::new(
            &self.inner,
            cohort_id,
        )))
    }

    async fn get_cohort(&self, cohort_id: &str) -> Result<Option<CohortDescription>, StoreError> {
        self.inner.cohort_description(cohort_id).await
    }

    async fn list_cohorts(&self) -> Result<Vec<CohortDescription>, StoreError> {
        let key = self.inner.keys.cohort_index();
        let mut list = self
            .inner
            .scan_hash(&key)
            .await?
            .values()
            .map(|json| self.inner.description_from(&key, json))
            .collect::<Result<Vec<_>, _>>()?;
        list.sort_by(|a, b| a.cohort_id.cmp(&b.cohort_id));
        Ok(list)
    }

    async fn get_cohort_members(&self, cohort_id: &str) -> Result<Option<Vec<String>>, StoreError> {
        if self.get_cohort(cohort_id).await?.is_none() {
            return Ok(None);
        }
        let members = self
            .inner
            .scan_set(&self.inner.keys.cohort_members(cohort_id))
            .await?;
        Ok(Some(members.into_iter().collect()))
    }

    async fn get_cohort_blob(&self, cohort_id: &str) -> Result<Option<CohortBlob>, StoreError> {
        let keys = &self.inner.keys;
        let key = keys.cohort_description(cohort_id);
        let (json, blob): (Option<String>, Option<Vec<u8>>) = self
            .inner
            .query(
                redis::cmd("MGET")
                    .arg(&key)
                    .arg(keys.cohort_blob(cohort_id)),
            )
            .await?;
        match (json, blob) {
            (Some(json), Some(blob)) => Ok(Some(CohortBlob {
                description: self.inner.description_from(&key, &json)?,
                blob: Bytes::from(blob),
            })),
            _ => Ok(None),
        }
    }

    async fn get_memberships(
        &self,
        group_type: &str,
        member: &str,
    ) -> Result<Vec<String>, StoreError> {
        if let Some(ids) = self.inner.mirror.lookup(group_type, member) {
            return Ok(ids);
        }
        let cache = &self.inner.memberships;
        if let Some(ids) = cache.get(group_type, member) {
            return Ok(ids.to_vec());
        }
        let generation = cache.generation();
        let key = self.inner.keys.membership(group_type, member);
        let mut ids: Vec<String> = self.inner.query(redis::cmd("SMEMBERS").arg(key)).await?;
        ids.sort();
        cache.insert(generation, group_type, member, ids.as_slice().into());
        Ok(ids)
    }

    async fn remove_cohort(&self, cohort_id: &str) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let previous = self.get_cohort(cohort_id).await?;
        write::repair(&self.inner, cohort_id, previous.as_ref()).await?;
        let removing = keys.cohort_temp(cohort_id, "removing", &new_token());
        let mut invocation = self.inner.scripts.remove_cohort.prepare_invoke();
        invocation
            .key(keys.cohort_description(cohort_id))
            .key(keys.cohort_members(cohort_id))
            .key(keys.cohort_blob(cohort_id))
            .key(&removing)
            .arg(TEMP_TTL_MS);
        let moved: Result<u64, StoreError> = self.script(&invocation).await;
        self.inner.memberships.clear();
        if moved.is_ok() {
            self.inner.mirror.forget(cohort_id);
        }
        let moved = moved?;
        let mut index = redis::pipe();
        index
            .cmd("HDEL")
            .arg(keys.cohort_index())
            .arg(cohort_id)
            .ignore();
        if previous.is_some() {
            let signal = format!("cohort_removed 0 {cohort_id}");
            index
                .cmd("PUBLISH")
                .arg(keys.changes_channel())
                .arg(signal)
                .ignore();
        }
        self.inner.pipe::<()>(&index).await?;
        if let (Some(previous), 1) = (&previous, moved) {
            let cleaned = self
                .inner
                .index_members(&removing, None, &previous.group_type, cohort_id, false)
                .await;
            self.inner.memberships.clear();
            cleaned?;
            // Again once the index no longer lists the cohort, so replicas drop the answers
            // they cached while it was being cleaned.
            let mut done = redis::pipe();
            done.cmd("UNLINK").arg(&removing).ignore();
            done.cmd("PUBLISH")
                .arg(keys.changes_channel())
                .arg(format!("cohort_removed 0 {cohort_id}"))
                .ignore();
            self.inner.pipe::<()>(&done).await?;
        }
        Ok(())
    }

    fn subscribe_cohorts(&self) -> broadcast::Receiver<CohortChange> {
        self.inner.cohort_changes.subscribe()
    }

    async fn claim(&self, keys: &[String], ttl: Duration) -> Result<Vec<bool>, StoreError> {
        let mut claimed = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(self.inner.batch) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("SET")
                    .arg(self.inner.keys.dedup(key))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms(ttl));
            }
            let replies: Vec<Option<String>> = self.inner.pipe(&pipe).await?;
            claimed.extend(replies.into_iter().map(|reply| reply.is_some()));
        }
        Ok(claimed)
    }

    async fn put_document(
        &self,
        environment: &str,
        json: Bytes,
        confirmed_at_millis: u64,
    ) -> Result<u64, StoreError> {
        let keys = &self.inner.keys;
        let mut invocation = self.inner.scripts.put_document.prepare_invoke();
        invocation
            .key(keys.document(environment))
            .key(keys.document_versions())
            .arg(json.as_ref())
            .arg(environment)
            .arg(keys.changes_channel())
            .arg(confirmed_at_millis);
        self.script(&invocation).await
    }

    async fn confirm_document(
        &self,
        environment: &str,
        confirmed_at_millis: u64,
    ) -> Result<bool, StoreError> {
        let mut invocation = self.inner.scripts.confirm_document.prepare_invoke();
        invocation
            .key(self.inner.keys.document(environment))
            .arg(confirmed_at_millis);
        Ok(self.script::<u64>(&invocation).await? == 1)
    }

    async fn get_document(&self, environment: &str) -> Result<Option<StoredDocument>, StoreError> {
        let key = self.inner.keys.document(environment);
        let (json, version, confirmed): (Option<Vec<u8>>, Option<u64>, Option<u64>) = self
            .inner
            .query(
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg("json")
                    .arg("version")
                    .arg("confirmed_at"),
            )
            .await?;
        match (json, version) {
            (Some(json), Some(version)) => Ok(Some(StoredDocument {
                version,
                json: Bytes::from(json),
                confirmed_at_millis: confirmed.unwrap_or(0),
            })),
            (None, None) => Ok(None),
            _ => Err(StoreError::Corrupt {
                key,
                reason: "document hash lacks `json` or `version`".into(),
            }),
        }
    }

    async fn document_status(
        &self,
        environment: &str,
    ) -> Result<Option<DocumentStatus>, StoreError> {
        let key = self.inner.keys.document(environment);
        let (version, confirmed): (Option<u64>, Option<u64>) = self
            .inner
            .query(
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg("version")
                    .arg("confirmed_at"),
            )
            .await?;
        Ok(version.map(|version| DocumentStatus {
            version,
            confirmed_at_millis: confirmed.unwrap_or(0),
        }))
    }

    fn subscribe_documents(&self) -> broadcast::Receiver<DocumentChange> {
        self.inner.document_changes.subscribe()
    }

    async fn try_acquire(
        &self,
        name: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut invocation = self.inner.scripts.acquire.prepare_invoke();
        invocation
            .key(self.inner.keys.lease(name))
            .arg(token)
            .arg(ms(ttl));
        Ok(self.script::<u64>(&invocation).await? == 1)
    }

    async fn renew(&self, name: &str, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut invocation = self.inner.scripts.renew.prepare_invoke();
        invocation
            .key(self.inner.keys.lease(name))
            .arg(token)
            .arg(ms(ttl));
        Ok(self.script::<u64>(&invocation).await? == 1)
    }

    async fn release(&self, name: &str, token: &str) -> Result<bool, StoreError> {
        let mut invocation = self.inner.scripts.release.prepare_invoke();
        invocation.key(self.inner.keys.lease(name)).arg(token);
        Ok(self.script::<u64>(&invocation).await? == 1)
    }
}
