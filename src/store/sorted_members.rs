//! A cohort's member ids in compact form for the in-memory store.
//!
//! Cohorts have millions of members; a `HashSet<String>` plus a per-member index entry cost
//! about 600 bytes per member. Here the ids are sorted, de-duplicated and concatenated into one
//! buffer with one end offset each (the id's length plus 8 bytes per member), membership is a
//! binary search, and the difference between two versions is a merge walk.
//!
//! The Redis store's replica-local mirror ([`super::cohort_mirror`]) keeps the same form, built
//! page by page with [`SortedMembersBuilder`] so that no `Vec<String>` of the whole cohort exists.

use std::cmp::Ordering;

/// Sorted, de-duplicated member ids in one buffer; see the module documentation.
#[derive(Debug, Default)]
pub struct SortedMembers {
    bytes: String,
    /// `ends[i]` is where member `i` ends in `bytes`; it starts where member `i - 1` ends.
    ends: Vec<usize>,
}

impl SortedMembers {
    /// The members of `ids`, in any order and with duplicates.
    pub fn new(ids: &[String]) -> Self {
        let mut sorted: Vec<&str> = ids.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut bytes = String::with_capacity(sorted.iter().map(|id| id.len()).sum());
        let mut ends = Vec::with_capacity(sorted.len());
        for id in sorted {
            bytes.push_str(id);
            ends.push(bytes.len());
        }
        Self { bytes, ends }
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Bytes held on the heap (buffer and offsets), for logs and memory figures.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.ends.capacity() * std::mem::size_of::<usize>()
    }

    fn get(&self, index: usize) -> &str {
        id_at(&self.bytes, &self.ends, index)
    }

    /// Whether `member` is one of the members.
    pub fn contains(&self, member: &str) -> bool {
        let (mut low, mut high) = (0, self.ends.len());
        while low < high {
            let middle = low + (high - low) / 2;
            match self.get(middle).cmp(member) {
                Ordering::Less => low = middle + 1,
                Ordering::Greater => high = middle,
                Ordering::Equal => return true,
            }
        }
        false
    }

    /// The members in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.ends.len()).map(|i| self.get(i))
    }

    /// `(added, removed)`: how many of `new`'s members are not in `self`, and the reverse.
    pub fn difference_counts(&self, new: &SortedMembers) -> (usize, usize) {
        let (mut old_iter, mut new_iter) = (self.iter().peekable(), new.iter().peekable());
        let (mut added, mut removed) = (0, 0);
        loop {
            match (old_iter.peek(), new_iter.peek()) {
                (Some(o), Some(n)) => match o.cmp(n) {
                    Ordering::Less => {
                        removed += 1;
                        old_iter.next();
                    }
                    Ordering::Greater => {
                        added += 1;
                        new_iter.next();
                    }
                    Ordering::Equal => {
                        old_iter.next();
                        new_iter.next();
                    }
                },
                (Some(_), None) => return (added, removed + old_iter.count()),
                (None, Some(_)) => return (added + new_iter.count(), removed),
                (None, None) => return (added, removed),
            }
        }
    }
}

/// Collects member ids in any order (with duplicates) in compact form, then sorts them once:
/// about twice the final size plus 8 bytes per id at the peak, instead of a `String` per id.
#[derive(Debug, Default)]
pub struct SortedMembersBuilder {
    bytes: String,
    ends: Vec<usize>,
}

impl SortedMembersBuilder {
    /// Adds one id.
    pub fn push(&mut self, id: &str) {
        self.bytes.push_str(id);
        self.ends.push(self.bytes.len());
    }

    fn span(&self, index: usize) -> &str {
        id_at(&self.bytes, &self.ends, index)
    }

    /// The ids sorted and de-duplicated.
    pub fn finish(self) -> SortedMembers {
        let mut order: Vec<usize> = (0..self.ends.len()).collect();
        order.sort_unstable_by(|a, b| self.span(*a).cmp(self.span(*b)));
        order.dedup_by(|a, b| self.span(*a) == self.span(*b));
        let mut bytes = String::with_capacity(order.iter().map(|i| self.span(*i).len()).sum());
        let mut ends = Vec::with_capacity(order.len());
        for index in order {
            bytes.push_str(self.span(index));
            ends.push(bytes.len());
        }
        SortedMembers { bytes, ends }
    }
}

/// The `index`th id of a buffer of ids with their end offsets (empty when out of range).
fn id_at<'a>(bytes: &'a str, ends: &[usize], index: usize) -> &'a str {
    let start = index
        .checked_sub(1)
        .and_then(|i| ends.get(i))
        .copied()
        .unwrap_or(0);
    let end = ends.get(index).copied().unwrap_or(start);
    bytes.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(ids: &[&str]) -> SortedMembers {
        SortedMembers::new(&ids.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn members_are_sorted_deduplicated_and_found() {
        let m = members(&["b", "a", "", "ccc", "a"]);
        assert_eq!(m.iter().collect::<Vec<_>>(), ["", "a", "b", "ccc"]);
        assert_eq!(m.len(), 4);
        for id in ["", "a", "b", "ccc"] {
            assert!(m.contains(id), "{id}");
        }
        for id in ["aa", "c", "cccc", "0", "z"] {
            assert!(!m.contains(id), "{id}");
        }
        assert!(!members(&[]).contains("a"));
        assert_eq!(members(&[]).len(), 0);
    }

    #[test]
    fn the_builder_sorts_and_deduplicates_like_new() {
        let ids = ["b", "a", "", "ccc", "a", "user-10", "user-1", "b"];
        let mut builder = SortedMembersBuilder::default();
        for id in ids {
            builder.push(id);
        }
        let built = builder.finish();
        let expected = members(&ids);
        assert_eq!(
            built.iter().collect::<Vec<_>>(),
            expected.iter().collect::<Vec<_>>()
        );
        assert_eq!(built.len(), 6);
        assert!(built.contains("user-1") && built.contains("") && !built.contains("user"));
        assert_eq!(SortedMembersBuilder::default().finish().len(), 0);
    }

    #[test]
    fn difference_counts_added_and_removed() {
        let old = members(&["a", "b", "c", "d"]);
        let new = members(&["b", "d", "e", "f", "g"]);
        assert_eq!(old.difference_counts(&new), (3, 2));
        assert_eq!(new.difference_counts(&old), (2, 3));
        assert_eq!(old.difference_counts(&members(&[])), (0, 4));
        assert_eq!(members(&[]).difference_counts(&old), (4, 0));
        assert_eq!(old.difference_counts(&old), (0, 0));
    }
}
