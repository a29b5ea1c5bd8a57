//! An in-memory backend: for tests, simulation and the in-memory benchmark.

use super::kv::{Kv, KvPair, Op};
use super::StoreError;
use std::collections::BTreeMap;
use std::sync::RwLock;

#[derive(Default)]
/// A [`Kv`](super::Kv) in memory: nothing survives the process.
pub struct MemKv {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Kv for MemKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.read().expect("lock").get(key).cloned())
    }

    fn scan(&self, prefix: &[u8], limit: usize) -> Result<Vec<KvPair>, StoreError> {
        let map = self.map.read().expect("lock");
        Ok(map
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_from(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<KvPair>, StoreError> {
        let map = self.map.read().expect("lock");
        let start = if from > prefix { from } else { prefix };
        Ok(map
            .range(start.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut map = self.map.write().expect("lock");
        for (k, v) in ops {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        Ok(())
    }

    fn last(&self, prefix: &[u8]) -> Result<Option<KvPair>, StoreError> {
        let map = self.map.read().expect("lock");
        Ok(map
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .last()
            .map(|(k, v)| (k.clone(), v.clone())))
    }
}
