//! A full scan of the data service's rows (`POST /admin/verify`, `atrest verify`): every
//! resource row and every object row checked against its MAC, and every object row
//! against the resource it names. A point read finds a row only through its lookup
//! columns (`resource_id`, `kind`, `name_hash`), so a row whose lookup columns were
//! edited can only answer 404 there; listing its resource or kind, or this scan, reports
//! it. Objects are read in pages, so memory stays flat however many there are.

use crate::StoreService;
use crate::error::Result;
use crate::model::Resource;
use crate::rows::OBJ_COLS;
use crate::service::RES_COLS;
use sqlx::Row;
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
        for row in sqlx::query(&format!("SELECT {RES_COLS} FROM store_resources")).fetch_all(self.db.pool()).await? {
            report.resources += 1;
            let id: String = row.try_get("id")?;
            match self.resource_from_row(&row) {
                Ok(r) => {
                    resources.insert(r.id.clone(), r);
                }
                Err(e) => report.problems.push(format!("resource row {id}: {e}")),
            }
        }
        let mut after: (String, String, Vec<u8>) = (String::new(), String::new(), Vec::new());
        loop {
            let rows = sqlx::query(&format!(
                "SELECT {OBJ_COLS} FROM store_objects WHERE (resource_id, kind, name_hash) > ($1, $2, $3) \
                 ORDER BY resource_id, kind, name_hash LIMIT {PAGE}"
            ))
            .bind(&after.0)
            .bind(&after.1)
            .bind(&after.2)
            .fetch_all(self.db.pool())
            .await?;
            for row in &rows {
                report.objects += 1;
                let (rid, kind, id): (String, String, String) =
                    (row.try_get("resource_id")?, row.try_get("kind")?, row.try_get("id")?);
                match resources.get(&rid) {
                    None => report.problems.push(format!(
                        "{kind} object {id} names resource {rid}, which does not exist: its lookup columns were \
                         edited, or its resource row is gone"
                    )),
                    Some(r) => {
                        if let Err(e) = self.object_from_row(r, row) {
                            report.problems.push(format!("{kind} object {id} in resource {}: {e}", r.name));
                        }
                    }
                }
            }
            match rows.last() {
                Some(last) if rows.len() as i64 == PAGE => {
                    after = (last.try_get("resource_id")?, last.try_get("kind")?, last.try_get("name_hash")?);
                }
                _ => break,
            }
        }
        Ok(report)
    }
}
