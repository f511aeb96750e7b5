//! The forwarder's answer cache, keyed on (name, type, class): positive answers live for their
//! smallest TTL, negative ones for the SOA minimum (RFC 2308), both capped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

type Key = (Name, RecordType, DNSClass);

#[derive(Debug)]
struct Entry {
    message: Arc<Message>,
    stored: Instant,
    ttl: Duration,
}

/// A bounded, TTL-honouring cache of upstream responses.
#[derive(Debug)]
pub(crate) struct Cache {
    entries: Mutex<HashMap<Key, Entry>>,
    capacity: usize,
    max_ttl: u32,
}

impl Cache {
    /// A cache of at most `capacity` answers, none kept longer than `max_ttl` seconds.
    pub(crate) fn new(capacity: usize, max_ttl: u32) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
            max_ttl,
        }
    }

    /// The cached response for `query` and its age in whole seconds, if still fresh at `now`.
    pub(crate) fn get(&self, query: &Query, now: Instant) -> Option<(Arc<Message>, u32)> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(&key(query))?;
        let age = now.saturating_duration_since(entry.stored);
        if age >= entry.ttl {
            return None;
        }
        let secs = u32::try_from(age.as_secs()).unwrap_or(u32::MAX);
        Some((Arc::clone(&entry.message), secs))
    }

    /// Stores `message` as the answer to `query` if it is cacheable.
    pub(crate) fn insert(&self, query: &Query, message: &Message, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        let Some(ttl) = cache_ttl(message).map(|t| t.min(self.max_ttl)) else {
            return;
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity {
            entries.retain(|_, e| now.saturating_duration_since(e.stored) < e.ttl);
        }
        if entries.len() >= self.capacity {
            // Still full of live entries: drop an arbitrary one (CoreDNS evicts at random too).
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        let entry = Entry {
            message: Arc::new(message.clone()),
            stored: now,
            ttl: Duration::from_secs(u64::from(ttl)),
        };
        entries.insert(key(query), entry);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

fn key(query: &Query) -> Key {
    (
        query.name().clone(),
        query.query_type(),
        query.query_class(),
    )
}

/// How long `message` may be cached: the smallest answer TTL for a positive answer, the SOA's
/// `min(ttl, minimum)` for NXDOMAIN/NODATA; `None` for truncated, failed or zero-TTL responses.
pub(crate) fn cache_ttl(message: &Message) -> Option<u32> {
    if message.metadata.truncation {
        return None;
    }
    let rcode = message.metadata.response_code;
    let ttl = if rcode == ResponseCode::NoError && !message.answers.is_empty() {
        message.answers.iter().map(|r| r.ttl).min()
    } else if rcode == ResponseCode::NoError || rcode == ResponseCode::NXDomain {
        message.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        })
    } else {
        None
    }?;
    (ttl > 0).then_some(ttl)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, SOA};

    use super::*;

    fn query(name: &str) -> Query {
        Query::query(Name::from_str(name).unwrap(), RecordType::A)
    }

    fn response(rcode: ResponseCode, answers: &[u32], soa: Option<(u32, u32)>) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        let name = Name::from_str("example.com.").unwrap();
        for ttl in answers {
            m.answers.push(Record::from_rdata(
                name.clone(),
                *ttl,
                RData::A(A::new(1, 2, 3, 4)),
            ));
        }
        if let Some((ttl, minimum)) = soa {
            let data = SOA::new(name.clone(), name.clone(), 1, 1, 1, 1, minimum);
            m.authorities
                .push(Record::from_rdata(name.clone(), ttl, RData::SOA(data)));
        }
        m
    }

    #[test]
    fn ttl_is_min_answer_ttl_or_soa_minimum() {
        assert_eq!(
            cache_ttl(&response(ResponseCode::NoError, &[300, 60], None)),
            Some(60)
        );
        let nx = response(ResponseCode::NXDomain, &[], Some((900, 30)));
        assert_eq!(cache_ttl(&nx), Some(30));
        let nodata = response(ResponseCode::NoError, &[], Some((20, 30)));
        assert_eq!(cache_ttl(&nodata), Some(20));
        assert_eq!(
            cache_ttl(&response(ResponseCode::NXDomain, &[], None)),
            None
        );
        assert_eq!(
            cache_ttl(&response(ResponseCode::ServFail, &[], None)),
            None
        );
        assert_eq!(
            cache_ttl(&response(ResponseCode::NoError, &[0], None)),
            None
        );
        let mut truncated = response(ResponseCode::NoError, &[60], None);
        truncated.metadata.truncation = true;
        assert_eq!(cache_ttl(&truncated), None);
    }

    #[test]
    fn entries_expire_and_are_capped() {
        let cache = Cache::new(2, 10);
        let now = Instant::now();
        cache.insert(
            &query("a.example.com."),
            &response(ResponseCode::NoError, &[300], None),
            now,
        );
        let (_, age) = cache
            .get(&query("A.example.COM."), now + Duration::from_secs(9))
            .unwrap();
        assert_eq!(age, 9);
        assert!(
            cache
                .get(&query("a.example.com."), now + Duration::from_secs(10))
                .is_none()
        );
        cache.insert(
            &query("b.example.com."),
            &response(ResponseCode::NoError, &[5], None),
            now,
        );
        cache.insert(
            &query("c.example.com."),
            &response(ResponseCode::NoError, &[5], None),
            now,
        );
        assert!(cache.len() <= 2);
    }
}
