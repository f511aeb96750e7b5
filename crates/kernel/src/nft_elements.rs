//! nftables set and map elements written over netlink: hundreds of thousands in one transaction.
//!
//! The service proxy keeps its rules and set declarations in `nft -f` scripts ([`crate::nft`]),
//! but its maps hold hundreds of thousands of elements, and `nft -f` spends about half its time
//! parsing text in userspace: 600k elements take ~6 s through `nft`, of which the kernel needs
//! ~1.3 s. [`apply`] skips the parser: it encodes the elements straight into nf_tables netlink
//! messages (`NFT_MSG_NEWSETELEM` / `NFT_MSG_DELSETELEM`) and sends them as one batch
//! (`NFNL_MSG_BATCH_BEGIN` … `END`), which the kernel applies as one transaction: all or nothing.
//!
//! What it does not do: no tables, chains, rules or set declarations (those stay in `nft -f`
//! scripts), no set-element timeouts, intervals, counters or stateful objects, and no reading
//! back. It knows nothing of podnet's rulesets: keys and values arrive already encoded in
//! nftables' register layout (each field of a concatenation padded to 4 bytes; see the tests).
//!
//! The kernel handles the batch inside the `sendmsg` call that delivers it, so by the time the
//! send returns every answer is already queued on the socket: reading them never waits for the
//! kernel to work, and a bounded wait only guards against answers that never come.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_packet_core::{NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_REQUEST};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

#[cfg(test)]
mod tests;

/// An nftables address family, as in `nft add table FAMILY NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NftFamily {
    /// `ip` (`NFPROTO_IPV4`).
    Ip,
    /// `ip6` (`NFPROTO_IPV6`).
    Ip6,
    /// `inet` (`NFPROTO_INET`).
    Inet,
}

/// What a verdict map element tells the packet to do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `return`.
    Return,
    /// `jump CHAIN`: run the chain, then come back.
    Jump(String),
    /// `goto CHAIN`: run the chain and do not come back.
    Goto(String),
}

/// The value an element of a map maps its key to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ElementData {
    /// A data map's value, in register layout like keys (e.g. `ip daddr . tcp dport`: 8 bytes).
    Value(Vec<u8>),
    /// A verdict map's verdict.
    Verdict(Verdict),
}

/// One set or map element.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Element {
    /// The key in register layout: 1 to 64 bytes.
    pub key: Vec<u8>,
    /// The value, for maps; `None` for sets.
    pub data: Option<ElementData>,
    /// Shown by `nft list` as `comment "…"`: at most 128 bytes (nft's limit), no NUL.
    pub comment: Option<String>,
}

/// One change to one set or map.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SetOp {
    /// Removes every element (`nft flush set`).
    Flush {
        /// The set or map.
        set: String,
    },
    /// Adds elements (`nft add element`). Adding an element that exists with the same value is
    /// not an error; adding an existing key with another value is (`EEXIST`): delete it first,
    /// in the same call.
    Add {
        /// The set or map.
        set: String,
        /// The elements, added in order.
        elements: Vec<Element>,
    },
    /// Deletes the elements with these keys (`nft delete element`); a missing key is an error
    /// (`ENOENT`). An empty list deletes nothing.
    Delete {
        /// The set or map.
        set: String,
        /// The keys, in register layout.
        keys: Vec<Vec<u8>>,
    },
}

/// The changes to the sets of one table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableOps {
    /// The table's family.
    pub family: NftFamily,
    /// The table's name.
    pub table: String,
    /// The changes, applied in order.
    pub ops: Vec<SetOp>,
}

/// Which kind of [`SetOp`] something was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// [`SetOp::Flush`].
    Flush,
    /// [`SetOp::Add`].
    Add,
    /// [`SetOp::Delete`].
    Delete,
}

/// Where in the input of [`apply`] a failure lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRef {
    /// The table's family.
    pub family: NftFamily,
    /// The table.
    pub table: String,
    /// The set or map.
    pub set: String,
    /// What the op did.
    pub kind: OpKind,
    /// Index of the [`TableOps`] in the input.
    pub table_index: usize,
    /// Index of the op in its [`TableOps::ops`].
    pub op_index: usize,
    /// Which of the op's netlink messages (a large add or delete is split into messages of at
    /// most ~60 KiB; a flush is one message).
    pub message: usize,
    /// Index of the element (or key) in the op, when known: always for bad input, and for
    /// kernel errors when the kernel points at the element (it does for per-element errors).
    pub element: Option<usize>,
}

/// A failed [`apply`]. Whatever the error, the kernel state is as it was before the call
/// (except for [`NftElementsError::Unacknowledged`], where the outcome is unknown).
#[derive(Debug, thiserror::Error)]
pub enum NftElementsError {
    /// An op cannot be encoded; nothing was sent.
    #[error("{at}: {problem}")]
    Invalid {
        /// The op (and element) at fault.
        at: Box<OpRef>,
        /// What is wrong with it.
        problem: String,
    },
    /// Talking to the kernel failed before it could answer (no socket, batch not sent).
    #[error("nf_tables netlink: {action}: {error}")]
    Socket {
        /// What we were doing.
        action: &'static str,
        /// The system's answer.
        error: io::Error,
    },
    /// The kernel rejected the transaction; nothing was applied.
    #[error(
        "nf_tables rejected {}: {error}{}{}",
        at.as_ref().map_or_else(|| "the batch".to_owned(), |at| at.to_string()),
        message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default(),
        if *others > 0 { format!("; {others} more message(s) failed") } else { String::new() }
    )]
    Rejected {
        /// The first op the kernel refused; `None` when it refused the batch as a whole.
        at: Option<Box<OpRef>>,
        /// The kernel's errno.
        error: io::Error,
        /// The kernel's extended error message, if it gave one.
        message: Option<String>,
        /// How many other messages of the batch the kernel refused too.
        others: usize,
    },
    /// Some messages got no answer (the receive buffer overflowed, or the kernel went silent):
    /// whether the transaction was applied is unknown.
    #[error(
        "nf_tables acknowledged only {answered} of {messages} messages{}; the outcome is unknown",
        if *overflowed { " (receive buffer overflowed)" } else { "" }
    )]
    Unacknowledged {
        /// Messages answered.
        answered: usize,
        /// Messages sent.
        messages: usize,
        /// The socket reported lost answers (`ENOBUFS`).
        overflowed: bool,
    },
}

/// Applies every op of every table, in order, as one nf_tables transaction in the calling
/// thread's network namespace: all or nothing. Nothing to do (no tables, no ops, only empty
/// adds and deletes) returns `Ok` without opening a socket. Opens a socket for this one call:
/// a caller that applies again and again keeps an [`ElementWriter`] instead.
pub fn apply(tables: &[TableOps]) -> Result<(), NftElementsError> {
    ElementWriter::new().apply(tables)
}

/// Applies element batches over one netlink socket that it keeps between calls.
///
/// Why keep it: closing an nf_tables socket waits until the kernel has destroyed everything
/// earlier commits removed (`nft_rcv_nl_event` flushes that work, which waits for an RCU grace
/// period): ~5 ms after any transaction that deleted an element, more than the whole
/// transaction of one Service's change. A socket that stays open leaves that to the kernel's
/// worker.
///
/// The socket belongs to the network namespace it was opened in: the first [`apply`]'s
/// calling thread's. After any failure it is closed, and the next call opens a new one, so no
/// answer of a failed batch can reach a later one.
///
/// [`apply`]: ElementWriter::apply
#[derive(Default)]
pub struct ElementWriter {
    socket: Option<Socket>,
}

impl fmt::Debug for ElementWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElementWriter")
            .field("open", &self.socket.is_some())
            .finish()
    }
}

impl ElementWriter {
    /// A writer that opens its socket on its first batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies every op of every table, in order, as one nf_tables transaction: all or
    /// nothing. Nothing to do sends nothing.
    pub fn apply(&mut self, tables: &[TableOps]) -> Result<(), NftElementsError> {
        let batch = encode(tables, MAX_ELEMENTS_ATTR)?;
        if batch.messages.is_empty() {
            return Ok(());
        }
        let outcome = self
            .send(&batch)
            .and_then(|answers| answers.into_result(tables, &batch));
        if outcome.is_err() {
            self.socket = None;
        }
        outcome
    }

    fn send(&mut self, batch: &Batch) -> Result<Answers, NftElementsError> {
        let socket = match &mut self.socket {
            Some(socket) => socket,
            none => none.insert(open_socket()?),
        };
        size_buffers(socket, batch)?;
        // One datagram to the kernel (port 0), which runs the whole batch before this returns.
        let sent = socket
            .send_to(&batch.bytes, &SocketAddr::new(0, 0), 0)
            .map_err(|error| NftElementsError::Socket {
                action: "sending the batch",
                error,
            })?;
        if sent != batch.bytes.len() {
            return Err(NftElementsError::Socket {
                action: "sending the batch",
                error: io::Error::other(format!("sent {sent} of {} bytes", batch.bytes.len())),
            });
        }
        read_answers(socket, batch)
    }
}

// === constants from the kernel's uapi ===

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLA_HDRLEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLMSGERR_ATTR_OFFS: u16 = 2;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNETLINK_V0: u8 = 0;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_RETURN: i32 = -5;

/// libnftnl's user-data TLV type for an element comment (`NFTNL_UDATA_SET_ELEM_COMMENT`).
const UDATA_SET_ELEM_COMMENT: u8 = 0;

/// `NFT_DATA_VALUE_MAXLEN`: the kernel's largest key or value (16 32-bit registers).
const MAX_DATA_LEN: usize = 64;
/// `NFT_NAME_MAXLEN` includes the terminating NUL.
const MAX_NAME_LEN: usize = 255;
/// nft refuses longer comments (`NFTNL_UDATA_COMMENT_MAXLEN`).
const MAX_COMMENT_LEN: usize = 128;

// === tuning ===

/// Largest `NFTA_SET_ELEM_LIST_ELEMENTS` attribute we build, in bytes. Its length field is a
/// u16, so it must stay under 64 KiB; with validated elements (under 1 KiB each) this leaves
/// room for the last one.
const MAX_ELEMENTS_ATTR: usize = 60 * 1024;

/// Sequence number of the batch-begin message; command `i` gets `BEGIN_SEQ + 1 + i`. A socket
/// carries one batch at a time and is read until every command is answered (else it is
/// closed), so no answer to an earlier batch can arrive during a later one.
const BEGIN_SEQ: u32 = 1;

/// How long to wait for answers still missing once the socket is drained. The kernel answers
/// before the send returns, so this is only reached when something is wrong.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// Receive buffer reserved per command message: one ack (or error) each, and the kernel
/// accounts every ack as a whole socket buffer (~1 KiB), not its 36 bytes.
const RCVBUF_PER_MESSAGE: usize = 2048;

// === impl NftFamily, OpRef ===

impl NftFamily {
    /// The name nft uses (`ip`, `ip6`, `inet`).
    pub fn as_str(self) -> &'static str {
        match self {
            NftFamily::Ip => "ip",
            NftFamily::Ip6 => "ip6",
            NftFamily::Inet => "inet",
        }
    }

    /// `NFPROTO_*`.
    fn nfproto(self) -> u8 {
        match self {
            NftFamily::Ip => 2,
            NftFamily::Ip6 => 10,
            NftFamily::Inet => 1,
        }
    }
}

impl fmt::Display for NftFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl OpRef {
    fn new(tables: &[TableOps], origin: &Origin) -> Option<OpRef> {
        let t = tables.get(origin.table)?;
        let op = t.ops.get(origin.op)?;
        let (kind, set) = op_kind(op);
        Some(OpRef {
            family: t.family,
            table: t.table.clone(),
            set: set.to_owned(),
            kind,
            table_index: origin.table,
            op_index: origin.op,
            message: origin.part,
            element: None,
        })
    }
}

impl fmt::Display for OpRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            OpKind::Flush => "flush set",
            OpKind::Add => "add element",
            OpKind::Delete => "delete element",
        };
        write!(
            f,
            "{what} {} {} {} (tables[{}].ops[{}], message {}",
            self.family, self.table, self.set, self.table_index, self.op_index, self.message
        )?;
        if let Some(e) = self.element {
            write!(f, ", element {e}")?;
        }
        f.write_str(")")
    }
}

impl NftElementsError {
    /// The kernel's errno, when the kernel (or the socket) answered with one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NftElementsError::Socket { error, .. } | NftElementsError::Rejected { error, .. } => {
                error.raw_os_error()
            }
            _ => None,
        }
    }

    /// The op at fault, when the failure belongs to one.
    pub fn op(&self) -> Option<&OpRef> {
        match self {
            NftElementsError::Invalid { at, .. } => Some(at),
            NftElementsError::Rejected { at, .. } => at.as_deref(),
            _ => None,
        }
    }
}

// === encoding ===

/// Where a command message came from: `tables[table].ops[op]`, its `part`-th message, holding
/// elements from `first_element` on; it starts at `start` in the batch bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    table: usize,
    op: usize,
    part: usize,
    first_element: usize,
    start: usize,
}

/// One encoded batch: the bytes to send (begin, commands, end) and each command's origin.
#[derive(Debug)]
struct Batch {
    bytes: Vec<u8>,
    /// Command `i` has sequence number `BEGIN_SEQ + 1 + i`.
    messages: Vec<Origin>,
}

impl Batch {
    /// The command message with sequence number `seq`, if it is one.
    fn command(&self, seq: u32) -> Option<usize> {
        let i = seq.wrapping_sub(command_seq(0)) as usize;
        (i < self.messages.len()).then_some(i)
    }

    /// The bytes of command `i`.
    fn message_bytes(&self, i: usize) -> &[u8] {
        let start = self.messages[i].start;
        let len = read_u32(&self.bytes, start).unwrap_or(0) as usize;
        self.bytes.get(start..start + len).unwrap_or_default()
    }
}

/// Encodes `tables` as one batch whose element lists stay within `limit` bytes per message.
/// Returns a batch without messages when there is nothing to do.
fn encode(tables: &[TableOps], limit: usize) -> Result<Batch, NftElementsError> {
    validate(tables)?;
    let mut enc = Encoder {
        buf: Vec::with_capacity(estimate_len(tables)),
        messages: Vec::new(),
    };
    enc.batch_marker(NFNL_MSG_BATCH_BEGIN, BEGIN_SEQ);
    for (ti, t) in tables.iter().enumerate() {
        for (oi, op) in t.ops.iter().enumerate() {
            let (kind, set) = op_kind(op);
            let cmd = Command {
                kind,
                family: t.family,
                table: &t.table,
                set,
                table_index: ti,
                op_index: oi,
            };
            let done = match op {
                SetOp::Flush { .. } => {
                    let start = enc.start_command(&cmd, 0, 0);
                    enc.finish_message(start);
                    Ok(())
                }
                SetOp::Add { elements, .. } => enc.element_list(&cmd, elements, limit, put_element),
                SetOp::Delete { keys, .. } => {
                    enc.element_list(&cmd, keys, limit, |buf, key| put_key(buf, key))
                }
            };
            done.map_err(|message| NftElementsError::Invalid {
                at: Box::new(cmd.op_ref(message)),
                problem: "an element list outgrew a netlink attribute (64 KiB)".to_owned(),
            })?;
        }
    }
    if enc.messages.is_empty() {
        return Ok(Batch {
            bytes: Vec::new(),
            messages: Vec::new(),
        });
    }
    let end_seq = command_seq(enc.messages.len());
    enc.batch_marker(NFNL_MSG_BATCH_END, end_seq);
    Ok(Batch {
        bytes: enc.buf,
        messages: enc.messages,
    })
}

/// Sequence number of command message `i` (the batch end takes the one after the last).
fn command_seq(i: usize) -> u32 {
    BEGIN_SEQ.wrapping_add(1).wrapping_add(i as u32)
}

/// Rejects what the kernel would reject anyway, and what could not be encoded unambiguously
/// (NULs in names) or would not fit a netlink attribute.
fn validate(tables: &[TableOps]) -> Result<(), NftElementsError> {
    for (ti, t) in tables.iter().enumerate() {
        for (oi, op) in t.ops.iter().enumerate() {
            let (kind, set) = op_kind(op);
            let fail = |element: Option<usize>, problem: String| NftElementsError::Invalid {
                at: Box::new(OpRef {
                    family: t.family,
                    table: t.table.clone(),
                    set: set.to_owned(),
                    kind,
                    table_index: ti,
                    op_index: oi,
                    message: 0,
                    element,
                }),
                problem,
            };
            check_name("table", &t.table).map_err(|p| fail(None, p))?;
            check_name("set", set).map_err(|p| fail(None, p))?;
            match op {
                SetOp::Flush { .. } => {}
                SetOp::Add { elements, .. } => {
                    for (ei, e) in elements.iter().enumerate() {
                        check_element(e).map_err(|p| fail(Some(ei), p))?;
                    }
                }
                SetOp::Delete { keys, .. } => {
                    for (ei, k) in keys.iter().enumerate() {
                        check_data("key", k).map_err(|p| fail(Some(ei), p))?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn op_kind(op: &SetOp) -> (OpKind, &str) {
    match op {
        SetOp::Flush { set } => (OpKind::Flush, set),
        SetOp::Add { set, .. } => (OpKind::Add, set),
        SetOp::Delete { set, .. } => (OpKind::Delete, set),
    }
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains('\0') {
        return Err(format!(
            "{what} name {name:?} must be 1 to {MAX_NAME_LEN} bytes without NUL"
        ));
    }
    Ok(())
}

fn check_data(what: &str, bytes: &[u8]) -> Result<(), String> {
    if bytes.is_empty() || bytes.len() > MAX_DATA_LEN {
        return Err(format!(
            "{what} is {} bytes; nf_tables takes 1 to {MAX_DATA_LEN}",
            bytes.len()
        ));
    }
    Ok(())
}

fn check_element(e: &Element) -> Result<(), String> {
    check_data("key", &e.key)?;
    match &e.data {
        None | Some(ElementData::Verdict(Verdict::Accept | Verdict::Drop | Verdict::Return)) => {}
        Some(ElementData::Value(v)) => check_data("value", v)?,
        Some(ElementData::Verdict(Verdict::Jump(c) | Verdict::Goto(c))) => check_name("chain", c)?,
    }
    if let Some(c) = &e.comment
        && (c.len() > MAX_COMMENT_LEN || c.contains('\0'))
    {
        return Err(format!(
            "comment {c:?} must be at most {MAX_COMMENT_LEN} bytes without NUL"
        ));
    }
    Ok(())
}

/// A guess at the batch size, so the buffer is allocated once for typical elements.
fn estimate_len(tables: &[TableOps]) -> usize {
    let mut n = 2 * (NLMSG_HDRLEN + NFGENMSG_LEN);
    for t in tables {
        for op in &t.ops {
            n += 64 + 2 * t.table.len();
            n += match op {
                SetOp::Flush { .. } => 0,
                SetOp::Add { elements, .. } => {
                    let per = elements.first().map_or(0, |e| {
                        20 + e.key.len()
                            + match &e.data {
                                None => 0,
                                Some(ElementData::Value(v)) => 12 + v.len(),
                                Some(ElementData::Verdict(_)) => 32,
                            }
                    });
                    elements.len() * (per + 8) + elements.len() / 512 * 600
                }
                SetOp::Delete { keys, .. } => keys.len() * 24,
            };
        }
    }
    n
}

/// One op's target, and where the op is in the input.
struct Command<'a> {
    kind: OpKind,
    family: NftFamily,
    table: &'a str,
    set: &'a str,
    table_index: usize,
    op_index: usize,
}

impl Command<'_> {
    fn op_ref(&self, message: usize) -> OpRef {
        OpRef {
            family: self.family,
            table: self.table.to_owned(),
            set: self.set.to_owned(),
            kind: self.kind,
            table_index: self.table_index,
            op_index: self.op_index,
            message,
            element: None,
        }
    }
}

struct Encoder {
    buf: Vec<u8>,
    messages: Vec<Origin>,
}

impl Encoder {
    fn batch_marker(&mut self, ty: u16, seq: u32) {
        let start = put_nlmsghdr(&mut self.buf, ty, NLM_F_REQUEST, seq);
        // The family is unspecified; res_id names the subsystem the batch is for.
        self.buf.extend_from_slice(&[0, NFNETLINK_V0]);
        self.buf
            .extend_from_slice(&NFNL_SUBSYS_NFTABLES.to_be_bytes());
        self.finish_message(start);
    }

    /// Starts command message `part` of `cmd` (whose first element is `first_element`):
    /// headers, table and set names. Returns where it starts.
    fn start_command(&mut self, cmd: &Command<'_>, part: usize, first_element: usize) -> usize {
        let seq = command_seq(self.messages.len());
        // Adds create (without NLM_F_EXCL: an identical element is not an error, as with
        // `nft add element`); flushes and deletes are both DELSETELEM, a flush without a list.
        let (msg, create) = match cmd.kind {
            OpKind::Add => (NFT_MSG_NEWSETELEM, NLM_F_CREATE),
            OpKind::Flush | OpKind::Delete => (NFT_MSG_DELSETELEM, 0),
        };
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | msg;
        // An ack for every command, as nft asks: for 200k elements that is ~160 acks, read in
        // ~0.2 ms, and it proves every message was processed (an ack on the last one alone
        // would not tell a lost answer from a success).
        let flags = NLM_F_REQUEST | NLM_F_ACK | create;
        let start = put_nlmsghdr(&mut self.buf, ty, flags, seq);
        // nfgenmsg: family, version, res_id 0.
        self.buf
            .extend_from_slice(&[cmd.family.nfproto(), NFNETLINK_V0, 0, 0]);
        put_str(&mut self.buf, NFTA_SET_ELEM_LIST_TABLE, cmd.table);
        put_str(&mut self.buf, NFTA_SET_ELEM_LIST_SET, cmd.set);
        self.messages.push(Origin {
            table: cmd.table_index,
            op: cmd.op_index,
            part,
            first_element,
            start,
        });
        start
    }

    fn finish_message(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        set_u32(&mut self.buf, start, len);
    }

    /// Encodes `items` with `put` into as many commands as it takes to keep each element list
    /// within `limit` bytes. Nothing for no items: an element-less DELSETELEM would flush the
    /// set. Fails (with the message index) if a list outgrows its u16 length.
    fn element_list<T>(
        &mut self,
        cmd: &Command<'_>,
        items: &[T],
        limit: usize,
        put: impl Fn(&mut Vec<u8>, &T),
    ) -> Result<(), usize> {
        if items.is_empty() {
            return Ok(());
        }
        let mut part = 0;
        let mut first = 0;
        let mut start = self.start_command(cmd, part, first);
        let mut list = nest_start(&mut self.buf, NFTA_SET_ELEM_LIST_ELEMENTS);
        for (i, item) in items.iter().enumerate() {
            let mark = self.buf.len();
            put(&mut self.buf, item);
            if self.buf.len() - list > limit && i > first {
                // Move this element to a new message.
                self.buf.truncate(mark);
                nest_end_checked(&mut self.buf, list).map_err(|()| part)?;
                self.finish_message(start);
                part += 1;
                first = i;
                start = self.start_command(cmd, part, first);
                list = nest_start(&mut self.buf, NFTA_SET_ELEM_LIST_ELEMENTS);
                put(&mut self.buf, item);
            }
        }
        nest_end_checked(&mut self.buf, list).map_err(|()| part)?;
        self.finish_message(start);
        Ok(())
    }
}

fn put_key(buf: &mut Vec<u8>, key: &[u8]) {
    let elem = nest_start(buf, NFTA_LIST_ELEM);
    put_data_value(buf, NFTA_SET_ELEM_KEY, key);
    nest_end(buf, elem);
}

fn put_element(buf: &mut Vec<u8>, e: &Element) {
    let elem = nest_start(buf, NFTA_LIST_ELEM);
    put_data_value(buf, NFTA_SET_ELEM_KEY, &e.key);
    match &e.data {
        None => {}
        Some(ElementData::Value(v)) => put_data_value(buf, NFTA_SET_ELEM_DATA, v),
        Some(ElementData::Verdict(v)) => {
            let data = nest_start(buf, NFTA_SET_ELEM_DATA);
            let verdict = nest_start(buf, NFTA_DATA_VERDICT);
            let (code, chain) = match v {
                Verdict::Accept => (NF_ACCEPT, None),
                Verdict::Drop => (NF_DROP, None),
                Verdict::Return => (NFT_RETURN, None),
                Verdict::Jump(c) => (NFT_JUMP, Some(c)),
                Verdict::Goto(c) => (NFT_GOTO, Some(c)),
            };
            put_attr(buf, NFTA_VERDICT_CODE, &code.to_be_bytes());
            if let Some(chain) = chain {
                put_str(buf, NFTA_VERDICT_CHAIN, chain);
            }
            nest_end(buf, verdict);
            nest_end(buf, data);
        }
    }
    if let Some(comment) = &e.comment {
        // libnftnl's user data: one TLV (type, u8 length, value), the value NUL-terminated.
        // Validation keeps the comment under 255 bytes.
        put_attr_header(buf, NFTA_SET_ELEM_USERDATA, 2 + comment.len() + 1);
        buf.extend_from_slice(&[UDATA_SET_ELEM_COMMENT, (comment.len() + 1) as u8]);
        buf.extend_from_slice(comment.as_bytes());
        buf.push(0);
        pad(buf);
    }
    nest_end(buf, elem);
}

/// `ty` nested { NFTA_DATA_VALUE: bytes }: how keys and data values travel.
fn put_data_value(buf: &mut Vec<u8>, ty: u16, bytes: &[u8]) {
    let nest = nest_start(buf, ty);
    put_attr(buf, NFTA_DATA_VALUE, bytes);
    nest_end(buf, nest);
}

/// Appends a netlink header with a zero length (set it when the message is complete).
fn put_nlmsghdr(buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills in ours
    start
}

fn put_attr_header(buf: &mut Vec<u8>, ty: u16, payload_len: usize) {
    // Callers bound every payload far below 64 KiB.
    buf.extend_from_slice(&((NLA_HDRLEN + payload_len) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
}

fn put_attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    put_attr_header(buf, ty, payload.len());
    buf.extend_from_slice(payload);
    pad(buf);
}

/// A NUL-terminated string attribute.
fn put_str(buf: &mut Vec<u8>, ty: u16, s: &str) {
    put_attr_header(buf, ty, s.len() + 1);
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
    pad(buf);
}

/// Pads to the 4-byte alignment of netlink attributes and messages.
fn pad(buf: &mut Vec<u8>) {
    let n = buf.len().next_multiple_of(4) - buf.len();
    buf.extend_from_slice(&[0; 3][..n]);
}

fn nest_start(buf: &mut Vec<u8>, ty: u16) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    start
}

/// Closes a nest whose size validation bounds (one element and its parts: under 1 KiB).
fn nest_end(buf: &mut [u8], start: usize) {
    let len = (buf.len() - start) as u16;
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
}

fn nest_end_checked(buf: &mut [u8], start: usize) -> Result<(), ()> {
    let len = u16::try_from(buf.len() - start).map_err(drop)?;
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    Ok(())
}

fn set_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// The index, among the elements of the command message `msg`, of the element whose bytes
/// contain `offset` (counted from the start of the message, as the kernel's extended ack does).
fn element_at(msg: &[u8], offset: usize) -> Option<usize> {
    let attrs = attributes(msg, NLMSG_HDRLEN + NFGENMSG_LEN, msg.len());
    let (list_start, list_end) = attrs
        .into_iter()
        .find(|&(ty, _, _)| ty == NFTA_SET_ELEM_LIST_ELEMENTS)
        .map(|(_, s, e)| (s, e))?;
    attributes(msg, list_start + NLA_HDRLEN, list_end)
        .into_iter()
        .position(|(_, s, e)| s <= offset && offset < e)
}

/// The attributes laid out in `buf[from..to]`: (type without flags, start, end).
fn attributes(buf: &[u8], mut from: usize, to: usize) -> Vec<(u16, usize, usize)> {
    let mut out = Vec::new();
    while from + NLA_HDRLEN <= to {
        let (Some(len), Some(ty)) = (read_u16(buf, from), read_u16(buf, from + 2)) else {
            break;
        };
        let len = usize::from(len);
        if len < NLA_HDRLEN || from + len > to {
            break;
        }
        out.push((ty & NLA_TYPE_MASK, from, from + len));
        from += len.next_multiple_of(4);
    }
    out
}

// === the socket ===

fn open_socket() -> Result<Socket, NftElementsError> {
    let fail = |action| move |error| NftElementsError::Socket { action, error };
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(fail("opening the socket"))?;
    socket.bind_auto().map_err(fail("binding the socket"))?;
    // Errors without a copy of the (up to 60 KiB) failed message, but with the kernel's
    // message and the offset of the element at fault. Older kernels lack these: not fatal.
    let _ = socket.set_cap_ack(true);
    let _ = socket.set_ext_ack(true);
    let timeout = libc::timeval {
        tv_sec: ANSWER_WAIT.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    set_option(&socket, libc::SO_RCVTIMEO, &timeout).map_err(fail("setting a receive timeout"))?;
    Ok(socket)
}

/// Sizes the socket's buffers for `batch`.
fn size_buffers(socket: &Socket, batch: &Batch) -> Result<(), NftElementsError> {
    let fail = |action| move |error| NftElementsError::Socket { action, error };
    // The whole batch goes in one sendmsg (the kernel needs begin … end in one buffer), and
    // netlink refuses a message larger than the send buffer: raise it as nft does, by force
    // (CAP_NET_ADMIN, which nf_tables needs anyway), else up to net.core.wmem_max.
    set_buffer(
        socket,
        libc::SO_SNDBUFFORCE,
        libc::SO_SNDBUF,
        batch.bytes.len() + 64 * 1024,
    )
    .map_err(fail("raising the send buffer"))?;
    // Room for every answer: they are all queued before we read the first.
    set_buffer(
        socket,
        libc::SO_RCVBUFFORCE,
        libc::SO_RCVBUF,
        256 * 1024 + batch.messages.len() * RCVBUF_PER_MESSAGE,
    )
    .map_err(fail("raising the receive buffer"))
}

/// Sets a buffer size with the `forced` option, falling back to the capped one.
fn set_buffer(
    socket: &Socket,
    forced: libc::c_int,
    capped: libc::c_int,
    size: usize,
) -> io::Result<()> {
    // The kernel doubles the value (for its bookkeeping) and takes an int.
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX / 2);
    set_option(socket, forced, &size).or_else(|_| set_option(socket, capped, &size))
}

/// `setsockopt(SOL_SOCKET, name, value)` for an int or C struct option.
#[allow(unsafe_code)]
fn set_option<T: Copy>(socket: &Socket, name: libc::c_int, value: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>()).map_err(io::Error::other)?;
    // SAFETY: `value` is a live reference, so the pointer is valid for reads of `len` bytes
    // for the whole call; the kernel only reads them, and checks `len` against the option.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (value as *const T).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

// === answers ===

/// One error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    seq: u32,
    errno: i32,
    message: Option<String>,
    /// Offset of the attribute at fault in the refused message.
    offset: Option<usize>,
}

/// What the kernel answered to a batch.
#[derive(Debug, Default)]
struct Answers {
    /// Per command message: answered (acked or refused).
    answered: Vec<bool>,
    /// How many are not: checked after every datagram, of which there is one per message,
    /// so it must not be a scan of `answered`.
    unanswered: usize,
    refusals: Vec<Refusal>,
    overflowed: bool,
}

impl Answers {
    fn new(messages: usize) -> Answers {
        Answers {
            answered: vec![false; messages],
            unanswered: messages,
            ..Answers::default()
        }
    }

    fn complete(&self) -> bool {
        self.unanswered == 0
    }

    /// Reads the answers in one datagram (one or more netlink messages).
    fn read(&mut self, batch: &Batch, mut bytes: &[u8]) {
        while bytes.len() >= NLMSG_HDRLEN {
            let (Some(len), Some(ty), Some(flags), Some(seq)) = (
                read_u32(bytes, 0),
                read_u16(bytes, 4),
                read_u16(bytes, 6),
                read_u32(bytes, 8),
            ) else {
                return;
            };
            let len = len as usize;
            if len < NLMSG_HDRLEN {
                return;
            }
            let msg = &bytes[..len.min(bytes.len())];
            if ty == NLMSG_ERROR {
                self.read_error(batch, msg, flags, seq);
            }
            bytes = bytes.get(len.next_multiple_of(4)..).unwrap_or_default();
        }
    }

    /// `struct nlmsgerr` (errno, the refused header and, unless capped, its payload), then
    /// the extended-ack attributes.
    fn read_error(&mut self, batch: &Batch, msg: &[u8], flags: u16, seq: u32) {
        let Some(error) = read_u32(msg, NLMSG_HDRLEN).map(|e| e as i32) else {
            return;
        };
        if let Some(i) = batch.command(seq)
            && !std::mem::replace(&mut self.answered[i], true)
        {
            self.unanswered -= 1;
        }
        if error == 0 {
            return;
        }
        let mut refusal = Refusal {
            seq,
            errno: -error,
            message: None,
            offset: None,
        };
        if flags & NLM_F_ACK_TLVS != 0 {
            let inner = NLMSG_HDRLEN + 4;
            let inner_len = if flags & NLM_F_CAPPED != 0 {
                NLMSG_HDRLEN
            } else {
                read_u32(msg, inner).map_or(NLMSG_HDRLEN, |l| l as usize)
            };
            let tlvs = inner + inner_len.next_multiple_of(4);
            for (ty, s, e) in attributes(msg, tlvs, msg.len()) {
                let payload = &msg[s + NLA_HDRLEN..e];
                match ty {
                    NLMSGERR_ATTR_MSG => {
                        let text = payload.split(|&b| b == 0).next().unwrap_or_default();
                        refusal.message = Some(String::from_utf8_lossy(text).into_owned());
                    }
                    NLMSGERR_ATTR_OFFS => {
                        refusal.offset = read_u32(payload, 0).map(|o| o as usize);
                    }
                    _ => {}
                }
            }
        }
        self.refusals.push(refusal);
    }

    fn into_result(mut self, tables: &[TableOps], batch: &Batch) -> Result<(), NftElementsError> {
        let complete = self.complete();
        self.refusals.sort_by_key(|r| r.seq.wrapping_sub(BEGIN_SEQ));
        let mut refusals = self.refusals.into_iter();
        if let Some(first) = refusals.next() {
            let at = batch.command(first.seq).and_then(|i| {
                let origin = &batch.messages[i];
                let mut at = OpRef::new(tables, origin)?;
                at.element = first
                    .offset
                    .and_then(|o| element_at(batch.message_bytes(i), o))
                    .map(|k| origin.first_element + k);
                Some(Box::new(at))
            });
            return Err(NftElementsError::Rejected {
                at,
                error: io::Error::from_raw_os_error(first.errno),
                message: first.message.filter(|m| !m.is_empty()),
                others: refusals.len(),
            });
        }
        if !complete {
            return Err(NftElementsError::Unacknowledged {
                answered: self.answered.len() - self.unanswered,
                messages: self.answered.len(),
                overflowed: self.overflowed,
            });
        }
        Ok(())
    }
}

/// Reads answers until every command is answered or something was refused, then whatever else
/// is already queued. Waits (up to [`ANSWER_WAIT`] per read) only while neither has happened.
fn read_answers(socket: &Socket, batch: &Batch) -> Result<Answers, NftElementsError> {
    let mut answers = Answers::new(batch.messages.len());
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let settled = answers.complete() || !answers.refusals.is_empty();
        let flags = if settled { libc::MSG_DONTWAIT } else { 0 };
        match socket.recv(&mut &mut buf[..], flags) {
            Ok(n) => answers.read(batch, &buf[..n.min(buf.len())]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => answers.overflowed = true,
            Err(error) => {
                return Err(NftElementsError::Socket {
                    action: "reading the kernel's answers",
                    error,
                });
            }
        }
    }
    Ok(answers)
}
