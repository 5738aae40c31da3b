//! Records in memory: what a host restart loses, bounded by a count.

use std::collections::VecDeque;

use crate::{Keep, Record};

pub(crate) struct Memory {
    /// With the destination, oldest first.
    taken: VecDeque<Record>,
    /// Not yet taken, oldest first.
    waiting: VecDeque<Record>,
    capacity: usize,
    next_id: u64,
}

impl Memory {
    pub(crate) fn new(capacity: usize) -> Memory {
        Memory {
            taken: VecDeque::new(),
            waiting: VecDeque::new(),
            capacity: capacity.max(1),
            next_id: 0,
        }
    }
}

/// A name no other run of any process shares: records' ids start at 0 on every start.
pub(crate) fn origin() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("memory-{:x}-{nanos:x}", std::process::id())
}

impl Keep for Memory {
    fn push(&mut self, time: u64, body: &[u8]) -> (u64, bool) {
        let mut dropped = 0;
        // The oldest waiting record goes; those with the destination stay, so that their
        // acknowledgements still match.
        while self.taken.len() + self.waiting.len() >= self.capacity
            && self.waiting.pop_front().is_some()
        {
            dropped += 1;
        }
        self.waiting.push_back(Record {
            id: self.next_id,
            time,
            body: body.to_vec(),
        });
        self.next_id += 1;
        (dropped, false)
    }

    fn take(&mut self, max: usize) -> Vec<Record> {
        let n = max.min(self.waiting.len());
        let out: Vec<Record> = self.waiting.drain(..n).collect();
        self.taken.extend(out.iter().cloned());
        out
    }

    fn ack(&mut self, n: usize) -> bool {
        let n = n.min(self.taken.len());
        self.taken.drain(..n);
        false
    }

    fn rewind(&mut self) {
        while let Some(record) = self.taken.pop_back() {
            self.waiting.push_front(record);
        }
    }

    fn held(&self) -> u64 {
        (self.taken.len() + self.waiting.len()) as u64
    }

    fn taken(&self) -> usize {
        self.taken.len()
    }

    fn ready(&self) -> bool {
        !self.waiting.is_empty()
    }

    fn oldest_time(&mut self) -> Option<u64> {
        self.taken.front().or(self.waiting.front()).map(|r| r.time)
    }

    fn sync(&mut self) {}

    fn set_limit(&mut self, limit: u64) {
        self.capacity = (limit as usize).max(1);
    }
}
