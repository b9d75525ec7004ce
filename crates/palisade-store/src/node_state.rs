//! Node state kept beside the records: bans, the peer book, and whose node this store is.

use palisade_types::AuthorKey;

use crate::{
    decode_exact, encode, BanRecord, PeerBookEntry, Result, Store, StoreError, TreeName,
    MAX_PEER_BOOK_ENTRIES,
};

/// Meta key of the author key of the node that runs on this store.
pub(crate) const META_OWN_AUTHOR: &[u8] = b"own_author";

impl Store {
    // ---- bans ----

    /// Stores or replaces a ban.
    pub fn put_ban(&self, ban: &BanRecord) -> Result<()> {
        let mut batch = sled::Batch::default();
        let value = encode(ban);
        let bytes = (ban.target.len() + value.len()) as u64;
        batch.insert(ban.target.as_bytes(), value);
        let _writers = crate::lock(&self.inner.write_lock);
        self.apply(TreeName::Bans, batch, bytes)
    }

    /// Removes a ban; returns whether one existed.
    pub fn remove_ban(&self, target: &str) -> Result<bool> {
        let _writers = crate::lock(&self.inner.write_lock);
        let existed = self.trees().bans.contains_key(target.as_bytes()).map_err(|e| self.io(e))?;
        let mut batch = sled::Batch::default();
        batch.remove(target.as_bytes());
        self.apply(TreeName::Bans, batch, target.len() as u64)?;
        Ok(existed)
    }

    /// All stored bans (expired ones included; the guard prunes them).
    pub fn bans(&self) -> Result<Vec<BanRecord>> {
        let mut out = Vec::new();
        for item in self.trees().bans.iter() {
            let (k, v) = item.map_err(|e| self.io(e))?;
            out.push(decode_exact(&v, "ban").map_err(|e| StoreError::corrupt("bans", &k, e.to_string()))?);
        }
        Ok(out)
    }

    // ---- peer book ----

    /// Records a peer, evicting the least recently seen entry when the book is full.
    pub fn upsert_peer(&self, entry: &PeerBookEntry) -> Result<()> {
        let _writers = crate::lock(&self.inner.write_lock);
        let trees = self.trees();
        let peers = &trees.peers;
        let mut batch = sled::Batch::default();
        if !peers.contains_key(entry.peer_id.as_bytes()).map_err(|e| self.io(e))?
            && peers.len() >= MAX_PEER_BOOK_ENTRIES
        {
            let oldest = self.peer_book()?.into_iter().min_by_key(|p| p.last_seen_ms);
            if let Some(oldest) = oldest {
                batch.remove(oldest.peer_id.as_bytes());
            }
        }
        let value = encode(entry);
        let bytes = (entry.peer_id.len() + value.len()) as u64;
        batch.insert(entry.peer_id.as_bytes(), value);
        self.apply(TreeName::Peers, batch, bytes)
    }

    /// Every entry of the peer book.
    pub fn peer_book(&self) -> Result<Vec<PeerBookEntry>> {
        let mut out = Vec::new();
        for item in self.trees().peers.iter() {
            let (k, v) = item.map_err(|e| self.io(e))?;
            out.push(
                decode_exact(&v, "peer book entry")
                    .map_err(|e| StoreError::corrupt("peers", &k, e.to_string()))?,
            );
        }
        Ok(out)
    }

    // ---- own author ----

    /// The author key of the node that runs on this store, recorded at its first start with
    /// [`set_own_author`](Self::set_own_author): its feed is in here, so a node started on
    /// this store with another key (or none) would orphan it.
    pub fn own_author(&self) -> Result<Option<AuthorKey>> {
        let Some(v) = self.trees().meta.get(META_OWN_AUTHOR).map_err(|e| self.io(e))? else {
            return Ok(None);
        };
        let bytes: [u8; 32] = v.as_ref().try_into().map_err(|_| {
            StoreError::corrupt("meta", META_OWN_AUTHOR, format!("{} bytes, not 32", v.len()))
        })?;
        Ok(Some(AuthorKey(bytes)))
    }

    /// Records (durably) which author's node runs on this store.
    pub fn set_own_author(&self, author: &AuthorKey) -> Result<()> {
        {
            let mut batch = sled::Batch::default();
            batch.insert(META_OWN_AUTHOR, &author.0[..]);
            let _writers = crate::lock(&self.inner.write_lock);
            self.apply(TreeName::Meta, batch, 64)?;
        }
        *crate::lock(&self.inner.own) = Some(*author);
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use crate::{Store, StoreConfig};

    #[test]
    fn the_own_author_is_remembered_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let author = palisade_types::AuthorKey([7; 32]);
        {
            let store = Store::open(&StoreConfig::new(&path)).unwrap();
            assert_eq!(store.own_author().unwrap(), None);
            store.set_own_author(&author).unwrap();
        }
        let store = Store::open(&StoreConfig::new(&path)).unwrap();
        assert_eq!(store.own_author().unwrap(), Some(author));
    }
}
