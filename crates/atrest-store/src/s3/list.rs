//! Listing a bucket in key order (`ListObjects` v1 and v2): a page costs one index range
//! scan of the rows it returns (plus one per common prefix, which is skipped whole),
//! whatever the bucket holds. Keys compare as bytes (UTF-8), as on S3.

use crate::error::{Result, StoreError};
use crate::model::{DataRole, ObjectKind};
use crate::repo::objects as repo;
use crate::service::StoreService;
use atrest_vault::Principal;

/// Which part of a bucket to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only keys starting with this.
    pub prefix: String,
    /// Roll keys up to the first delimiter after the prefix into common prefixes.
    pub delimiter: Option<String>,
    /// Start after this key (marker, start-after, or a continuation token's key). A key
    /// inside a common prefix skips the rest of that prefix.
    pub after: Option<String>,
    /// At most this many keys and common prefixes together.
    pub max: usize,
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Key.
    pub key: String,
    /// Plaintext size.
    pub size: u64,
    /// Last written (Unix seconds).
    pub modified: i64,
    /// ETag without quotes.
    pub etag: String,
}

/// One page.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    /// Objects, in key order.
    pub objects: Vec<ListEntry>,
    /// Common prefixes, in order.
    pub prefixes: Vec<String>,
    /// More follow.
    pub truncated: bool,
    /// The last key or common prefix returned (where the next page starts).
    pub last: Option<String>,
}

/// The smallest byte string greater than every string starting with `p` (`None`: none,
/// `p` is empty or all 0xFF).
pub(crate) fn after_prefix(p: &[u8]) -> Option<Vec<u8>> {
    let mut v = p.to_vec();
    while let Some(last) = v.pop() {
        if last < 0xFF {
            v.push(last + 1);
            return Some(v);
        }
    }
    None
}

/// The common prefix `key` rolls into: up to and including the first delimiter after
/// `prefix`.
fn common_prefix<'k>(key: &'k [u8], prefix: &[u8], delimiter: Option<&[u8]>) -> Option<&'k [u8]> {
    let d = delimiter.filter(|d| !d.is_empty())?;
    let rest = key.strip_prefix(prefix)?;
    let at = rest.windows(d.len()).position(|w| w == d)?;
    Some(&key[..prefix.len() + at + d.len()])
}

impl StoreService {
    /// A page of bucket `bucket`. Needs no key: keys, sizes and times are readable, and
    /// ETags are under the infrastructure layer only (as S3 metadata is on AWS).
    ///
    /// # Errors
    /// `NotFound`, `Forbidden`, `Integrity`.
    pub async fn s3_list(&self, actor: &Principal, bucket: &str, q: &ListQuery) -> Result<ListPage> {
        let r = self.authorized(actor, bucket, DataRole::Reader).await?;
        let mut page = ListPage::default();
        if q.max == 0 {
            return Ok(page);
        }
        let prefix = q.prefix.as_bytes();
        let delim = q.delimiter.as_deref().map(str::as_bytes);
        let upper = after_prefix(prefix);
        let start = |key: &[u8]| -> Option<(Vec<u8>, bool)> {
            match common_prefix(key, prefix, delim) {
                Some(cp) => after_prefix(cp).map(|n| (n, true)),
                None => Some((key.to_vec(), false)),
            }
        };
        let mut cursor = match q.after.as_deref() {
            Some(a) if a.as_bytes() >= prefix => start(a.as_bytes()),
            _ => Some((prefix.to_vec(), true)),
        };
        'pages: while let Some((from, inclusive)) = cursor.take() {
            let want = q.max - page.objects.len() - page.prefixes.len() + 1;
            let limit = i64::try_from(want.min(1001)).unwrap_or(1001);
            let rows = repo::s3_page(&self.db, &r.id, "s3", &from, inclusive, upper.as_deref(), limit).await?;
            let full = rows.len() == usize::try_from(limit).unwrap_or(usize::MAX);
            for stored in rows {
                let o = self.verify_object(&r, stored)?;
                if o.kind != ObjectKind::S3.as_str() {
                    return Err(self.integrity(&r, &format!("the kind of object {}", o.id)));
                }
                let key = o.skey.clone().unwrap_or_default();
                let text = |b: &[u8]| {
                    String::from_utf8(b.to_vec())
                        .map_err(|_| StoreError::Integrity(format!("the key of object {}", o.id)))
                };
                if page.objects.len() + page.prefixes.len() == q.max {
                    page.truncated = true;
                    break 'pages;
                }
                if let Some(cp) = common_prefix(&key, prefix, delim) {
                    let cp_text = text(cp)?;
                    page.prefixes.push(cp_text.clone());
                    page.last = Some(cp_text);
                    cursor = after_prefix(cp).map(|n| (n, true));
                    continue 'pages;
                }
                let m = self.s3_meta(&r, &o)?;
                let key_text = text(&key)?;
                page.objects.push(ListEntry {
                    key: key_text.clone(),
                    size: u64::try_from(o.size).unwrap_or(0),
                    modified: o.updated,
                    etag: m.etag,
                });
                page.last = Some(key_text);
                cursor = Some((key, false));
            }
            if !full {
                break;
            }
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::{after_prefix, common_prefix};

    #[test]
    fn prefixes_and_their_ends() {
        assert_eq!(after_prefix(b"photos/"), Some(b"photos0".to_vec()));
        assert_eq!(after_prefix(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(after_prefix(b""), None);
        assert_eq!(after_prefix(b"\xff\xff"), None);
        assert_eq!(common_prefix(b"photos/2024/a.jpg", b"photos/", Some(b"/")), Some(&b"photos/2024/"[..]));
        assert_eq!(common_prefix(b"photos/a.jpg", b"photos/", Some(b"/")), None);
        assert_eq!(common_prefix(b"a--b--c", b"", Some(b"--")), Some(&b"a--"[..]));
        assert_eq!(common_prefix(b"abc", b"", None), None);
        assert_eq!(common_prefix(b"abc", b"", Some(b"")), None);
        assert_eq!(common_prefix(b"other/x", b"photos/", Some(b"/")), None);
    }
}
