//! Reading a result row's columns by name, whichever driver produced it: sqlx's `AnyRow`
//! (every statement through the pool) or a `rusqlite` row (the SQLite reader thread,
//! [`crate::reader`]). Repositories parse rows through this trait once, for both.

use crate::error::{InfraError, Result};
use sqlx::Row as _;
use std::collections::HashMap;

/// A row's columns by name: `prefix` ‖ `col` (a joined read names each table's columns
/// apart with a prefix). A column absent from the row is an error; NULL is `None`.
pub trait Columns {
    /// A TEXT column.
    ///
    /// # Errors
    /// No such column, or not text.
    fn opt_text(&self, prefix: &str, col: &str) -> Result<Option<String>>;
    /// An INTEGER column.
    ///
    /// # Errors
    /// No such column, or not an integer.
    fn opt_int(&self, prefix: &str, col: &str) -> Result<Option<i64>>;
    /// A BLOB (BYTEA) column.
    ///
    /// # Errors
    /// No such column, or not bytes.
    fn opt_bytes(&self, prefix: &str, col: &str) -> Result<Option<Vec<u8>>>;

    /// A TEXT column that must not be NULL.
    ///
    /// # Errors
    /// As [`Self::opt_text`], or NULL.
    fn text(&self, prefix: &str, col: &str) -> Result<String> {
        self.opt_text(prefix, col)?.ok_or_else(|| null(prefix, col))
    }
    /// An INTEGER column that must not be NULL.
    ///
    /// # Errors
    /// As [`Self::opt_int`], or NULL.
    fn int(&self, prefix: &str, col: &str) -> Result<i64> {
        self.opt_int(prefix, col)?.ok_or_else(|| null(prefix, col))
    }
    /// A BLOB column that must not be NULL.
    ///
    /// # Errors
    /// As [`Self::opt_bytes`], or NULL.
    fn bytes(&self, prefix: &str, col: &str) -> Result<Vec<u8>> {
        self.opt_bytes(prefix, col)?.ok_or_else(|| null(prefix, col))
    }
}

fn null(prefix: &str, col: &str) -> InfraError {
    InfraError::Storage(format!("column {prefix}{col} is NULL where a value is required"))
}

impl Columns for sqlx::any::AnyRow {
    fn opt_text(&self, prefix: &str, col: &str) -> Result<Option<String>> {
        Ok(self.try_get(format!("{prefix}{col}").as_str())?)
    }
    fn opt_int(&self, prefix: &str, col: &str) -> Result<Option<i64>> {
        Ok(self.try_get(format!("{prefix}{col}").as_str())?)
    }
    fn opt_bytes(&self, prefix: &str, col: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.try_get(format!("{prefix}{col}").as_str())?)
    }
}

/// A `rusqlite` row with its statement's columns indexed by name (the row's own lookup
/// compares every name, for every column read).
pub struct SqliteRow<'a> {
    row: &'a rusqlite::Row<'a>,
    index: &'a HashMap<String, usize>,
}

impl<'a> SqliteRow<'a> {
    /// `row` read through `index` ([`column_index`] of its statement).
    #[must_use]
    pub fn new(row: &'a rusqlite::Row<'a>, index: &'a HashMap<String, usize>) -> Self {
        Self { row, index }
    }

    fn get<T: rusqlite::types::FromSql>(&self, prefix: &str, col: &str) -> Result<Option<T>> {
        // The name is put together on the stack: a read of a joined row looks up ~100.
        let mut buf = [0u8; 64];
        let n = prefix.len() + col.len();
        let name = buf
            .get_mut(..n)
            .map(|b| {
                b[..prefix.len()].copy_from_slice(prefix.as_bytes());
                b[prefix.len()..].copy_from_slice(col.as_bytes());
                &*b
            })
            .and_then(|b| std::str::from_utf8(b).ok());
        let i = name
            .and_then(|name| self.index.get(name))
            .copied()
            .ok_or_else(|| InfraError::Storage(format!("no column {prefix}{col} in the row")))?;
        self.row.get::<_, Option<T>>(i).map_err(|e| InfraError::Storage(format!("column {prefix}{col}: {e}")))
    }
}

/// A statement's columns by name.
#[must_use]
pub fn column_index(stmt: &rusqlite::Statement<'_>) -> HashMap<String, usize> {
    stmt.column_names().into_iter().enumerate().map(|(i, n)| (n.to_string(), i)).collect()
}

impl Columns for SqliteRow<'_> {
    fn opt_text(&self, prefix: &str, col: &str) -> Result<Option<String>> {
        self.get(prefix, col)
    }
    fn opt_int(&self, prefix: &str, col: &str) -> Result<Option<i64>> {
        self.get(prefix, col)
    }
    fn opt_bytes(&self, prefix: &str, col: &str) -> Result<Option<Vec<u8>>> {
        self.get(prefix, col)
    }
}
