//! The wire-level answer path: bytes of a request in, bytes of a response out, for zone names;
//! out-of-zone questions come back as a [`Forward`] for the server's forwarder. Never panics.

mod memo;
#[cfg(test)]
pub(crate) mod tests;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Record, RecordType};

use crate::zone::{Lookup, Zone};

pub(crate) use memo::{AnswerMemo, Memoized};

/// Response size without EDNS (RFC 1035 §4.2.1).
const CLASSIC_UDP_LIMIT: usize = 512;
/// The most we send over UDP whatever a client advertises: larger datagrams fragment.
const MAX_UDP_LIMIT: usize = 4096;
/// The payload size we advertise in our OPT record (the DNS flag day 2020 value).
pub(crate) const OUR_UDP_PAYLOAD: u16 = 1232;
const HEADER_LEN: usize = 12;

/// How the request arrived, which bounds the response size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A datagram: 512 bytes, or the EDNS0 payload size the client advertises.
    Udp,
    /// A length-prefixed stream message: up to 65535 bytes.
    Tcp,
}

/// Answers one request from the zone alone: out-of-zone names get REFUSED. Returns `None` when no
/// response should be sent (shorter than a header, or itself a response).
pub fn answer(zone: &Zone, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
    match handle(zone, request, transport) {
        Handled::Reply(bytes) => Some(bytes),
        Handled::Forward(forward) => Some(forward.error(ResponseCode::Refused)),
        Handled::Drop => None,
    }
}

/// What to do with a request.
#[derive(Debug)]
pub(crate) enum Handled {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// The question is not ours: resolve it upstream, then [`Forward::respond`].
    Forward(Box<Forward>),
    /// Send nothing.
    Drop,
}

/// A question to resolve upstream, and what is needed to answer the client afterwards.
#[derive(Clone, Debug)]
pub(crate) struct Forward {
    request: Message,
    limit: usize,
    /// In-zone CNAMEs answered before the chase (ExternalName services).
    prefix: Vec<Record>,
    /// The question to send upstream.
    pub(crate) question: Query,
}

/// Parses and answers `request`; see [`Handled`].
pub(crate) fn handle(zone: &Zone, request: &[u8], transport: Transport) -> Handled {
    handle_memoizable(zone, request, transport).0
}

/// [`handle`], and whether a reply is worth remembering for the same request bytes: true when
/// the request parsed (the reply is built from its question), false for header-only errors.
fn handle_memoizable(zone: &Zone, request: &[u8], transport: Transport) -> (Handled, bool) {
    let Some(header) = request.get(..HEADER_LEN) else {
        return (Handled::Drop, false);
    };
    // Never answer a response: two servers could bounce errors at each other forever.
    if header[2] & 0x80 != 0 {
        return (Handled::Drop, false);
    }
    let op_code = (header[2] >> 3) & 0x0f;
    if op_code != u8::from(OpCode::Query) {
        return (
            Handled::Reply(header_only(header, ResponseCode::NotImp)),
            false,
        );
    }
    let Ok(message) = Message::from_vec(request) else {
        return (
            Handled::Reply(header_only(header, ResponseCode::FormErr)),
            false,
        );
    };
    if message.queries.len() != 1 {
        return (
            Handled::Reply(header_only(header, ResponseCode::FormErr)),
            false,
        );
    }
    (handle_message(zone, message, transport), true)
}

/// Answers a parsed request with exactly one question.
fn handle_message(zone: &Zone, message: Message, transport: Transport) -> Handled {
    let limit = match (transport, &message.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => CLASSIC_UDP_LIMIT,
        (Transport::Udp, Some(edns)) => {
            usize::from(edns.max_payload()).clamp(CLASSIC_UDP_LIMIT, MAX_UDP_LIMIT)
        }
    };
    if message.edns.as_ref().is_some_and(|e| e.version() > 0) {
        // RFC 6891 §6.1.3: unknown EDNS version → BADVERS, carried in our OPT's high bits.
        return Handled::Reply(error_response(&message, ResponseCode::BADVERS, limit));
    }
    let query = message.queries[0].clone();
    if matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR) {
        return Handled::Reply(error_response(&message, ResponseCode::Refused, limit));
    }
    match zone.lookup(query.name(), query.query_type(), query.query_class()) {
        Lookup::NotOurs => Handled::Forward(Box::new(Forward {
            request: message,
            limit,
            prefix: Vec::new(),
            question: query,
        })),
        Lookup::Answer(found) => {
            if let Some(target) = found.chase {
                let mut question = query.clone();
                question.set_name(target);
                return Handled::Forward(Box::new(Forward {
                    request: message,
                    limit,
                    prefix: found.answers,
                    question,
                }));
            }
            let mut response = response_to(&message);
            response.metadata.authoritative = found.rcode != ResponseCode::Refused;
            response.metadata.response_code = found.rcode;
            response.answers = found.answers;
            response.authorities = found.authority;
            response.additionals = found.additionals;
            Handled::Reply(encode(response, limit))
        }
    }
}

// === impl Forward ===

impl Forward {
    /// The client's response built from an upstream `answer` whose records are `age` seconds old
    /// (their TTLs are reduced by it). The upstream's TC bit is passed on so the client retries
    /// over TCP.
    pub(crate) fn respond(&self, upstream: &Message, age: u32) -> Vec<u8> {
        let mut response = response_to(&self.request);
        response.metadata.response_code = upstream.metadata.response_code;
        response.metadata.truncation = upstream.metadata.truncation;
        let aged = |records: &[Record]| -> Vec<Record> {
            records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.ttl = r.ttl.saturating_sub(age);
                    r
                })
                .collect()
        };
        response.answers = self.prefix.clone();
        response.answers.extend(aged(&upstream.answers));
        response.authorities = aged(&upstream.authorities);
        response.additionals = aged(&upstream.additionals);
        encode(response, self.limit)
    }

    /// An error response (SERVFAIL when upstreams fail, REFUSED when there are none).
    pub(crate) fn error(&self, rcode: ResponseCode) -> Vec<u8> {
        error_response(&self.request, rcode, self.limit)
    }
}

/// The query we send upstream for `question`, with EDNS0 so large answers fit.
pub(crate) fn upstream_query(id: u16, question: &Query) -> Option<Vec<u8>> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.queries.push(question.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(OUR_UDP_PAYLOAD);
    message.edns = Some(edns);
    message.to_vec().ok()
}

/// A response skeleton for `request`: same id and question, RD/CD copied, RA set (we forward),
/// our OPT if the client sent one.
fn response_to(request: &Message) -> Message {
    let mut response = Message::response(request.metadata.id, OpCode::Query);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.metadata.recursion_available = true;
    response.queries = request.queries.clone();
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(OUR_UDP_PAYLOAD);
        response.edns = Some(edns);
    }
    response
}

fn error_response(request: &Message, rcode: ResponseCode, limit: usize) -> Vec<u8> {
    let mut response = response_to(request);
    response.metadata.response_code = rcode;
    encode(response, limit)
}

/// Encodes `response`; if it does not fit in `limit`, drops every record and sets TC so the client
/// retries over TCP (RFC 2181 §9: a partial RRset must not be used, so send none).
fn encode(mut response: Message, limit: usize) -> Vec<u8> {
    let id = response.metadata.id;
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= limit => return bytes,
        Ok(_) => {}
        Err(error) => {
            tracing::debug!(%error, "response does not encode");
            return server_failure(id, &response);
        }
    }
    response.metadata.truncation = true;
    response.answers.clear();
    response.authorities.clear();
    response.additionals.clear();
    response
        .to_vec()
        .unwrap_or_else(|_| server_failure(id, &response))
}

fn server_failure(id: u16, response: &Message) -> Vec<u8> {
    let mut failure = Message::error_msg(id, OpCode::Query, ResponseCode::ServFail);
    failure.metadata.recursion_desired = response.metadata.recursion_desired;
    failure.to_vec().unwrap_or_default()
}

/// A bare response header for requests we cannot (or will not) parse: same id and opcode, RD
/// copied, no sections.
fn header_only(request_header: &[u8], rcode: ResponseCode) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    out[..2].copy_from_slice(&request_header[..2]);
    // QR=1, opcode and RD from the request; AA/TC cleared.
    out[2] = 0x80 | (request_header[2] & 0x79);
    out[3] = rcode.low() & 0x0f;
    out
}
