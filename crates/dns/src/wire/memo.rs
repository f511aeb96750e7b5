//! A UDP worker's memory of the responses it sent from the zone (a packet cache, as PowerDNS
//! keeps one): while the zone stays the same, a response depends on nothing but the request's
//! bytes, and two clients asking the same question send the same bytes but for the ID. So a
//! repeated request is answered by copying the earlier response and patching in the new ID — no
//! parsing, lookup or encoding, which are most of an answer's user-space cost.

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use super::{HEADER_LEN, Handled, Transport, handle_memoizable};
use crate::zone::Zone;

/// The ID: the only request bytes a response may differ by.
const ID_LEN: usize = 2;
/// Longer requests (large EDNS options, several questions) are answered but not remembered.
const MAX_REQUEST: usize = 512;
/// What an entry costs beyond its key and response bytes (map slot, boxes, queue slot), roughly.
const ENTRY_OVERHEAD: usize = 96;

/// Remembered responses, for one zone, within a byte budget; the oldest go first.
#[derive(Debug)]
pub(crate) struct AnswerMemo {
    /// The zone the entries were answered from.
    zone: Arc<Zone>,
    /// Request bytes after the ID → the full response as first sent.
    entries: HashMap<Rc<[u8]>, Box<[u8]>>,
    /// Keys in insertion order, for eviction.
    order: VecDeque<Rc<[u8]>>,
    /// What the entries cost, counted as [`cost`].
    bytes: usize,
    budget: usize,
}

/// What [`AnswerMemo::handle`] did with a request.
#[derive(Debug)]
pub(crate) enum Memoized {
    /// The response is in the output buffer.
    Reply,
    /// The question is not ours: resolve it upstream.
    Forward(Box<super::Forward>),
    /// Send nothing.
    Drop,
}

// === impl AnswerMemo ===

impl AnswerMemo {
    /// An empty memo answering from `zone`, holding at most about `budget` bytes (0 remembers
    /// nothing).
    pub(crate) fn new(zone: Arc<Zone>, budget: usize) -> Self {
        Self {
            zone,
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    /// Answers from `zone` from now on, forgetting every response.
    pub(crate) fn set_zone(&mut self, zone: Arc<Zone>) {
        self.zone = zone;
        self.entries.clear();
        self.order.clear();
        self.bytes = 0;
    }

    /// Answers a UDP `request` exactly as [`super::handle`] would; a reply goes into `out`
    /// (replacing what was there).
    pub(crate) fn handle(&mut self, request: &[u8], out: &mut Vec<u8>) -> Memoized {
        let key = request
            .get(ID_LEN..)
            .filter(|_| request.len() >= HEADER_LEN && request.len() <= MAX_REQUEST);
        if let Some(key) = key
            && let Some(response) = self.entries.get(key)
        {
            out.clear();
            out.extend_from_slice(response);
            out[..ID_LEN].copy_from_slice(&request[..ID_LEN]);
            return Memoized::Reply;
        }
        let (handled, memoizable) = handle_memoizable(&self.zone, request, Transport::Udp);
        match handled {
            Handled::Reply(bytes) => {
                if let Some(key) = key.filter(|_| memoizable && bytes.len() >= ID_LEN) {
                    self.insert(key, &bytes);
                }
                *out = bytes;
                Memoized::Reply
            }
            Handled::Forward(forward) => Memoized::Forward(forward),
            Handled::Drop => Memoized::Drop,
        }
    }

    fn insert(&mut self, key: &[u8], response: &[u8]) {
        let needed = cost(key, response);
        if needed > self.budget {
            return;
        }
        while self.bytes + needed > self.budget {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(evicted) = self.entries.remove(&oldest) {
                self.bytes -= cost(&oldest, &evicted);
            }
        }
        let key: Rc<[u8]> = Rc::from(key);
        self.order.push_back(Rc::clone(&key));
        self.entries.insert(key, Box::from(response));
        self.bytes += needed;
    }
}

fn cost(key: &[u8], response: &[u8]) -> usize {
    key.len() + response.len() + ENTRY_OVERHEAD
}
