//! The key permissions an access policy grants (Azure Key Vault's key permissions). A
//! policy is stored as the JSON list of their names, so the names are a stored format.

use crate::error::{Result, VaultError};

/// One key permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Read a key's public part and attributes.
    Get,
    /// List keys and versions.
    List,
    /// Create a key.
    Create,
    /// Change a version's attributes, operations or tags.
    Update,
    /// Import a key.
    Import,
    /// Soft-delete a key.
    Delete,
    /// Recover a soft-deleted key.
    Recover,
    /// Back a key up.
    Backup,
    /// Restore a key backup.
    Restore,
    /// Purge a soft-deleted key.
    Purge,
    /// Rotate a key.
    Rotate,
    /// Read a rotation policy.
    GetRotationPolicy,
    /// Set a rotation policy.
    SetRotationPolicy,
    /// Encrypt.
    Encrypt,
    /// Decrypt.
    Decrypt,
    /// Wrap a key.
    WrapKey,
    /// Unwrap a key.
    UnwrapKey,
    /// Sign.
    Sign,
    /// Verify.
    Verify,
}

impl Permission {
    /// Every permission, in the order listings show them.
    pub const ALL: [Permission; 19] = [
        Permission::Get,
        Permission::List,
        Permission::Create,
        Permission::Update,
        Permission::Import,
        Permission::Delete,
        Permission::Recover,
        Permission::Backup,
        Permission::Restore,
        Permission::Purge,
        Permission::Rotate,
        Permission::GetRotationPolicy,
        Permission::SetRotationPolicy,
        Permission::Encrypt,
        Permission::Decrypt,
        Permission::WrapKey,
        Permission::UnwrapKey,
        Permission::Sign,
        Permission::Verify,
    ];

    /// The name in policies, the API and messages.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Get => "get",
            Permission::List => "list",
            Permission::Create => "create",
            Permission::Update => "update",
            Permission::Import => "import",
            Permission::Delete => "delete",
            Permission::Recover => "recover",
            Permission::Backup => "backup",
            Permission::Restore => "restore",
            Permission::Purge => "purge",
            Permission::Rotate => "rotate",
            Permission::GetRotationPolicy => "getrotationpolicy",
            Permission::SetRotationPolicy => "setrotationpolicy",
            Permission::Encrypt => "encrypt",
            Permission::Decrypt => "decrypt",
            Permission::WrapKey => "wrapKey",
            Permission::UnwrapKey => "unwrapKey",
            Permission::Sign => "sign",
            Permission::Verify => "verify",
        }
    }

    /// The permission named `name` (as [`Self::as_str`] spells it).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// Parses a requested list; `all` stands for every permission.
    ///
    /// # Errors
    /// `BadParameter` naming the unknown permission and the valid ones.
    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Vec<Self>> {
        parse_names(names, &Self::ALL, Self::as_str, "permission")
    }

    /// The names of `list`, for storage and answers.
    #[must_use]
    pub fn names(list: &[Self]) -> Vec<&'static str> {
        list.iter().map(|p| p.as_str()).collect()
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One secret permission (Azure Key Vault's secret permissions): a list of its own in an
/// access policy, never implied by a key permission. Stored in the policy's JSON list as
/// `secrets/NAME`, beside the key permissions' names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretPermission {
    /// Read a secret's value and attributes.
    Get,
    /// List secrets and versions.
    List,
    /// Set a secret (a new version), or update a version's attributes.
    Set,
    /// Soft-delete a secret.
    Delete,
    /// Recover a soft-deleted secret.
    Recover,
    /// Back a secret up.
    Backup,
    /// Restore a secret backup.
    Restore,
    /// Purge a soft-deleted secret.
    Purge,
}

impl SecretPermission {
    /// Every secret permission, in the order listings show them.
    pub const ALL: [SecretPermission; 8] = [
        SecretPermission::Get,
        SecretPermission::List,
        SecretPermission::Set,
        SecretPermission::Delete,
        SecretPermission::Recover,
        SecretPermission::Backup,
        SecretPermission::Restore,
        SecretPermission::Purge,
    ];

    /// The name in policies, the API and messages.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SecretPermission::Get => "get",
            SecretPermission::List => "list",
            SecretPermission::Set => "set",
            SecretPermission::Delete => "delete",
            SecretPermission::Recover => "recover",
            SecretPermission::Backup => "backup",
            SecretPermission::Restore => "restore",
            SecretPermission::Purge => "purge",
        }
    }

    /// The name in a stored policy (`secrets/get`), apart from the key permissions'.
    #[must_use]
    pub fn stored_name(self) -> String {
        format!("{STORED_PREFIX}{}", self.as_str())
    }

    /// The permission named `name` (as [`Self::as_str`] spells it).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The permission a stored name (`secrets/get`) stands for.
    #[must_use]
    pub fn from_stored(name: &str) -> Option<Self> {
        name.strip_prefix(STORED_PREFIX).and_then(Self::from_name)
    }

    /// Parses a requested list; `all` stands for every secret permission.
    ///
    /// # Errors
    /// `BadParameter` naming the unknown permission and the valid ones.
    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Vec<Self>> {
        parse_names(names, &Self::ALL, Self::as_str, "secret permission")
    }

    /// The names of `list`, for answers.
    #[must_use]
    pub fn names(list: &[Self]) -> Vec<&'static str> {
        list.iter().map(|p| p.as_str()).collect()
    }
}

impl std::fmt::Display for SecretPermission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A requested list of permission names (`all` for every one of `all`), each as `name`
/// spells it; an unknown one is refused naming the valid ones (`what`: which kind).
fn parse_names<T: Copy, S: AsRef<str>>(
    names: &[S],
    all: &[T],
    name: fn(T) -> &'static str,
    what: &str,
) -> Result<Vec<T>> {
    if names.iter().any(|n| n.as_ref() == "all") {
        return Ok(all.to_vec());
    }
    names
        .iter()
        .map(|n| {
            all.iter().copied().find(|p| name(*p) == n.as_ref()).ok_or_else(|| {
                let valid: Vec<&str> = all.iter().map(|p| name(*p)).collect();
                VaultError::bad(format!("unknown {what} {:?}; valid: {}, or all", n.as_ref(), valid.join(", ")))
            })
        })
        .collect()
}

/// How a secret permission's stored name starts.
const STORED_PREFIX: &str = "secrets/";

#[cfg(test)]
mod tests {
    use super::{Permission, SecretPermission};

    #[test]
    fn secret_permissions_are_their_own_list() {
        assert_eq!(SecretPermission::parse_list(&["all"]).unwrap().len(), 8);
        assert_eq!(SecretPermission::from_stored("secrets/get"), Some(SecretPermission::Get));
        assert_eq!(SecretPermission::from_stored("get"), None, "a key permission's name is not a secret's");
        assert_eq!(Permission::from_name("secrets/get"), None);
        for p in SecretPermission::ALL {
            assert_eq!(SecretPermission::from_stored(&p.stored_name()), Some(p));
        }
        let e = SecretPermission::parse_list(&["wrapKey"]).unwrap_err().to_string();
        assert!(e.contains("\"wrapKey\"") && e.contains("purge"), "{e}");
    }

    #[test]
    fn names_round_trip_and_all_expands() {
        for p in Permission::ALL {
            assert_eq!(Permission::from_name(p.as_str()), Some(p));
        }
        assert_eq!(Permission::parse_list(&["all"]).unwrap().len(), 19);
        assert_eq!(Permission::parse_list(&["get", "wrapKey"]).unwrap(), [Permission::Get, Permission::WrapKey]);
        let e = Permission::parse_list(&["fly"]).unwrap_err().to_string();
        assert!(e.contains("\"fly\"") && e.contains("unwrapKey"), "{e}");
        assert_eq!(Permission::from_name("WRAPKEY"), None, "names are exact");
    }
}
