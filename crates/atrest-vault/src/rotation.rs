//! Rotation policies (AKV `rotationpolicy`) and the rotation due-check the server's
//! scheduler runs.
//!
//! A policy has lifetime actions — `Rotate` or `Notify`, triggered `timeAfterCreate` (of
//! the latest version) or `timeBeforeExpiry` (of the latest version's `exp`) — and an
//! optional `expiryTime` that sets `exp` on versions made by rotation. Durations are
//! ISO-8601 (`P90D`, `P1Y2M`, `PT48H`), echoed verbatim; for scheduling, a year counts
//! 365 days and a month 30.

use crate::error::{Result, VaultError};
use crate::model::VaultInfo;
use crate::repo::rotation as repo;
use crate::rowmac::Field;
use crate::service::VaultService;
use serde::{Deserialize, Serialize};

/// A trigger: exactly one of the two is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// Time after the latest version was created.
    #[serde(rename = "timeAfterCreate", skip_serializing_if = "Option::is_none")]
    pub time_after_create: Option<String>,
    /// Time before the latest version expires.
    #[serde(rename = "timeBeforeExpiry", skip_serializing_if = "Option::is_none")]
    pub time_before_expiry: Option<String>,
}

/// What a lifetime action does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// `Rotate` or `Notify`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// One lifetime action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifetimeAction {
    /// When.
    pub trigger: Trigger,
    /// What.
    pub action: Action,
}

/// Policy attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyAttributes {
    /// `exp` of rotated versions, from their creation.
    #[serde(rename = "expiryTime", skip_serializing_if = "Option::is_none")]
    pub expiry_time: Option<String>,
    /// Set by the vault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// Set by the vault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated: Option<i64>,
}

/// A rotation policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationPolicy {
    /// Actions.
    #[serde(rename = "lifetimeActions", default)]
    pub lifetime_actions: Vec<LifetimeAction>,
    /// Attributes.
    #[serde(default)]
    pub attributes: PolicyAttributes,
}

/// Most lifetime actions a policy holds (AKV allows one Rotate and a few notifications).
pub const MAX_LIFETIME_ACTIONS: usize = 10;

impl RotationPolicy {
    /// The policy of a key that never had one set: notify 30 days before expiry.
    #[must_use]
    pub fn default_policy() -> Self {
        Self {
            lifetime_actions: vec![LifetimeAction {
                trigger: Trigger { time_after_create: None, time_before_expiry: Some("P30D".into()) },
                action: Action { kind: "Notify".into() },
            }],
            attributes: PolicyAttributes::default(),
        }
    }

    /// Checks a policy as AKV does: one trigger per action, `Rotate` at most once, at most
    /// [`MAX_LIFETIME_ACTIONS`] actions, triggers ≥ 7 days, `expiryTime` ≥ 28 days, action
    /// types `Rotate`/`Notify`.
    ///
    /// # Errors
    /// `BadParameter` saying what to fix.
    pub fn validate(&self) -> Result<()> {
        if self.lifetime_actions.len() > MAX_LIFETIME_ACTIONS {
            return Err(VaultError::bad(format!(
                "a rotation policy has at most {MAX_LIFETIME_ACTIONS} lifetime actions (at most one of them Rotate), \
                 not {}",
                self.lifetime_actions.len()
            )));
        }
        let mut rotates = 0;
        for a in &self.lifetime_actions {
            let t = match (&a.trigger.time_after_create, &a.trigger.time_before_expiry) {
                (Some(t), None) | (None, Some(t)) => t,
                _ => {
                    return Err(VaultError::bad(
                        "each lifetime action needs exactly one of timeAfterCreate and timeBeforeExpiry",
                    ));
                }
            };
            if parse_duration(t)? < 7 * 86_400 {
                return Err(VaultError::bad(format!("trigger {t} is shorter than the minimum of 7 days (P7D)")));
            }
            match a.action.kind.to_ascii_lowercase().as_str() {
                "rotate" => rotates += 1,
                "notify" => {}
                other => return Err(VaultError::bad(format!("unknown action type {other:?}: use Rotate or Notify"))),
            }
        }
        if rotates > 1 {
            return Err(VaultError::bad("a rotation policy may have at most one Rotate action"));
        }
        if let Some(e) = &self.attributes.expiry_time
            && parse_duration(e)? < 28 * 86_400
        {
            return Err(VaultError::bad(format!("expiryTime {e} is shorter than the minimum of 28 days (P28D)")));
        }
        Ok(())
    }
}

/// Seconds in an ISO-8601 duration (`PnYnMnWnDTnHnMnS`; a year is 365 days, a month 30).
///
/// # Errors
/// `BadParameter` for anything else.
pub fn parse_duration(s: &str) -> Result<i64> {
    atrest_wire::duration::seconds(s)
        .ok_or_else(|| VaultError::bad(format!("{s:?} is not an ISO-8601 duration such as P90D, P1Y or PT48H")))
}

/// One lifetime action the rotation scheduler took.
#[derive(Debug, Clone)]
pub struct RotationAction {
    /// The key's vault.
    pub vault: VaultInfo,
    /// The key.
    pub key: String,
    /// What happened.
    pub outcome: RotationOutcome,
}

/// What a lifetime action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationOutcome {
    /// `Rotate`: the new version.
    Rotated {
        /// Its id.
        version: String,
    },
    /// `Rotate` failed; the error's code.
    Failed {
        /// e.g. `KeyNotFound`.
        code: &'static str,
    },
    /// `Notify` for this (latest) version, reported once.
    Notified {
        /// Its id.
        version: String,
    },
}

impl VaultService {
    async fn policy_row(&self, vault: &VaultInfo, name_lc: &str) -> Result<Option<(RotationPolicy, String)>> {
        let Some(repo::PolicyRow { policy, created, updated, notified_version: notified, mac }) =
            repo::policy(&self.db, &vault.id, name_lc).await?
        else {
            return Ok(None);
        };
        self.mac.check(
            "rotation_policies",
            &[
                Field::Text(&vault.id),
                Field::Text(name_lc),
                Field::Text(&policy),
                Field::Int(created),
                Field::Int(updated),
                Field::Text(&notified),
            ],
            &mac,
            || format!("rotation policy of key {name_lc}"),
        )?;
        let mut p: RotationPolicy = serde_json::from_str(&policy)
            .map_err(|_| VaultError::Integrity { what: format!("rotation policy of key {name_lc}") })?;
        p.attributes.created = Some(created);
        p.attributes.updated = Some(updated);
        Ok(Some((p, notified)))
    }

    async fn write_policy(
        &self,
        vault: &VaultInfo,
        name_lc: &str,
        p: &RotationPolicy,
        created: i64,
        notified: &str,
    ) -> Result<()> {
        let mut stored = p.clone();
        stored.attributes.created = None;
        stored.attributes.updated = None;
        let json = serde_json::to_string(&stored).map_err(|e| VaultError::bad(e.to_string()))?;
        let now = self.now();
        let mac = self.mac.tag(
            "rotation_policies",
            &[
                Field::Text(&vault.id),
                Field::Text(name_lc),
                Field::Text(&json),
                Field::Int(created),
                Field::Int(now),
                Field::Text(notified),
            ],
        );
        let row = repo::PolicyRow { policy: json, created, updated: now, notified_version: notified.to_string(), mac };
        repo::replace(&self.db, &vault.id, name_lc, &row).await
    }

    /// The key's rotation policy (the default one if none was set).
    ///
    /// # Errors
    /// `NotFound` for an unknown key.
    pub async fn get_rotation_policy(&self, vault: &VaultInfo, name: &str) -> Result<RotationPolicy> {
        let (k, _) = self.live_version(vault, name, None).await?;
        Ok(self.policy_row(vault, &k.name_lc).await?.map_or_else(RotationPolicy::default_policy, |p| p.0))
    }

    /// Replaces the key's rotation policy.
    ///
    /// # Errors
    /// `NotFound`, `BadParameter`.
    pub async fn set_rotation_policy(
        &self,
        vault: &VaultInfo,
        name: &str,
        policy: RotationPolicy,
    ) -> Result<RotationPolicy> {
        policy.validate()?;
        let _g = self.write_guard().await;
        let (k, _) = self.live_version(vault, name, None).await?;
        let existing = self.policy_row(vault, &k.name_lc).await?;
        let created = existing.as_ref().and_then(|p| p.0.attributes.created).unwrap_or_else(|| self.now());
        let notified = existing.map(|p| p.1).unwrap_or_default();
        self.write_policy(vault, &k.name_lc, &policy, created, &notified).await?;
        drop(_g);
        Ok(self.policy_row(vault, &k.name_lc).await?.map_or(policy, |p| p.0))
    }

    /// The policy set on a key, if one was (for backups).
    pub(crate) async fn stored_rotation_policy(
        &self,
        vault: &VaultInfo,
        name_lc: &str,
    ) -> Result<Option<RotationPolicy>> {
        Ok(self.policy_row(vault, name_lc).await?.map(|(mut p, _)| {
            p.attributes.created = None;
            p.attributes.updated = None;
            p
        }))
    }

    /// `expiryTime` of the key's policy in seconds, if set (applied by rotation).
    pub(crate) async fn policy_expiry(&self, vault: &VaultInfo, name_lc: &str) -> Result<Option<i64>> {
        match self.policy_row(vault, name_lc).await? {
            Some((p, _)) => p.attributes.expiry_time.as_deref().map(parse_duration).transpose(),
            None => Ok(None),
        }
    }

    /// Runs due lifetime actions in every vault: rotates keys whose `Rotate` trigger has
    /// passed and reports (once per version) keys whose `Notify` trigger has passed.
    /// Returns each action taken, for the caller to audit and log.
    ///
    /// # Errors
    /// Database errors; a key whose rotation fails is reported as [`RotationOutcome::Failed`].
    pub async fn run_due_rotations(&self) -> Result<Vec<RotationAction>> {
        let rows = repo::live_keys_with_policies(&self.db).await?;
        // A vault whose row fails its check is skipped; its own requests fail closed.
        let vaults: std::collections::HashMap<String, VaultInfo> =
            self.verified_vaults().await?.0.into_iter().map(|v| (v.id.clone(), v)).collect();
        let mut done = Vec::new();
        for (vid, name_lc) in &rows {
            let Some(vault) = vaults.get(vid) else { continue };
            let (k, latest) = match self.live_version(vault, name_lc, None).await {
                Ok(x) => x,
                Err(_) => continue,
            };
            let Some((policy, notified)) = self.policy_row(vault, name_lc).await? else { continue };
            let now = self.now();
            for a in &policy.lifetime_actions {
                let due = match (&a.trigger.time_after_create, &a.trigger.time_before_expiry) {
                    (Some(t), _) => latest.created + parse_duration(t)? <= now,
                    (_, Some(t)) => latest.exp.is_some_and(|exp| exp - parse_duration(t).unwrap_or(0) <= now),
                    _ => false,
                };
                if !due {
                    continue;
                }
                let action = |outcome| RotationAction { vault: vault.clone(), key: k.name.clone(), outcome };
                if a.action.kind.eq_ignore_ascii_case("rotate") {
                    done.push(action(match self.rotate_key(vault, &k.name).await {
                        Ok(b) => RotationOutcome::Rotated { version: b.version },
                        Err(e) => RotationOutcome::Failed { code: e.code() },
                    }));
                    break;
                } else if notified != latest.version {
                    let created = policy.attributes.created.unwrap_or(now);
                    self.write_policy(vault, name_lc, &policy, created, &latest.version).await?;
                    done.push(action(RotationOutcome::Notified { version: latest.version.clone() }));
                }
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::{Action, LifetimeAction, MAX_LIFETIME_ACTIONS, RotationPolicy, Trigger, parse_duration};

    #[test]
    fn lifetime_actions_are_bounded() {
        let notify = LifetimeAction {
            trigger: Trigger { time_after_create: None, time_before_expiry: Some("P30D".into()) },
            action: Action { kind: "Notify".into() },
        };
        let policy = |n| RotationPolicy { lifetime_actions: vec![notify.clone(); n], ..RotationPolicy::default() };
        assert!(policy(MAX_LIFETIME_ACTIONS).validate().is_ok());
        for n in [MAX_LIFETIME_ACTIONS + 1, 1000] {
            let e = policy(n).validate().unwrap_err().to_string();
            assert!(e.contains("at most 10 lifetime actions"), "{e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("P90D").unwrap(), 90 * 86_400);
        assert_eq!(parse_duration("P1Y2M").unwrap(), 365 * 86_400 + 60 * 86_400);
        assert_eq!(parse_duration("PT48H").unwrap(), 48 * 3600);
        assert_eq!(parse_duration("P1W").unwrap(), 7 * 86_400);
        assert_eq!(parse_duration("P1DT1M").unwrap(), 86_400 + 60);
        for bad in ["", "P", "90D", "PT", "P1H", "PD", "P1D2", "P1M1Y", "P99999999999999999999D"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
