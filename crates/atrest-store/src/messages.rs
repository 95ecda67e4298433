//! Transient messages: send, receive with a visibility timeout, acknowledge. Always
//! sealed under the resource's message key, which the platform key wraps (even when the
//! resource uses a customer key), never returned after their TTL (≤ 24 h), and purged by
//! the sweeper.

use crate::cache::Slot;
use crate::error::{Result, StoreError};
use crate::hierarchy::{self, ObjectId};
use crate::layers;
use crate::model::{DataRole, Message, Resource};
use crate::repo::messages::{self as repo, MsgRow};
use crate::service::StoreService;
use atrest_crypto::secret::constant_time_eq;
use atrest_infra::rowmac::Field;
use atrest_vault::Principal;

/// Largest message body.
pub const MAX_MESSAGE: usize = 256 * 1024;

impl StoreService {
    fn msg_mac(&self, m: &MsgRow) -> Vec<u8> {
        self.mac.tag(
            "store_messages",
            &[
                Field::Text(&m.id),
                Field::Text(&m.resource_id),
                Field::Bytes(&m.body),
                Field::Bytes(&m.wrapped_dek),
                Field::Int(m.created),
                Field::Int(m.expires),
                Field::Int(m.visible_at),
                Field::Text(&m.receipt),
                Field::Int(m.deliveries),
            ],
        )
    }

    fn msg_id<'a>(r: &'a Resource, id: &'a str) -> ObjectId<'a> {
        ObjectId { resource: &r.id, object: id, generation: 0 }
    }

    /// Sends a message with a TTL in seconds (default 1 h, at most 24 h).
    ///
    /// # Errors
    /// `Forbidden` below writer; `BadParameter`; `KeyInaccessible`.
    pub async fn send_message(
        &self,
        actor: &Principal,
        resource: &str,
        body: &[u8],
        ttl: Option<i64>,
    ) -> Result<(String, i64)> {
        let ttl = ttl.unwrap_or(3600);
        if !(1..=self.cfg.max_message_ttl).contains(&ttl) {
            return Err(StoreError::bad(format!("a message TTL must be 1 to {} seconds", self.cfg.max_message_ttl)));
        }
        if body.len() > MAX_MESSAGE {
            return Err(StoreError::bad(format!("a message holds at most {MAX_MESSAGE} bytes; use a blob")));
        }
        let r = self.authorized(actor, resource, DataRole::Writer).await?;
        Self::check_usable(&r)?;
        // Messages are sealed under the platform key, but a revoked customer key stops
        // them too: the resource key's access is checked (a cache hit while fresh).
        self.key(&r, Slot::Resource(r.rk_epoch)).await?;
        let mk = self.key(&r, Slot::Messages).await?;
        let id = hex::encode(atrest_crypto::rand::bytes::<16>()?);
        let oid = Self::msg_id(&r, &id);
        let (dek, wrapped_dek) = hierarchy::new_data_key(&mk, oid)?;
        let now = self.now();
        let mut m = MsgRow {
            body: layers::seal_with(&self.infra, &dek, oid, b"atrest/message", body)?,
            id: id.clone(),
            resource_id: r.id.clone(),
            wrapped_dek,
            created: now,
            expires: now + ttl,
            visible_at: now,
            receipt: String::new(),
            deliveries: 0,
            mac: Vec::new(),
        };
        m.mac = self.msg_mac(&m);
        {
            let _g = self.write_guard().await;
            repo::insert(&self.db, &m).await?;
        }
        if r.diagnostics {
            self.audit(&r, &actor.name, "message-send", &id, "ok", serde_json::json!({"ttl": ttl})).await?;
        }
        Ok((id, m.expires))
    }

    fn verify_msg(&self, r: &Resource, m: MsgRow) -> Result<MsgRow> {
        if m.resource_id != r.id || !constant_time_eq(&self.msg_mac(&m), &m.mac) {
            return Err(self.integrity(r, &format!("message {} of resource {}", m.id, r.name)));
        }
        Ok(m)
    }

    /// Receives up to `max` visible, unexpired messages; each becomes invisible for
    /// `visibility` seconds (then it is delivered again unless acknowledged).
    ///
    /// # Errors
    /// `Forbidden` below writer; `KeyInaccessible`; `Integrity`.
    pub async fn receive_messages(
        &self,
        actor: &Principal,
        resource: &str,
        max: usize,
        visibility: i64,
    ) -> Result<Vec<Message>> {
        if !(1..=43_200).contains(&visibility) {
            return Err(StoreError::bad("the visibility timeout must be 1 to 43200 seconds"));
        }
        let r = self.authorized(actor, resource, DataRole::Writer).await?;
        Self::check_usable(&r)?;
        // Messages are sealed under the platform key, but a revoked customer key stops
        // them too: the resource key's access is checked (a cache hit while fresh).
        self.key(&r, Slot::Resource(r.rk_epoch)).await?;
        let mk = self.key(&r, Slot::Messages).await?;
        let now = self.now();
        let _g = self.write_guard().await;
        let mut tx = self.db.pool().begin().await?;
        let rows = repo::visible(&mut tx, &r.id, now, i64::try_from(max.clamp(1, 32)).unwrap_or(32)).await?;
        let mut out = Vec::new();
        for row in rows {
            let mut m = self.verify_msg(&r, row)?;
            let oid = Self::msg_id(&r, &m.id);
            let dek = hierarchy::open_data_key(&mk, oid, &m.wrapped_dek)
                .map_err(|_| self.integrity(&r, &format!("the data key of message {}", m.id)))?;
            let body = layers::open_with(&self.infra, &dek, oid, b"atrest/message", &m.body)
                .map_err(|_| self.integrity(&r, &format!("message {}", m.id)))?;
            let prev_visible = m.visible_at;
            m.visible_at = now + visibility;
            m.receipt = hex::encode(atrest_crypto::rand::bytes::<16>()?);
            m.deliveries += 1;
            m.mac = self.msg_mac(&m);
            if repo::deliver(&mut tx, &m, prev_visible).await? {
                out.push(Message { id: m.id, receipt: m.receipt, body, deliveries: m.deliveries, expires: m.expires });
            }
        }
        tx.commit().await?;
        drop(_g);
        if r.diagnostics && !out.is_empty() {
            let ids: Vec<&str> = out.iter().map(|m| m.id.as_str()).collect();
            self.audit(&r, &actor.name, "message-receive", &r.name, "ok", serde_json::json!({"ids": ids})).await?;
        }
        Ok(out)
    }

    /// Acknowledges (deletes) a received message; `receipt` is the one from the latest
    /// receive.
    ///
    /// # Errors
    /// `NotFound` for an unknown or expired message, `PreconditionFailed` for a stale
    /// receipt.
    pub async fn ack_message(&self, actor: &Principal, resource: &str, id: &str, receipt: &str) -> Result<()> {
        let r = self.authorized(actor, resource, DataRole::Writer).await?;
        Self::check_usable(&r)?;
        let _g = self.write_guard().await;
        let row = repo::get(&self.db, id, &r.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no message {id} (acknowledged, expired or never sent)")))?;
        let m = self.verify_msg(&r, row)?;
        if m.receipt.is_empty() || !constant_time_eq(m.receipt.as_bytes(), receipt.as_bytes()) {
            return Err(StoreError::PreconditionFailed(format!(
                "message {id}: the receipt is not the latest one (it was received again after its visibility timeout)"
            )));
        }
        repo::delete_with_receipt(&self.db, id, receipt).await?;
        drop(_g);
        if r.diagnostics {
            self.audit(&r, &actor.name, "message-ack", id, "ok", serde_json::json!({})).await?;
        }
        Ok(())
    }

    /// Deletes expired messages; returns how many.
    ///
    /// # Errors
    /// Database errors.
    pub async fn sweep_messages(&self) -> Result<u64> {
        let _g = self.write_guard().await;
        let n = repo::delete_expired(&self.db, self.now()).await?;
        drop(_g);
        if n > 0 {
            self.forget_for_real().await;
        }
        Ok(n)
    }
}
