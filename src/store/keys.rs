//! The Redis key layout, in one place (documented in [`super::redis`]).
//!
//! Every key starts with `{prefix}:v{schema}:`. User-supplied segments (deployment keys, cohort
//! ids, group types, members, lease and dedup names) are escaped so that `:` `{` `}` `%` in them
//! can neither forge another key nor move a key to another cluster slot. Hash tags never contain
//! the schema version, so a migration can `RENAME` a key to the next version inside its slot.

/// Current keyspace schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 2;

/// Percent-encodes `%`, `:`, `{` and `}`; every other byte is kept.
pub fn escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for c in segment.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`escape`]; `None` when the text is not something `escape` produced.
pub fn unescape(segment: &str) -> Option<String> {
    let mut out = String::with_capacity(segment.len());
    let mut rest = segment;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        out.push(match code {
            "25" => '%',
            "3A" => ':',
            "7B" => '{',
            "7D" => '}',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// Builds the keys of one prefix at one schema version.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    schema: u32,
}

impl Keys {
    /// Keys of the current schema.
    pub fn new(prefix: &str) -> Self {
        Self::at(prefix, SCHEMA_VERSION)
    }

    /// Keys of a given schema version (migrations read older ones).
    pub fn at(prefix: &str, schema: u32) -> Self {
        Self {
            prefix: prefix.to_owned(),
            schema,
        }
    }

    /// The configured prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}:v{schema}`, the start of every versioned key.
    pub fn base(&self) -> String {
        format!("{}:v{}", self.prefix, self.schema)
    }

    /// `{prefix}:schema_version`: the keyspace's schema version (unversioned on purpose).
    pub fn schema_version(&self) -> String {
        format!("{}:schema_version", self.prefix)
    }

    /// `{prefix}:migration_lock`: held (SET NX PX token) while a replica migrates.
    pub fn migration_lock(&self) -> String {
        format!("{}:migration_lock", self.prefix)
    }

    /// LIST: one line (`version name unix_ms`) per applied migration.
    pub fn migration_log(&self) -> String {
        format!("{}:migration_log", self.prefix)
    }

    /// HASH `json`, `version`: the flags of one deployment (slot `{flags}`).
    pub fn flags(&self, deployment: &str) -> String {
        format!(
            "{}:{{flags}}:deployment:{}",
            self.base(),
            escape(deployment)
        )
    }

    /// HASH deployment -> version: what followers compare to catch up (slot `{flags}`).
    pub fn flag_versions(&self) -> String {
        format!("{}:{{flags}}:versions", self.base())
    }

    /// The hash tag of one cohort's keys.
    fn cohort_tag(&self, cohort_id: &str) -> String {
        format!("{}:{{cohort:{}}}", self.base(), escape(cohort_id))
    }

    /// STRING: the cohort description JSON (slot `{cohort:<id>}`).
    pub fn cohort_description(&self, cohort_id: &str) -> String {
        format!("{}:description", self.cohort_tag(cohort_id))
    }

    /// SET: the members of the stored cohort version.
    pub fn cohort_members(&self, cohort_id: &str) -> String {
        format!("{}:members", self.cohort_tag(cohort_id))
    }

    /// STRING: the blob of the stored cohort version.
    pub fn cohort_blob(&self, cohort_id: &str) -> String {
        format!("{}:blob", self.cohort_tag(cohort_id))
    }

    /// SET: a write's staged members, or its added/removed diff (`kind`), named by the write's
    /// token; deleted when the write ends and expiring after an hour if it never does.
    pub fn cohort_temp(&self, cohort_id: &str, kind: &str, token: &str) -> String {
        format!("{}:temp:{kind}:{token}", self.cohort_tag(cohort_id))
    }

    /// STRING: `{"groupType","token"}` of a write in progress; left behind by a failed write so
    /// the next write (or removal) can undo its partial index changes.
    pub fn cohort_pending(&self, cohort_id: &str) -> String {
        format!("{}:pending", self.cohort_tag(cohort_id))
    }

    /// HASH cohortId -> description JSON: the list of cohorts (slot `{cohorts}`).
    pub fn cohort_index(&self) -> String {
        format!("{}:{{cohorts}}:index", self.base())
    }

    /// SET of cohort ids containing `member` of `group_type` (its own slot).
    pub fn membership(&self, group_type: &str, member: &str) -> String {
        format!(
            "{}:membership:{}:{}",
            self.base(),
            escape(group_type),
            escape(member)
        )
    }

    /// HASH `json`, `version`, `confirmed_at`: one Flagsmith environment document; the
    /// environment id is a hash of its server-side key (slot `{flagsmith}`).
    pub fn document(&self, environment: &str) -> String {
        format!(
            "{}:{{flagsmith}}:environment:{}",
            self.base(),
            escape(environment)
        )
    }

    /// HASH environment id -> document version: what followers compare to catch up (slot
    /// `{flagsmith}`).
    pub fn document_versions(&self) -> String {
        format!("{}:{{flagsmith}}:versions", self.base())
    }

    /// STRING: one dedup claim (value `1`, PX ttl).
    pub fn dedup(&self, key: &str) -> String {
        format!("{}:dedup:{}", self.base(), escape(key))
    }

    /// STRING: a lease, holding its owner's token (PX ttl).
    pub fn lease(&self, name: &str) -> String {
        format!("{}:lease:{}", self.base(), escape(name))
    }

    /// STRING: JSON array of the deployment keys listed for a project (by its non-secret id).
    pub fn project_deployments(&self, project: &str) -> String {
        format!("{}:project:{}:deployments", self.base(), escape(project))
    }

    /// The pub/sub channel carrying change signals.
    pub fn changes_channel(&self) -> String {
        format!("{}:changes", self.base())
    }

    /// The deployment key encoded in a [`Keys::flags`] key, if it is one.
    pub fn deployment_of(&self, flags_key: &str) -> Option<String> {
        let start = format!("{}:{{flags}}:deployment:", self.base());
        unescape(flags_key.strip_prefix(&start)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_round_trips_and_removes_separators_and_braces() {
        for s in ["plain", "a:b", "{tag}", "100%", "%3A", "é:{}%"] {
            let e = escape(s);
            assert!(
                !e.contains(':') && !e.contains('{') && !e.contains('}'),
                "{e}"
            );
            assert_eq!(unescape(&e).as_deref(), Some(s));
        }
        assert_eq!(unescape("%zz"), None);
        assert_eq!(unescape("%2"), None);
    }

    #[test]
    fn layout_is_stable() {
        let k = Keys::new("amp");
        assert_eq!(k.flags("client-1"), "amp:v2:{flags}:deployment:client-1");
        assert_eq!(k.flag_versions(), "amp:v2:{flags}:versions");
        assert_eq!(k.cohort_members("c1"), "amp:v2:{cohort:c1}:members");
        assert_eq!(k.cohort_description("c1"), "amp:v2:{cohort:c1}:description");
        assert_eq!(k.cohort_blob("c1"), "amp:v2:{cohort:c1}:blob");
        assert_eq!(
            k.cohort_temp("c1", "staged", "t"),
            "amp:v2:{cohort:c1}:temp:staged:t"
        );
        assert_eq!(k.cohort_index(), "amp:v2:{cohorts}:index");
        assert_eq!(k.cohort_pending("c1"), "amp:v2:{cohort:c1}:pending");
        assert_eq!(
            k.membership("org name", "a:b"),
            "amp:v2:membership:org name:a%3Ab"
        );
        assert_eq!(k.dedup("u d f on "), "amp:v2:dedup:u d f on ");
        assert_eq!(k.lease("sync:p1"), "amp:v2:lease:sync%3Ap1");
        assert_eq!(
            k.project_deployments("p:1"),
            "amp:v2:project:p%3A1:deployments"
        );
        assert_eq!(k.changes_channel(), "amp:v2:changes");
        assert_eq!(
            k.document("0f1e:x"),
            "amp:v2:{flagsmith}:environment:0f1e%3Ax"
        );
        assert_eq!(k.document_versions(), "amp:v2:{flagsmith}:versions");
        assert_eq!(k.schema_version(), "amp:schema_version");
        assert_eq!(k.deployment_of(&k.flags("a:b")).as_deref(), Some("a:b"));
        assert_eq!(Keys::at("amp", 1).flags("d"), "amp:v1:{flags}:deployment:d");
    }
}
