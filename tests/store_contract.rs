//! One contract, two stores: every test in `contract` runs against [`MemoryStore`] and against
//! [`RedisStore`] on a throwaway `redis-server`; `redis_only` covers what only Redis has
//! (pub/sub between replicas, reconnection, migrations, ACL URLs).

#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use evaluation_proxy::store::{
    new_token, BlobBuilder, Change, CohortChange, CohortDescription, CohortVersion, CohortWrite,
    DocumentChange, DocumentStatus, RedisSettings, RedisStore, Store, StoreError, StoredDocument,
};
use redis_server::RedisServer;
use tokio::sync::broadcast;

fn settings(server: &RedisServer, prefix: &str) -> RedisSettings {
    RedisSettings {
        prefix: prefix.to_owned(),
        connection_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(2),
        pool_size: 4,
        ..RedisSettings::new(server.url())
    }
}

async fn redis_store(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&settings(server, "test"))
        .await
        .unwrap()
}

/// Waits up to `within` for the next message.
async fn next<T: Clone>(rx: &mut broadcast::Receiver<T>, within: Duration) -> T {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("a change signal in time")
        .expect("an open channel")
}

/// Asserts nothing arrives for a short while.
async fn nothing<T: Clone + std::fmt::Debug>(rx: &mut broadcast::Receiver<T>) {
    if let Ok(Ok(extra)) = tokio::time::timeout(Duration::from_millis(150), rx.recv()).await {
        panic!("unexpected change signal {extra:?}");
    }
}

fn cohort(id: &str, group_type: &str, size: u64, last_modified: i64) -> CohortDescription {
    CohortDescription {
        cohort_id: id.to_owned(),
        group_type: group_type.to_owned(),
        size,
        last_modified,
    }
}

fn members(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Writes a cohort version with `names` as its members (its size is their count) and an
/// empty blob, and expects it to be stored.
async fn put<S: Store + ?Sized>(
    store: &S,
    id: &str,
    group_type: &str,
    last_modified: i64,
    names: &[&str],
) {
    store
        .put_cohort(
            &cohort(id, group_type, names.len() as u64, last_modified),
            &members(names),
            Bytes::new(),
        )
        .await
        .unwrap();
}

const SECOND: Duration = Duration::from_secs(1);

/// A [`BlobBuilder`] that records what the store fed it; its blob is `<n> members`.
#[derive(Clone, Default)]
struct Recording(Arc<std::sync::Mutex<(Option<CohortDescription>, Vec<String>)>>);

impl Recording {
    /// The description `start` got and the members pushed, sorted.
    fn fed(&self) -> (Option<CohortDescription>, Vec<String>) {
        let (description, mut members) = self.0.lock().unwrap().clone();
        members.sort();
        (description, members)
    }
}

impl BlobBuilder for Recording {
    fn start(&mut self, description: &CohortDescription) {
        let mut fed = self.0.lock().unwrap();
        assert!(fed.0.is_none(), "start is called once");
        fed.0 = Some(description.clone());
    }

    fn push(&mut self, member: &str) {
        self.0.lock().unwrap().1.push(member.to_owned());
    }

    fn finish(self: Box<Self>) -> Bytes {
        Bytes::from(format!("{} members", self.0.lock().unwrap().1.len()))
    }
}

/// Writes a version of `cohort_id` through the streamed writer, one `add` per chunk.
async fn write_streamed(
    store: &dyn Store,
    cohort_id: &str,
    group_type: &str,
    last_modified: i64,
    chunks: &[Vec<String>],
    blob: Recording,
) -> Result<CohortWrite, StoreError> {
    let mut writer = store.begin_cohort(cohort_id).await?;
    for chunk in chunks {
        writer.add(chunk.clone()).await?;
    }
    let version = CohortVersion {
        group_type: group_type.to_owned(),
        last_modified,
    };
    writer.finish(version, Box::new(blob)).await
}

fn users(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("user-{i:05}")).collect()
}

/// Generates one `#[tokio::test]` per contract function, for each store.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::contract::$name(&evaluation_proxy::store::MemoryStore::new()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $name() {
                    let server = super::RedisServer::start();
                    let store = super::redis_store(&server).await;
                    super::contract::$name(&store).await;
                }
            )*
        }
    };
}

contract!(
    flags_versions_and_change_signal,
    flags_are_listed_and_kept_apart_per_deployment,
    cohort_first_write_indexes_members_and_stores_blob,
    cohort_diff_updates_the_index,
    cohort_becoming_empty_clears_its_index_entries,
    cohort_group_type_change_moves_index_entries,
    stale_cohort_write_is_ignored,
    removed_cohort_leaves_nothing_behind,
    large_cohort_crosses_batches,
    streamed_write_dedups_across_chunks_and_feeds_the_blob_each_member_once,
    abandoned_streamed_write_changes_nothing,
    cohort_changes_are_signalled,
    awkward_identifiers_are_kept_apart,
    dedup_claims_in_batches,
    dedup_claims_expire,
    lease_is_exclusive_and_expires,
    lease_renew_and_release_need_the_token,
    documents_versions_confirmations_and_change_signal,
    documents_are_kept_apart_per_environment,
    project_deployments_are_replaced_and_kept_apart,
);

mod contract {
    use super::*;

    fn doc_change(environment: &str, version: u64) -> DocumentChange {
        DocumentChange {
            environment: environment.to_owned(),
            version,
        }
    }

    pub async fn documents_versions_confirmations_and_change_signal(store: &dyn Store) {
        let mut changes = store.subscribe_documents();
        assert_eq!(store.get_document("e").await.unwrap(), None);
        assert_eq!(store.document_status("e").await.unwrap(), None);
        assert!(
            !store.confirm_document("e", 5).await.unwrap(),
            "nothing to confirm yet"
        );
        let v1 = Bytes::from_static(br#"{"name":"a"}"#);
        assert_eq!(store.put_document("e", v1.clone(), 10).await.unwrap(), 1);
        assert_eq!(next(&mut changes, SECOND).await, doc_change("e", 1));
        // The same body again: same version, newer confirmation, no signal.
        assert_eq!(store.put_document("e", v1.clone(), 20).await.unwrap(), 1);
        assert_eq!(
            store.document_status("e").await.unwrap(),
            Some(DocumentStatus {
                version: 1,
                confirmed_at_millis: 20
            })
        );
        assert!(store.confirm_document("e", 30).await.unwrap());
        assert_eq!(
            store.get_document("e").await.unwrap(),
            Some(StoredDocument {
                version: 1,
                json: v1,
                confirmed_at_millis: 30
            })
        );
        nothing(&mut changes).await;
        let v2 = Bytes::from_static(br#"{"name":"b"}"#);
        assert_eq!(store.put_document("e", v2.clone(), 40).await.unwrap(), 2);
        assert_eq!(next(&mut changes, SECOND).await, doc_change("e", 2));
        let stored = store.get_document("e").await.unwrap().unwrap();
        assert_eq!((stored.version, stored.json), (2, v2));
        assert_eq!(stored.confirmed_at_millis, 40);
    }

    pub async fn documents_are_kept_apart_per_environment(store: &dyn Store) {
        let mut changes = store.subscribe_documents();
        // Ids that an unescaped layout would confuse with each other or with other keys.
        let ids = ["a:b", "a", "{flagsmith}", "a%3Ab", "versions"];
        for (i, id) in ids.iter().enumerate() {
            let body = Bytes::from(format!("{{\"i\":{i}}}"));
            assert_eq!(store.put_document(id, body, 1).await.unwrap(), 1);
            assert_eq!(next(&mut changes, SECOND).await, doc_change(id, 1));
        }
        for (i, id) in ids.iter().enumerate() {
            let stored = store.get_document(id).await.unwrap().unwrap();
            assert_eq!(stored.json, Bytes::from(format!("{{\"i\":{i}}}")), "{id}");
        }
        // Documents live beside flags without touching them.
        assert!(store.list_deployments().await.unwrap().is_empty());
        assert_eq!(store.get_flags("a").await.unwrap(), None);
    }

    pub async fn flags_versions_and_change_signal(store: &dyn Store) {
        let mut changes = store.subscribe();
        assert_eq!(
            store
                .put_flags("d", Bytes::from_static(b"[]"))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .put_flags("d", Bytes::from_static(b"[]"))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .put_flags("d", Bytes::from_static(b"[1]"))
                .await
                .unwrap(),
            2
        );
        let v1 = Change::Flags {
            deployment: "d".into(),
            version: 1,
        };
        let v2 = Change::Flags {
            deployment: "d".into(),
            version: 2,
        };
        assert_eq!(next(&mut changes, SECOND).await, v1);
        assert_eq!(next(&mut changes, SECOND).await, v2);
        let stored = store.get_flags("d").await.unwrap().unwrap();
        assert_eq!(
            (stored.version, stored.json),
            (2, Bytes::from_static(b"[1]"))
        );
        assert_eq!(store.get_flags("other").await.unwrap(), None);
        store.remove_deployment("d").await.unwrap();
        store.remove_deployment("d").await.unwrap();
        assert_eq!(store.get_flags("d").await.unwrap(), None);
        let removed = Change::DeploymentRemoved {
            deployment: "d".into(),
        };
        assert_eq!(next(&mut changes, SECOND).await, removed);
        nothing(&mut changes).await;
    }

    pub async fn flags_are_listed_and_kept_apart_per_deployment(store: &dyn Store) {
        store
            .put_flags("b", Bytes::from_static(b"[2]"))
            .await
            .unwrap();
        store
            .put_flags("a", Bytes::from_static(b"[1]"))
            .await
            .unwrap();
        store
            .put_flags("a", Bytes::from_static(b"[1,1]"))
            .await
            .unwrap();
        let listed = store.list_deployments().await.unwrap();
        assert_eq!(listed, vec![("a".to_owned(), 2), ("b".to_owned(), 1)]);
        assert_eq!(
            store.get_flags("b").await.unwrap().unwrap().json,
            Bytes::from_static(b"[2]")
        );
        store.remove_deployment("a").await.unwrap();
        assert_eq!(
            store.list_deployments().await.unwrap(),
            vec![("b".to_owned(), 1)]
        );
    }

    pub async fn cohort_first_write_indexes_members_and_stores_blob(store: &dyn Store) {
        let c1 = cohort("c1", "User", 2, 100);
        let written = store
            .put_cohort(
                &c1,
                &members(&["u1", "u2", "u1"]),
                Bytes::from_static(b"blob-100"),
            )
            .await;
        assert_eq!(
            written.unwrap(),
            CohortWrite::Written {
                added: 2,
                removed: 0
            }
        );
        assert_eq!(store.get_cohort("c1").await.unwrap(), Some(c1.clone()));
        assert_eq!(store.get_cohort("nope").await.unwrap(), None);
        assert_eq!(
            store.get_cohort_members("c1").await.unwrap(),
            Some(members(&["u1", "u2"]))
        );
        assert_eq!(store.get_cohort_members("nope").await.unwrap(), None);
        assert_eq!(
            store.get_memberships("User", "u1").await.unwrap(),
            members(&["c1"])
        );
        assert_eq!(
            store.get_memberships("User", "u3").await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            store.get_memberships("org", "u1").await.unwrap(),
            Vec::<String>::new()
        );
        let blob = store.get_cohort_blob("c1").await.unwrap().unwrap();
        assert_eq!(
            (blob.description, blob.blob),
            (c1.clone(), Bytes::from_static(b"blob-100"))
        );
        assert_eq!(store.get_cohort_blob("nope").await.unwrap(), None);
        let c2 = cohort("c2", "User", 1, 5);
        store
            .put_cohort(&c2, &members(&["u1"]), Bytes::from_static(b"b2"))
            .await
            .unwrap();
        assert_eq!(
            store.get_memberships("User", "u1").await.unwrap(),
            members(&["c1", "c2"])
        );
        assert_eq!(store.list_cohorts().await.unwrap(), vec![c1, c2]);
    }

    pub async fn cohort_diff_updates_the_index(store: &dyn Store) {
        put(store, "c", "User", 1, &["a", "b", "c"]).await;
        let next_version = cohort("c", "User", 3, 2);
        let written = store
            .put_cohort(
                &next_version,
                &members(&["b", "c", "d"]),
                Bytes::from_static(b"v2"),
            )
            .await;
        assert_eq!(
            written.unwrap(),
            CohortWrite::Written {
                added: 1,
                removed: 1
            }
        );
        assert_eq!(
            store.get_memberships("User", "a").await.unwrap(),
            Vec::<String>::new()
        );
        for member in ["b", "c", "d"] {
            assert_eq!(
                store.get_memberships("User", member).await.unwrap(),
                members(&["c"]),
                "{member}"
            );
        }
        assert_eq!(
            store.get_cohort_members("c").await.unwrap(),
            Some(members(&["b", "c", "d"]))
        );
        assert_eq!(
            store.get_cohort_blob("c").await.unwrap().unwrap().blob,
            Bytes::from_static(b"v2")
        );
        assert_eq!(store.get_cohort("c").await.unwrap(), Some(next_version));
    }

    pub async fn cohort_becoming_empty_clears_its_index_entries(store: &dyn Store) {
        put(store, "c", "User", 1, &["a", "b"]).await;
        let empty = cohort("c", "User", 0, 2);
        let written = store
            .put_cohort(&empty, &[], Bytes::from_static(b"empty"))
            .await
            .unwrap();
        assert_eq!(
            written,
            CohortWrite::Written {
                added: 0,
                removed: 2
            }
        );
        assert_eq!(
            store.get_memberships("User", "a").await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            store.get_memberships("User", "b").await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(store.get_cohort_members("c").await.unwrap(), Some(vec![]));
        let blob = store.get_cohort_blob("c").await.unwrap().unwrap();
        assert_eq!(
            (blob.description, blob.blob),
            (empty, Bytes::from_static(b"empty"))
        );
        // And back from empty.
        put(store, "c", "User", 3, &["b"]).await;
        assert_eq!(
            store.get_memberships("User", "b").await.unwrap(),
            members(&["c"])
        );
    }

    pub async fn cohort_group_type_change_moves_index_entries(store: &dyn Store) {
        put(store, "c", "User", 1, &["a", "b"]).await;
        let written = store
            .put_cohort(
                &cohort("c", "org name", 2, 2),
                &members(&["b", "x"]),
                Bytes::new(),
            )
            .await;
        assert_eq!(
            written.unwrap(),
            CohortWrite::Written {
                added: 2,
                removed: 2
            }
        );
        assert_eq!(
            store.get_memberships("User", "a").await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            store.get_memberships("User", "b").await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            store.get_memberships("org name", "b").await.unwrap(),
            members(&["c"])
        );
        assert_eq!(
            store.get_memberships("org name", "x").await.unwrap(),
            members(&["c"])
        );
    }

    pub async fn stale_cohort_write_is_ignored(store: &dyn Store) {
        let current = cohort("c", "User", 1, 10);
        store
            .put_cohort(&current, &members(&["a"]), Bytes::from_static(b"10"))
            .await
            .unwrap();
        for last_modified in [10, 9] {
            let older = cohort("c", "User", 1, last_modified);
            let written = store
                .put_cohort(&older, &members(&["z"]), Bytes::from_static(b"old"))
                .await
                .unwrap();
            assert_eq!(
                written,
                CohortWrite::Stale {
                    stored: current.clone()
                }
            );
        }
        assert_eq!(
            store.get_memberships("User", "z").await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            store.get_cohort_blob("c").await.unwrap().unwrap().blob,
            Bytes::from_static(b"10")
        );
    }

    pub async fn removed_cohort_leaves_nothing_behind(store: &dyn Store) {
        put(store, "c", "User", 1, &["a", "b"]).await;
        put(store, "k", "User", 1, &["a"]).await;
        store.remove_cohort("c").await.unwrap();
        store.remove_cohort("c").await.unwrap();
        assert_eq!(store.get_cohort("c").await.unwrap(), None);
        assert_eq!(store.get_cohort_blob("c").await.unwrap(), None);
        assert_eq!(store.get_cohort_members("c").await.unwrap(), None);
        assert_eq!(
            store.get_memberships("User", "a").await.unwrap(),
            members(&["k"])
        );
        assert_eq!(
            store.get_memberships("User", "b").await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            store.list_cohorts().await.unwrap(),
            vec![cohort("k", "User", 1, 1)]
        );
        // A removed cohort can come back at any version.
        put(store, "c", "User", 1, &["b"]).await;
        assert_eq!(
            store.get_memberships("User", "b").await.unwrap(),
            members(&["c"])
        );
    }

    pub async fn streamed_write_dedups_across_chunks_and_feeds_the_blob_each_member_once(
        store: &dyn Store,
    ) {
        // 2,500 distinct members in three chunks that overlap, with repeats inside a chunk.
        let mut first = users(0..1500);
        first.extend(users(0..10));
        let chunks = [first, users(1000..2500), users(2000..2100)];
        let blob = Recording::default();
        let written = write_streamed(store, "s", "User", 1, &chunks, blob.clone()).await;
        assert_eq!(
            written.unwrap(),
            CohortWrite::Written {
                added: 2500,
                removed: 0
            }
        );
        let stored = cohort("s", "User", 2500, 1);
        let (started, fed) = blob.fed();
        assert_eq!(
            started,
            Some(stored.clone()),
            "the blob gets the distinct size"
        );
        assert_eq!(fed, users(0..2500), "each member once");
        assert_eq!(store.get_cohort("s").await.unwrap(), Some(stored.clone()));
        assert_eq!(
            store.get_cohort_blob("s").await.unwrap().unwrap().blob,
            Bytes::from_static(b"2500 members")
        );
        assert_eq!(
            store.get_cohort_members("s").await.unwrap().unwrap(),
            users(0..2500)
        );

        // 1% churn, streamed again with duplicates: 25 leave, 25 join.
        let chunks = [users(25..1300), users(1200..2525), users(2500..2525)];
        let blob = Recording::default();
        let written = write_streamed(store, "s", "User", 2, &chunks, blob.clone()).await;
        assert_eq!(
            written.unwrap(),
            CohortWrite::Written {
                added: 25,
                removed: 25
            }
        );
        let (started, fed) = blob.fed();
        assert_eq!(started, Some(cohort("s", "User", 2500, 2)));
        assert_eq!(fed, users(25..2525));
        for (member, expected) in [
            ("user-00000", 0),
            ("user-00024", 0),
            ("user-00025", 1),
            ("user-02524", 1),
        ] {
            assert_eq!(
                store.get_memberships("User", member).await.unwrap().len(),
                expected,
                "{member}"
            );
        }

        // Streamed to empty: no chunk at all.
        let blob = Recording::default();
        let written = write_streamed(store, "s", "User", 3, &[], blob.clone()).await;
        assert_eq!(
            written.unwrap(),
            CohortWrite::Written {
                added: 0,
                removed: 2500
            }
        );
        assert_eq!(blob.fed(), (Some(cohort("s", "User", 0, 3)), Vec::new()));
        assert_eq!(
            store.get_memberships("User", "user-00100").await.unwrap(),
            Vec::<String>::new()
        );
    }

    pub async fn abandoned_streamed_write_changes_nothing(store: &dyn Store) {
        let stored = cohort("c", "User", 2, 1);
        store
            .put_cohort(&stored, &members(&["a", "b"]), Bytes::from_static(b"v1"))
            .await
            .unwrap();
        // A download that fails half-way drops its writer.
        let mut writer = store.begin_cohort("c").await.unwrap();
        writer.add(members(&["b", "x"])).await.unwrap();
        drop(writer);
        // A stale version is read whole, then ignored.
        let written = write_streamed(
            store,
            "c",
            "User",
            1,
            &[members(&["y"])],
            Recording::default(),
        )
        .await;
        assert_eq!(
            written.unwrap(),
            CohortWrite::Stale {
                stored: stored.clone()
            }
        );
        assert_eq!(store.get_cohort("c").await.unwrap(), Some(stored));
        assert_eq!(
            store.get_cohort_members("c").await.unwrap(),
            Some(members(&["a", "b"]))
        );
        assert_eq!(
            store.get_cohort_blob("c").await.unwrap().unwrap().blob,
            Bytes::from_static(b"v1")
        );
        for member in ["x", "y"] {
            assert_eq!(
                store.get_memberships("User", member).await.unwrap(),
                Vec::<String>::new(),
                "{member}"
            );
        }
        assert_eq!(
            store.get_memberships("User", "b").await.unwrap(),
            members(&["c"])
        );
    }

    pub async fn large_cohort_crosses_batches(store: &dyn Store) {
        let first: Vec<String> = (0..2500).map(|i| format!("user-{i}")).collect();
        store
            .put_cohort(&cohort("big", "User", 2500, 1), &first, Bytes::new())
            .await
            .unwrap();
        let second: Vec<String> = (1200..3700).map(|i| format!("user-{i}")).collect();
        let written = store
            .put_cohort(&cohort("big", "User", 2500, 2), &second, Bytes::new())
            .await;
        assert_eq!(
            written.unwrap(),
            CohortWrite::Written {
                added: 1200,
                removed: 1200
            }
        );
        let stored = store.get_cohort_members("big").await.unwrap().unwrap();
        assert_eq!(stored.len(), 2500);
        for (member, expected) in [
            ("user-0", 0),
            ("user-1199", 0),
            ("user-1200", 1),
            ("user-3699", 1),
        ] {
            assert_eq!(
                store.get_memberships("User", member).await.unwrap().len(),
                expected,
                "{member}"
            );
        }
    }

    pub async fn cohort_changes_are_signalled(store: &dyn Store) {
        let mut changes = store.subscribe_cohorts();
        put(store, "c", "User", 7, &["a"]).await;
        put(store, "c", "User", 7, &["a"]).await;
        store.remove_cohort("c").await.unwrap();
        let updated = CohortChange::Updated {
            cohort_id: "c".into(),
            last_modified: 7,
        };
        assert_eq!(next(&mut changes, SECOND).await, updated);
        assert_eq!(
            next(&mut changes, SECOND).await,
            CohortChange::Removed {
                cohort_id: "c".into()
            }
        );
        nothing(&mut changes).await;
    }

    pub async fn awkward_identifiers_are_kept_apart(store: &dyn Store) {
        // Separators and hash-tag braces in ids must neither collide nor break the layout.
        store
            .put_flags("a:b", Bytes::from_static(b"[1]"))
            .await
            .unwrap();
        store
            .put_flags("a", Bytes::from_static(b"[2]"))
            .await
            .unwrap();
        assert_eq!(
            store.get_flags("a:b").await.unwrap().unwrap().json,
            Bytes::from_static(b"[1]")
        );
        put(store, "{x}", "a:b", 1, &["c"]).await;
        put(store, "y", "a", 1, &["b:c"]).await;
        assert_eq!(
            store.get_memberships("a:b", "c").await.unwrap(),
            members(&["{x}"])
        );
        assert_eq!(
            store.get_memberships("a", "b:c").await.unwrap(),
            members(&["y"])
        );
        assert_eq!(
            store.get_cohort_members("{x}").await.unwrap(),
            Some(members(&["c"]))
        );
    }

    pub async fn dedup_claims_in_batches(store: &dyn Store) {
        let day = Duration::from_secs(86_400);
        let keys: Vec<String> = (0..2500)
            .map(|i| format!("user device flag-{i} on "))
            .collect();
        assert!(store.claim(&keys, day).await.unwrap().iter().all(|c| *c));
        assert!(store.claim(&keys, day).await.unwrap().iter().all(|c| !*c));
        let mixed = vec!["new".to_owned(), keys[7].clone(), "new".to_owned()];
        assert_eq!(
            store.claim(&mixed, day).await.unwrap(),
            vec![true, false, false]
        );
        assert_eq!(store.claim(&[], day).await.unwrap(), Vec::<bool>::new());
    }

    pub async fn dedup_claims_expire(store: &dyn Store) {
        let keys = vec!["short".to_owned(), "long".to_owned()];
        store
            .claim(&keys[..1], Duration::from_millis(200))
            .await
            .unwrap();
        store
            .claim(&keys[1..], Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            store.claim(&keys, Duration::from_secs(60)).await.unwrap(),
            vec![false, false]
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(
            store.claim(&keys, Duration::from_secs(60)).await.unwrap(),
            vec![true, false]
        );
    }

    pub async fn lease_is_exclusive_and_expires(store: &dyn Store) {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        let ttl = Duration::from_millis(300);
        assert!(store.try_acquire("sync:p1", &a, ttl).await.unwrap());
        assert!(!store.try_acquire("sync:p1", &b, ttl).await.unwrap());
        assert!(
            store.try_acquire("sync:p1", &a, ttl).await.unwrap(),
            "the holder may re-acquire"
        );
        assert!(
            store.try_acquire("sync:p2", &b, ttl).await.unwrap(),
            "leases are per name"
        );
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(
            store.try_acquire("sync:p1", &b, ttl).await.unwrap(),
            "an expired lease is free"
        );
        assert!(
            !store.renew("sync:p1", &a, ttl).await.unwrap(),
            "the old holder lost it"
        );
    }

    pub async fn lease_renew_and_release_need_the_token(store: &dyn Store) {
        let (a, b) = (new_token(), new_token());
        let ttl = Duration::from_millis(300);
        assert!(store.try_acquire("lease", &a, ttl).await.unwrap());
        assert!(!store.renew("lease", &b, ttl).await.unwrap());
        assert!(!store.release("lease", &b).await.unwrap());
        assert!(
            !store.try_acquire("lease", &b, ttl).await.unwrap(),
            "a wrong-token release changed nothing"
        );
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert!(store.renew("lease", &a, ttl).await.unwrap());
        }
        assert!(
            !store.try_acquire("lease", &b, ttl).await.unwrap(),
            "renewals kept it past its first ttl"
        );
        assert!(store.release("lease", &a).await.unwrap());
        assert!(!store.release("lease", &a).await.unwrap());
        assert!(!store.renew("lease", &a, ttl).await.unwrap());
        assert!(store.try_acquire("lease", &b, ttl).await.unwrap());
    }

    pub async fn project_deployments_are_replaced_and_kept_apart(store: &dyn Store) {
        assert_eq!(store.get_project_deployments("p1").await.unwrap(), None);
        let first = members(&["d1", "d:2{x}"]);
        store.put_project_deployments("p1", &first).await.unwrap();
        store
            .put_project_deployments("p:1", &members(&["other"]))
            .await
            .unwrap();
        assert_eq!(
            store.get_project_deployments("p1").await.unwrap(),
            Some(first)
        );
        store.put_project_deployments("p1", &[]).await.unwrap();
        assert_eq!(
            store.get_project_deployments("p1").await.unwrap(),
            Some(Vec::new()),
            "an empty list is a list"
        );
        assert_eq!(
            store.get_project_deployments("p:1").await.unwrap(),
            Some(members(&["other"]))
        );
    }
}

mod redis_only {
    use super::*;

    #[tokio::test]
    async fn document_changes_reach_another_replica_and_keys_stay_hashed() {
        let server = RedisServer::start();
        let writer = redis_store(&server).await;
        let follower = redis_store(&server).await;
        let mut documents = follower.subscribe_documents();
        let body = Bytes::from_static(br#"{"name":"x"}"#);
        writer
            .put_document("0123abcd", body.clone(), 7)
            .await
            .unwrap();
        assert_eq!(
            next(&mut documents, SECOND).await,
            DocumentChange {
                environment: "0123abcd".into(),
                version: 1
            }
        );
        let stored = follower.get_document("0123abcd").await.unwrap().unwrap();
        assert_eq!((stored.version, stored.json), (1, body));
        let mut conn = raw(&server).await;
        let keys: Vec<String> = conn.keys("test:v2:{flagsmith}:*").await.unwrap();
        let mut keys = keys;
        keys.sort();
        assert_eq!(
            keys,
            [
                "test:v2:{flagsmith}:environment:0123abcd",
                "test:v2:{flagsmith}:versions"
            ]
        );
    }

    use ::redis::AsyncCommands;

    async fn raw(server: &RedisServer) -> ::redis::aio::MultiplexedConnection {
        let client = ::redis::Client::open(server.url()).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    }

    #[tokio::test]
    async fn changes_reach_another_replica_within_a_second() {
        let server = RedisServer::start();
        let writer = redis_store(&server).await;
        let follower = redis_store(&server).await;
        let mut flags = follower.subscribe();
        let mut cohorts = follower.subscribe_cohorts();
        writer
            .put_flags("d", Bytes::from_static(b"[1]"))
            .await
            .unwrap();
        assert_eq!(
            next(&mut flags, SECOND).await,
            Change::Flags {
                deployment: "d".into(),
                version: 1
            }
        );
        writer
            .put_flags("d", Bytes::from_static(b"[2]"))
            .await
            .unwrap();
        assert_eq!(
            next(&mut flags, SECOND).await,
            Change::Flags {
                deployment: "d".into(),
                version: 2
            }
        );
        writer.remove_deployment("d").await.unwrap();
        assert_eq!(
            next(&mut flags, SECOND).await,
            Change::DeploymentRemoved {
                deployment: "d".into()
            }
        );
        put(&writer, "c", "User", 3, &["a"]).await;
        let updated = CohortChange::Updated {
            cohort_id: "c".into(),
            last_modified: 3,
        };
        assert_eq!(next(&mut cohorts, SECOND).await, updated);
        writer.remove_cohort("c").await.unwrap();
        assert_eq!(
            next(&mut cohorts, SECOND).await,
            CohortChange::Removed {
                cohort_id: "c".into()
            }
        );
        nothing(&mut flags).await;
        assert_eq!(follower.get_flags("d").await.unwrap(), None);
    }

    /// How many `SMEMBERS` the server ran (membership lookups that reached Redis).
    async fn smembers_calls(conn: &mut ::redis::aio::MultiplexedConnection) -> u64 {
        let info: String = ::redis::cmd("INFO")
            .arg("commandstats")
            .query_async(conn)
            .await
            .unwrap();
        info.lines()
            .find_map(|line| line.strip_prefix("cmdstat_smembers:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |calls| calls.parse().unwrap())
    }

    /// Polls `member`'s memberships on `store` until they equal `expected`, for at most a second.
    async fn within_a_second(store: &RedisStore, member: &str, expected: &[&str]) {
        let started = std::time::Instant::now();
        loop {
            let ids = store.get_memberships("User", member).await.unwrap();
            if ids == expected {
                return;
            }
            assert!(
                started.elapsed() < SECOND,
                "{member}: still {ids:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn cached_memberships_follow_other_replicas_writes() {
        let server = RedisServer::start();
        let writer = redis_store(&server).await;
        let follower = redis_store(&server).await;
        let mut conn = raw(&server).await;
        put(&writer, "c", "User", 1, &["a"]).await;
        within_a_second(&follower, "a", &["c"]).await;
        within_a_second(&follower, "b", &[]).await;
        // Answered from the follower's cache: Redis sees no more lookups.
        let before = smembers_calls(&mut conn).await;
        for _ in 0..10 {
            assert_eq!(follower.get_memberships("User", "a").await.unwrap(), ["c"]);
            assert!(follower
                .get_memberships("User", "b")
                .await
                .unwrap()
                .is_empty());
        }
        assert_eq!(smembers_calls(&mut conn).await, before);

        put(&writer, "c", "User", 2, &["b"]).await;
        within_a_second(&follower, "a", &[]).await;
        within_a_second(&follower, "b", &["c"]).await;
        // The writer reads its own write at once.
        assert_eq!(writer.get_memberships("User", "b").await.unwrap(), ["c"]);
        writer.remove_cohort("c").await.unwrap();
        assert!(writer
            .get_memberships("User", "b")
            .await
            .unwrap()
            .is_empty());
        within_a_second(&follower, "b", &[]).await;
    }

    /// Waits up to a second for `store`'s cohort mirror to answer lookups.
    async fn mirror_within_a_second(store: &RedisStore) {
        let started = std::time::Instant::now();
        while !store.mirror_ready() {
            assert!(
                started.elapsed() < SECOND,
                "the mirror did not load in time"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn ids(store: &RedisStore, group_type: &str, member: &str) -> Vec<String> {
        store.get_memberships(group_type, member).await.unwrap()
    }

    #[tokio::test]
    async fn the_mirror_follows_another_replicas_writes_and_removals() {
        let server = RedisServer::start();
        let writer = redis_store(&server).await;
        let follower = redis_store(&server).await;
        let mut conn = raw(&server).await;
        mirror_within_a_second(&follower).await;
        put(&writer, "c", "User", 1, &["a", "b"]).await;
        within_a_second(&follower, "a", &["c"]).await;
        mirror_within_a_second(&follower).await;
        // Every lookup from here on is of a user not looked up before on this replica (no
        // cache entry), and none reaches Redis.
        let before = smembers_calls(&mut conn).await;
        assert_eq!(ids(&follower, "User", "b").await, ["c"]);
        assert!(ids(&follower, "User", "x").await.is_empty());
        assert!(ids(&follower, "org", "a").await.is_empty());
        assert_eq!(smembers_calls(&mut conn).await, before);

        // A new version with another group type, and an empty cohort.
        put(&writer, "c", "org", 2, &["b", "d"]).await;
        put(&writer, "empty", "org", 1, &[]).await;
        within_a_second(&follower, "b", &[]).await;
        mirror_within_a_second(&follower).await;
        let before = smembers_calls(&mut conn).await;
        assert!(ids(&follower, "User", "a").await.is_empty());
        assert!(ids(&follower, "User", "d").await.is_empty());
        assert_eq!(ids(&follower, "org", "b").await, ["c"]);
        assert_eq!(ids(&follower, "org", "d").await, ["c"]);
        assert!(ids(&follower, "org", "a").await.is_empty());
        assert_eq!(smembers_calls(&mut conn).await, before);
        // The writer's own mirror follows too.
        mirror_within_a_second(&writer).await;
        assert_eq!(ids(&writer, "org", "d").await, ["c"]);

        writer.remove_cohort("c").await.unwrap();
        // The writer drops it at once.
        assert!(ids(&writer, "org", "d").await.is_empty());
        let started = std::time::Instant::now();
        while !ids(&follower, "org", "d").await.is_empty() {
            assert!(
                started.elapsed() < SECOND,
                "the removal did not arrive in time"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        mirror_within_a_second(&follower).await;
        let before = smembers_calls(&mut conn).await;
        assert!(ids(&follower, "org", "b").await.is_empty());
        assert!(ids(&follower, "org", "y").await.is_empty());
        assert_eq!(smembers_calls(&mut conn).await, before);
        let (mirrored, bytes) = follower.mirror_size();
        assert_eq!(mirrored, 0, "only the empty cohort is left");
        assert!(bytes < 1024, "{bytes}");
    }

    /// A cohort big enough for `SSCAN COUNT 1` to take many round trips to mirror.
    fn many(n: usize, prefix: &str) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    #[tokio::test]
    async fn lookups_are_correct_while_the_mirror_loads() {
        let server = RedisServer::start();
        let writer = redis_store(&server).await;
        let slow = RedisSettings {
            scan_count: 1,
            ..settings(&server, "test")
        };
        let follower = RedisStore::connect(&slow).await.unwrap();
        let mut signals = follower.subscribe_cohorts();
        let big = many(3000, "u");
        writer
            .put_cohort(&cohort("big", "User", 3000, 1), &big, Bytes::new())
            .await
            .unwrap();
        put(&writer, "small", "User", 1, &["u7"]).await;
        for _ in 0..2 {
            next(&mut signals, SECOND).await;
        }
        // Once the signals are in, every answer is right, from Redis while the mirror loads
        // and from the mirror after.
        let (mut before_ready, mut i) = (0, 0);
        while !follower.mirror_ready() {
            let member = format!("u{}", i % 3100);
            let expected: Vec<&str> = match i % 3100 {
                7 => vec!["big", "small"],
                n if n < 3000 => vec!["big"],
                _ => vec![],
            };
            assert_eq!(ids(&follower, "User", &member).await, expected, "{member}");
            before_ready += 1;
            i += 7;
            assert!(i < 10_000_000, "the mirror never loaded");
        }
        assert!(
            before_ready > 0,
            "the mirror loaded before the first lookup"
        );
        assert_eq!(ids(&follower, "User", "u7").await, ["big", "small"]);
        assert_eq!(ids(&follower, "User", "u2999").await, ["big"]);
        assert!(ids(&follower, "User", "u3000").await.is_empty());
        assert_eq!(follower.mirror_size().0, 3001);

        // A replica starting now answers right from the start (it learns the stored versions
        // before `connect` returns), before its mirror has loaded.
        let starting = RedisStore::connect(&slow).await.unwrap();
        assert!(!starting.mirror_ready());
        assert_eq!(ids(&starting, "User", "u7").await, ["big", "small"]);
        assert!(ids(&starting, "User", "v1").await.is_empty());
        let started = std::time::Instant::now();
        while !starting.mirror_ready() {
            assert!(started.elapsed() < Duration::from_secs(30));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(ids(&starting, "User", "u1234").await, ["big"]);
    }

    #[tokio::test]
    async fn the_mirror_is_not_trusted_while_change_signals_are_lost() {
        let mut server = RedisServer::start();
        let store = redis_store(&server).await;
        put(&store, "c", "User", 1, &["a"]).await;
        mirror_within_a_second(&store).await;
        server.stop();
        let started = std::time::Instant::now();
        while store.mirror_ready() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the mirror kept answering without change signals"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(store.get_memberships("User", "a").await.is_err());
        server.restart(); // No persistence: the data is gone.
        let started = std::time::Instant::now();
        loop {
            if store.mirror_ready() {
                if let Ok(found) = store.get_memberships("User", "a").await {
                    assert!(found.is_empty(), "{found:?}");
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "never caught up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(store.mirror_size().0, 0);
    }

    #[tokio::test]
    async fn a_starting_replica_learns_what_is_stored() {
        let server = RedisServer::start();
        let writer = redis_store(&server).await;
        writer
            .put_flags("d", Bytes::from_static(b"[1]"))
            .await
            .unwrap();
        let follower = redis_store(&server).await;
        assert_eq!(
            follower.list_deployments().await.unwrap(),
            vec![("d".to_owned(), 1)]
        );
        assert_eq!(follower.get_flags("d").await.unwrap().unwrap().version, 1);
    }

    #[tokio::test]
    async fn reconnects_and_catches_up_after_a_server_restart() {
        let mut server = RedisServer::start();
        let store = redis_store(&server).await;
        let follower = redis_store(&server).await;
        let mut changes = follower.subscribe();
        store
            .put_flags("d", Bytes::from_static(b"[1]"))
            .await
            .unwrap();
        assert_eq!(
            next(&mut changes, SECOND).await,
            Change::Flags {
                deployment: "d".into(),
                version: 1
            }
        );

        server.stop();
        // The first calls find out (within the timeouts); the next ones fail at once.
        assert!(store.get_flags("d").await.is_err());
        assert!(store.get_flags("d").await.is_err());
        for _ in 0..3 {
            let started = std::time::Instant::now();
            assert!(store.get_flags("d").await.is_err());
            let took = started.elapsed();
            assert!(
                took < Duration::from_millis(100),
                "fails fast during an outage: {took:?}"
            );
        }
        server.restart(); // No persistence: the data is gone.

        let mut written = None;
        for _ in 0..100 {
            match store.put_flags("e", Bytes::from_static(b"[9]")).await {
                Ok(version) => {
                    written = Some(version);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        assert_eq!(written, Some(1), "the pool reconnected");
        // The follower re-subscribes and catches up: `d` is gone, `e` is new.
        let mut seen = Vec::new();
        while seen.len() < 2 {
            seen.push(next(&mut changes, Duration::from_secs(10)).await);
        }
        assert!(
            seen.contains(&Change::DeploymentRemoved {
                deployment: "d".into()
            }),
            "{seen:?}"
        );
        assert!(
            seen.contains(&Change::Flags {
                deployment: "e".into(),
                version: 1
            }),
            "{seen:?}"
        );
    }

    /// Leaves the traces of a cohort write that died half-way: the pending marker, its staged
    /// members, one index entry added (`c`) and one removed (`a`, still a stored member).
    async fn half_written(conn: &mut ::redis::aio::MultiplexedConnection) {
        let marker = r#"{"groupType":"User","token":"t"}"#;
        let _: () = conn
            .set("test:v2:{cohort:c1}:pending", marker)
            .await
            .unwrap();
        let _: () = conn
            .sadd("test:v2:{cohort:c1}:temp:staged:t", &["b", "c"])
            .await
            .unwrap();
        let _: () = conn.sadd("test:v2:membership:User:c", "c1").await.unwrap();
        let _: () = conn.srem("test:v2:membership:User:a", "c1").await.unwrap();
    }

    #[tokio::test]
    async fn the_next_write_repairs_a_half_done_one() {
        let server = RedisServer::start();
        let store = redis_store(&server).await;
        put(&store, "c1", "User", 1, &["a", "b"]).await;
        let mut conn = raw(&server).await;
        half_written(&mut conn).await;
        let written = store
            .put_cohort(
                &cohort("c1", "User", 2, 2),
                &members(&["a", "d"]),
                Bytes::new(),
            )
            .await;
        assert_eq!(
            written.unwrap(),
            CohortWrite::Written {
                added: 1,
                removed: 1
            }
        );
        for (member, expected) in [
            ("a", vec!["c1"]),
            ("b", vec![]),
            ("c", vec![]),
            ("d", vec!["c1"]),
        ] {
            assert_eq!(
                store.get_memberships("User", member).await.unwrap(),
                members(&expected),
                "{member}"
            );
        }
        let mut left: Vec<String> = conn.keys("test:v2:{cohort:c1}:*").await.unwrap();
        left.sort();
        assert_eq!(
            left,
            [
                "test:v2:{cohort:c1}:blob",
                "test:v2:{cohort:c1}:description",
                "test:v2:{cohort:c1}:members"
            ]
        );
    }

    #[tokio::test]
    async fn removal_repairs_a_half_done_write() {
        let server = RedisServer::start();
        let store = redis_store(&server).await;
        put(&store, "c1", "User", 1, &["a", "b"]).await;
        let mut conn = raw(&server).await;
        half_written(&mut conn).await;
        store.remove_cohort("c1").await.unwrap();
        for member in ["a", "b", "c"] {
            assert_eq!(
                store.get_memberships("User", member).await.unwrap(),
                Vec::<String>::new(),
                "{member}"
            );
        }
        let left: Vec<String> = conn.keys("test:v2:{cohort:c1}:*").await.unwrap();
        assert_eq!(left, Vec::<String>::new());
    }

    /// The keys of cohort `c1` (its hash tag), sorted.
    async fn cohort_keys(conn: &mut ::redis::aio::MultiplexedConnection) -> Vec<String> {
        let mut keys: Vec<String> = conn.keys("test:v2:{cohort:c1}:*").await.unwrap();
        keys.sort();
        keys
    }

    const STORED_KEYS: [&str; 3] = [
        "test:v2:{cohort:c1}:blob",
        "test:v2:{cohort:c1}:description",
        "test:v2:{cohort:c1}:members",
    ];

    #[tokio::test]
    async fn abandoned_and_stale_writes_leave_no_staged_sets() {
        let server = RedisServer::start();
        let store = redis_store(&server).await;
        put(&store, "c1", "User", 5, &["a"]).await;
        let mut writer = store.begin_cohort("c1").await.unwrap();
        writer.add(members(&["b", "c"])).await.unwrap();
        let mut conn = raw(&server).await;
        drop(writer);
        let stale = write_streamed(
            &store,
            "c1",
            "User",
            5,
            &[members(&["d"])],
            Recording::default(),
        )
        .await;
        assert!(matches!(stale, Ok(CohortWrite::Stale { .. })), "{stale:?}");
        // The abandoned writer deletes its staged set in the background.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while cohort_keys(&mut conn).await != STORED_KEYS {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                cohort_keys(&mut conn).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_write_failing_after_indexing_is_undone() {
        let server = RedisServer::start();
        let store = redis_store(&server).await;
        let v1 = cohort("c1", "User", 2, 1);
        store
            .put_cohort(&v1, &members(&["a", "b"]), Bytes::from_static(b"v1"))
            .await
            .unwrap();
        // A replica whose user may not run scripts: its write stages, indexes the 1,000 new
        // members and unindexes `b`, then fails to publish (the last step).
        let mut conn = raw(&server).await;
        let _: () = ::redis::cmd("ACL")
            .arg(
                &[
                    "SETUSER",
                    "noscript",
                    "on",
                    ">pw",
                    "~*",
                    "&*",
                    "+@all",
                    "-@scripting",
                ][..],
            )
            .query_async(&mut conn)
            .await
            .unwrap();
        let limited = RedisStore::connect(&RedisSettings {
            uri: format!("redis://noscript:pw@127.0.0.1:{}", server.port()),
            pipeline_batch_size: 10,
            ..settings(&server, "test")
        })
        .await
        .unwrap();
        let mut next = users(0..1000);
        next.push("a".into());
        let written = write_streamed(
            &limited,
            "c1",
            "User",
            2,
            &[next.clone()],
            Recording::default(),
        )
        .await;
        assert!(written.is_err(), "{written:?}");
        // Undone at once: the stored version and its index entries, nothing of the new one.
        assert_eq!(store.get_cohort("c1").await.unwrap(), Some(v1));
        for (member, expected) in [
            ("a", vec!["c1"]),
            ("b", vec!["c1"]),
            ("user-00000", vec![]),
            ("user-00999", vec![]),
        ] {
            assert_eq!(
                store.get_memberships("User", member).await.unwrap(),
                members(&expected),
                "{member}"
            );
        }
        assert_eq!(cohort_keys(&mut conn).await, STORED_KEYS);
        let index: usize = conn
            .keys::<_, Vec<String>>("test:v2:membership:*")
            .await
            .unwrap()
            .len();
        assert_eq!(index, 2, "only a and b are indexed");
        // The same version goes through a replica that may publish.
        let written = write_streamed(&store, "c1", "User", 2, &[next], Recording::default()).await;
        assert_eq!(
            written.unwrap(),
            CohortWrite::Written {
                added: 1000,
                removed: 1
            }
        );
        assert_eq!(
            store.get_memberships("User", "user-00500").await.unwrap(),
            members(&["c1"])
        );
        assert_eq!(cohort_keys(&mut conn).await, STORED_KEYS);
    }

    #[tokio::test]
    async fn small_pipelines_and_scan_pages_give_the_same_results() {
        let server = RedisServer::start();
        let small = RedisSettings {
            pipeline_batch_size: 7,
            scan_count: 5,
            ..settings(&server, "small")
        };
        let store = RedisStore::connect(&small).await.unwrap();
        contract::large_cohort_crosses_batches(&store).await;
        contract::cohort_diff_updates_the_index(&store).await;
        contract::dedup_claims_in_batches(&store).await;
        contract::flags_are_listed_and_kept_apart_per_deployment(&store).await;
    }

    #[tokio::test]
    async fn upgrades_a_keyspace_written_by_schema_1() {
        let server = RedisServer::start();
        let mut conn = raw(&server).await;
        let flags = "old:v1:{flags}:deployment:client-key";
        let _: () = conn
            .hset_multiple(flags, &[("json", "[1]"), ("version", "4")])
            .await
            .unwrap();
        let description = r#"{"cohortId":"c1","groupType":"User","size":1,"lastModified":5}"#;
        let _: () = conn
            .set("old:v1:{cohort:c1}:description", description)
            .await
            .unwrap();
        let _: () = conn.sadd("old:v1:{cohort:c1}:members", "u1").await.unwrap();
        let _: () = conn.set("old:v1:{cohort:c1}:blob", "blob").await.unwrap();
        let _: () = conn
            .hset("old:v1:{cohorts}:index", "c1", description)
            .await
            .unwrap();
        let _: () = conn.sadd("old:v1:membership:User:u1", "c1").await.unwrap();
        let _: () = conn.set_ex("old:v1:dedup:k", 1, 3600).await.unwrap();
        let _: () = conn.set("old:schema_version", 1).await.unwrap();
        let _: () = conn.set("unrelated", 1).await.unwrap();

        let store = RedisStore::connect(&settings(&server, "old"))
            .await
            .unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 2);
        assert_eq!(
            store
                .get_flags("client-key")
                .await
                .unwrap()
                .unwrap()
                .version,
            4
        );
        assert_eq!(
            store.list_deployments().await.unwrap(),
            vec![("client-key".to_owned(), 4)]
        );
        assert_eq!(
            store.get_memberships("User", "u1").await.unwrap(),
            members(&["c1"])
        );
        assert_eq!(
            store.get_cohort_blob("c1").await.unwrap().unwrap().blob,
            Bytes::from_static(b"blob")
        );
        assert_eq!(
            store.claim(&["k".to_owned()], SECOND).await.unwrap(),
            vec![false]
        );
        let ttl: i64 = conn.ttl("old:v2:dedup:k").await.unwrap();
        assert!(ttl > 3000, "TTLs survive the move: {ttl}");
        // The next version diffs against the migrated members.
        let written = store
            .put_cohort(&cohort("c1", "User", 1, 6), &members(&["u2"]), Bytes::new())
            .await;
        assert_eq!(
            written.unwrap(),
            CohortWrite::Written {
                added: 1,
                removed: 1
            }
        );

        let keys: Vec<String> = conn.keys("*").await.unwrap();
        assert!(keys.iter().all(|k| !k.starts_with("old:v1:")), "{keys:?}");
        assert!(keys.contains(&"unrelated".to_owned()));
        let log: Vec<String> = conn.lrange("old:migration_log", 0, -1).await.unwrap();
        assert_eq!(log.len(), 1, "only 0002 ran: {log:?}");
        assert!(log[0].starts_with("2 flag_versions_index "), "{log:?}");
    }

    #[tokio::test]
    async fn refuses_a_newer_keyspace_naming_both_versions() {
        let server = RedisServer::start();
        let mut conn = raw(&server).await;
        let _: () = conn.set("test:schema_version", 7).await.unwrap();
        let error = RedisStore::connect(&settings(&server, "test"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::SchemaTooNew {
                    found: 7,
                    supported: 2,
                    ..
                }
            ),
            "{error}"
        );
        let message = error.to_string();
        assert!(
            message.contains("schema version 7") && message.contains("up to version 2"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn replicas_starting_together_migrate_once() {
        let server = RedisServer::start();
        let mut conn = raw(&server).await;
        let _: () = conn.set("fleet:v1:someone-else", "x").await.unwrap();
        let settings = Arc::new(settings(&server, "fleet"));
        let starts: Vec<_> = (0..6)
            .map(|_| {
                let settings = Arc::clone(&settings);
                tokio::spawn(async move { RedisStore::connect(&settings).await.map(|_| ()) })
            })
            .collect();
        for start in starts {
            start.await.unwrap().unwrap();
        }
        let foreign: String = conn.get("fleet:v1:someone-else").await.unwrap();
        assert_eq!(
            foreign, "x",
            "a fresh keyspace's migrations leave foreign keys alone"
        );
        let log: Vec<String> = conn.lrange("fleet:migration_log", 0, -1).await.unwrap();
        assert_eq!(log.len(), 2, "0001 and 0002, once each: {log:?}");
        let version: u32 = conn.get("fleet:schema_version").await.unwrap();
        assert_eq!(version, 2);
        let lock: Option<String> = conn.get("fleet:migration_lock").await.unwrap();
        assert_eq!(lock, None, "the lock was released");
    }

    #[tokio::test]
    async fn connects_as_an_acl_user() {
        let server = RedisServer::start();
        let mut conn = raw(&server).await;
        let _: () = ::redis::cmd("ACL")
            .arg(
                &[
                    "SETUSER", "proxy", "on", ">s3cret", "~test:*", "&*", "+@all",
                ][..],
            )
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = ::redis::cmd("ACL")
            .arg(&["SETUSER", "default", "off"][..])
            .query_async(&mut conn)
            .await
            .unwrap();
        let uri = format!("redis://proxy:s3cret@127.0.0.1:{}", server.port());
        let store = RedisStore::connect(&RedisSettings {
            uri,
            ..settings(&server, "test")
        })
        .await;
        let store = store.unwrap();
        store
            .put_flags("d", Bytes::from_static(b"[]"))
            .await
            .unwrap();
        let wrong = format!("redis://proxy:wrong@127.0.0.1:{}", server.port());
        let denied = RedisStore::connect(&RedisSettings {
            uri: wrong,
            ..settings(&server, "test")
        })
        .await;
        assert!(denied.is_err());
    }

    /// Writes a throwaway CA and a server certificate for 127.0.0.1 with the `openssl` CLI.
    fn make_certificates(dir: &std::path::Path) {
        let run = |args: &[&str]| {
            let status = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .expect("the openssl CLI (apt-get install openssl)");
            assert!(status.success(), "openssl {args:?}");
        };
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=test-ca",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ]);
    }

    #[tokio::test]
    async fn connects_over_tls_with_a_private_ca() {
        let certs = tempfile::tempdir().unwrap();
        make_certificates(certs.path());
        let path = |name: &str| certs.path().join(name).to_string_lossy().into_owned();
        let tls_port = redis_server::free_port().to_string();
        let server = RedisServer::start_with(&[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &path("server.crt"),
            "--tls-key-file",
            &path("server.key"),
            "--tls-ca-cert-file",
            &path("ca.crt"),
            "--tls-auth-clients",
            "no",
        ]);
        let uri = format!("rediss://127.0.0.1:{tls_port}");
        let ca = std::fs::read(certs.path().join("ca.crt")).unwrap();
        let tls = RedisSettings {
            uri: uri.clone(),
            tls_root_cert_pem: Some(ca),
            ..settings(&server, "tls")
        };
        let store = RedisStore::connect(&tls).await.unwrap();
        let mut changes = store.subscribe();
        for (json, version) in [(&b"[]"[..], 1), (&b"[1]"[..], 2)] {
            let stored = store
                .put_flags("d", Bytes::copy_from_slice(json))
                .await
                .unwrap();
            assert_eq!(stored, version);
            let change = Change::Flags {
                deployment: "d".into(),
                version,
            };
            assert_eq!(next(&mut changes, SECOND).await, change);
        }
        // Without the CA the server's certificate is not trusted.
        let untrusted = RedisSettings {
            uri,
            connection_timeout: Duration::from_millis(500),
            ..settings(&server, "tls")
        };
        assert!(RedisStore::connect(&untrusted).await.is_err());
    }

    #[tokio::test]
    async fn every_key_is_prefixed_versioned_and_prefixes_are_isolated() {
        let server = RedisServer::start();
        let a = RedisStore::connect(&settings(&server, "a")).await.unwrap();
        let b = RedisStore::connect(&settings(&server, "b")).await.unwrap();
        a.put_flags("d", Bytes::from_static(b"[1]")).await.unwrap();
        put(&a, "c", "User", 1, &["u"]).await;
        a.claim(&["k".to_owned()], SECOND * 60).await.unwrap();
        a.try_acquire("l", "t", SECOND * 60).await.unwrap();
        assert_eq!(b.get_flags("d").await.unwrap(), None);
        assert_eq!(
            b.get_memberships("User", "u").await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            b.claim(&["k".to_owned()], SECOND).await.unwrap(),
            vec![true]
        );
        let mut conn = raw(&server).await;
        let mut keys: Vec<String> = conn.keys("a:*").await.unwrap();
        keys.sort();
        let expected = [
            "a:migration_log",
            "a:schema_version",
            "a:v2:dedup:k",
            "a:v2:lease:l",
            "a:v2:membership:User:u",
            "a:v2:{cohort:c}:blob",
            "a:v2:{cohort:c}:description",
            "a:v2:{cohort:c}:members",
            "a:v2:{cohorts}:index",
            "a:v2:{flags}:deployment:d",
            "a:v2:{flags}:versions",
        ];
        assert_eq!(keys, expected, "no temporary keys are left behind either");
    }

    #[tokio::test]
    async fn rejects_bad_settings_and_unreachable_servers_quickly() {
        let bad_prefix = RedisSettings {
            prefix: "a{b}".into(),
            ..RedisSettings::new("redis://127.0.0.1:1")
        };
        assert!(matches!(
            RedisStore::connect(&bad_prefix).await,
            Err(StoreError::Config(_))
        ));
        let zero = RedisSettings {
            command_timeout: Duration::ZERO,
            ..RedisSettings::new("redis://127.0.0.1:1")
        };
        assert!(matches!(
            RedisStore::connect(&zero).await,
            Err(StoreError::Config(_))
        ));
        let bad_uri = RedisSettings::new("http://nope");
        assert!(matches!(
            RedisStore::connect(&bad_uri).await,
            Err(StoreError::Config(_))
        ));
        let port = {
            let server = RedisServer::start();
            server.port()
        };
        let down = RedisSettings {
            connection_timeout: Duration::from_millis(300),
            ..RedisSettings::new(format!("redis://127.0.0.1:{port}"))
        };
        let started = std::time::Instant::now();
        assert!(RedisStore::connect(&down).await.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn open_picks_the_store_from_the_settings() {
        // Both implementations fit behind the same `Arc<dyn Store>` the app holds.
        let server = RedisServer::start();
        let stores: Vec<Arc<dyn Store>> = vec![
            evaluation_proxy::store::open(None).await.unwrap(),
            evaluation_proxy::store::open(Some(&settings(&server, "open")))
                .await
                .unwrap(),
        ];
        let keys: Vec<String> = ::redis::AsyncCommands::keys(&mut raw(&server).await, "open:*")
            .await
            .unwrap();
        assert!(keys.contains(&"open:schema_version".to_owned()), "{keys:?}");
        for store in stores {
            assert_eq!(
                store
                    .put_flags("d", Bytes::from_static(b"[]"))
                    .await
                    .unwrap(),
                1
            );
        }
    }
}
