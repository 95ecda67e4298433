//! Reading a result row's columns by name, whichever driver produced it: sqlx's `AnyRow`
//! (every statement through the pool) or a `rusqlite` row (the SQLite reader thread,
//! [`crate::reader`]). Repositories parse rows through this trait once, for both.

use crate::error::{InfraError, Result};
use sqlx::Row as _;
use std::collections::HashMap;

/// A row's columns by name. A column absent from the row is an error; NULL is `None`.
pub trait Columns {
    /// A TEXT column.
    ///
    /// # Errors
    /// No such column, or not text.
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    /// An INTEGER column.
    ///
    /// # Errors
    /// No such column, or not an integer.
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    /// A BLOB (BYTEA) column.
    ///
    /// # Errors
    /// No such column, or not bytes.
    fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>>;

    /// A TEXT column that must not be NULL.
    ///
    /// # Errors
    /// As [`Self::opt_text`], or NULL.
    fn text(&self, col: &str) -> Result<String> {
        self.opt_text(col)?.ok_or_else(|| null(col))
    }
    /// An INTEGER column that must not be NULL.
    ///
    /// # Errors
    /// As [`Self::opt_int`], or NULL.
    fn int(&self, col: &str) -> Result<i64> {
        self.opt_int(col)?.ok_or_else(|| null(col))
    }
    /// A BLOB column that must not be NULL.
    ///
    /// # Errors
    /// As [`Self::opt_bytes`], or NULL.
    fn bytes(&self, col: &str) -> Result<Vec<u8>> {
        self.opt_bytes(col)?.ok_or_else(|| null(col))
    }
}

fn null(col: &str) -> InfraError {
    InfraError::Storage(format!("column {col} is NULL where a value is required"))
}

impl Columns for sqlx::any::AnyRow {
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        Ok(self.try_get(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        Ok(self.try_get(col)?)
    }
    fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.try_get(col)?)
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

    fn get<T: rusqlite::types::FromSql>(&self, col: &str) -> Result<Option<T>> {
        let i = *self.index.get(col).ok_or_else(|| InfraError::Storage(format!("no column {col} in the row")))?;
        self.row.get::<_, Option<T>>(i).map_err(|e| InfraError::Storage(format!("column {col}: {e}")))
    }
}

/// A statement's columns by name.
#[must_use]
pub fn column_index(stmt: &rusqlite::Statement<'_>) -> HashMap<String, usize> {
    stmt.column_names().into_iter().enumerate().map(|(i, n)| (n.to_string(), i)).collect()
}

impl Columns for SqliteRow<'_> {
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        self.get(col)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        self.get(col)
    }
    fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>> {
        self.get(col)
    }
}
