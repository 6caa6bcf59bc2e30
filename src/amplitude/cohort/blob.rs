//! The cohort blob SDKs download from `/sdk/v1/cohort/{id}` (spec §2.4): gzip of
//! `{"cohortId","groupType","lastModified","size","memberIds":[..]}`, field order exact, the
//! shape of the upstream API so an SDK can use the proxy as its `cohortServerUrl`.

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::store::{BlobBuilder, CohortDescription};

/// Gzips the blob of `description` with `members` (already de-duplicated).
pub fn build(description: &CohortDescription, members: &[String]) -> Bytes {
    let mut blob = Box::new(GzipBlob::new());
    blob.start(description);
    for member in members {
        blob.push(member);
    }
    blob.finish()
}

/// Builds the blob while a store feeds it the distinct members ([`BlobBuilder`]), streaming
/// the JSON into the compressor so the uncompressed text never exists whole.
#[derive(Default)]
pub struct GzipBlob {
    /// The compressor behind a write buffer; `None` until `start`.
    json: Option<std::io::BufWriter<GzEncoder<Vec<u8>>>>,
    members: u64,
}

impl GzipBlob {
    /// A builder waiting for [`BlobBuilder::start`].
    pub fn new() -> Self {
        Self::default()
    }
}

impl BlobBuilder for GzipBlob {
    fn start(&mut self, description: &CohortDescription) {
        // About 4 compressed bytes per member; the description's size is the exact count.
        let capacity = usize::try_from(description.size)
            .unwrap_or(0)
            .saturating_mul(4)
            .min(MOST_RESERVED)
            + 128;
        let gz = GzEncoder::new(Vec::with_capacity(capacity), Compression::fast());
        // Buffered: flate2 zero-fills its 32 KiB output buffer on every write it is given, so
        // one write per member (about 10 bytes) cost 70% of a million-member ingest.
        let mut json = std::io::BufWriter::with_capacity(WRITE_BUFFER, gz);
        // Writing into a Vec cannot fail, and strings always serialise.
        let _ = write_head(&mut json, description);
        self.json = Some(json);
        self.members = 0;
    }

    fn push(&mut self, member: &str) {
        let Some(json) = self.json.as_mut() else {
            return;
        };
        if self.members > 0 {
            let _ = json.write_all(b",");
        }
        let _ = serde_json::to_writer(&mut *json, member);
        self.members += 1;
    }

    fn finish(self: Box<Self>) -> Bytes {
        let Some(mut json) = self.json else {
            return Bytes::new();
        };
        let _ = json.write_all(b"]}");
        let gz = json.into_inner().ok();
        Bytes::from(gz.and_then(|gz| gz.finish().ok()).unwrap_or_default())
    }
}

/// Most bytes reserved up front for a blob (the `Vec` grows past it if needed).
const MOST_RESERVED: usize = 256 << 20;

/// Bytes of JSON handed to the compressor at once.
const WRITE_BUFFER: usize = 256 * 1024;

fn write_head<W: Write>(w: &mut W, description: &CohortDescription) -> std::io::Result<()> {
    w.write_all(b"{\"cohortId\":")?;
    serde_json::to_writer(&mut *w, &description.cohort_id)?;
    w.write_all(b",\"groupType\":")?;
    serde_json::to_writer(&mut *w, &description.group_type)?;
    write!(
        w,
        ",\"lastModified\":{},\"size\":{},\"memberIds\":[",
        description.last_modified, description.size
    )
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn blob_is_gzip_of_the_upstream_shape() {
        let description = CohortDescription {
            cohort_id: "c\"1".into(),
            group_type: "User".into(),
            size: 2,
            last_modified: 7,
        };
        let blob = build(&description, &["a".into(), "b\\".into()]);
        let mut text = String::new();
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(
            text,
            r#"{"cohortId":"c\"1","groupType":"User","lastModified":7,"size":2,"memberIds":["a","b\\"]}"#
        );
    }
}
