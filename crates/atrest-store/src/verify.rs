//! A full scan of the data service's rows (`POST /admin/verify`, `atrest verify`): every
//! resource row and every object row checked against its MAC, and every object row
//! against the resource it names. A point read finds a row only through its lookup
//! columns (`resource_id`, `kind`, `name_hash`), so a row whose lookup columns were
//! edited can only answer `NotFound` there; listing its resource or kind, or this scan, reports
//! it. Objects are read in pages, so memory stays flat however many there are.

use crate::StoreService;
use crate::error::Result;
use crate::model::Resource;
use std::collections::HashMap;

/// What a scan found.
#[derive(Debug, Default)]
pub struct RowReport {
    /// Resource rows read.
    pub resources: u64,
    /// Object rows read.
    pub objects: u64,
    /// One line per row that failed, saying which and why.
    pub problems: Vec<String>,
}

const PAGE: i64 = 1000;

impl StoreService {
    /// Scans every resource and object row.
    ///
    /// # Errors
    /// Database errors (a row that fails its check is a problem in the report).
    pub async fn verify_rows(&self) -> Result<RowReport> {
        let mut report = RowReport::default();
        let mut resources: HashMap<String, Resource> = HashMap::new();
        for (id, row) in crate::repo::resources::all(&self.db).await? {
            report.resources += 1;
            match row.and_then(|r| self.verify_resource(r)) {
                Ok(r) => {
                    resources.insert(r.id.clone(), r);
                }
                Err(e) => report.problems.push(format!("resource row {id}: {e}")),
            }
        }
        let mut after: (String, String, Vec<u8>) = (String::new(), String::new(), Vec::new());
        loop {
            let rows = crate::repo::objects::page_after(&self.db, &after, PAGE).await?;
            let full = rows.len() as i64 == PAGE;
            let last = rows.last().map(|o| (o.row.resource_id.clone(), o.kind.clone(), o.row.name_hash.clone()));
            for row in rows {
                report.objects += 1;
                let (rid, kind, id) = (row.row.resource_id.clone(), row.kind.clone(), row.row.id.clone());
                match resources.get(&rid) {
                    None => report.problems.push(format!(
                        "{kind} object {id} names resource {rid}, which does not exist: its lookup columns were \
                         edited, or its resource row is gone"
                    )),
                    Some(r) => {
                        if let Err(e) = self.verify_object(r, row) {
                            report.problems.push(format!("{kind} object {id} in resource {}: {e}", r.name));
                        }
                    }
                }
            }
            match last {
                Some(last) if full => after = last,
                _ => break,
            }
        }
        Ok(report)
    }
}
