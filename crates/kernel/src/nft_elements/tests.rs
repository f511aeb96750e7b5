//! The encoder byte for byte, splitting, answer parsing; then the real kernel in throwaway
//! namespaces (root and `nft` needed, else those tests skip with a note).

use super::*;

fn add(set: &str, elements: Vec<Element>) -> SetOp {
    SetOp::Add {
        set: set.to_owned(),
        elements,
    }
}

fn elem(key: Vec<u8>, data: Option<ElementData>, comment: Option<&str>) -> Element {
    Element {
        key,
        data,
        comment: comment.map(str::to_owned),
    }
}

fn table(family: NftFamily, name: &str, ops: Vec<SetOp>) -> TableOps {
    TableOps {
        family,
        table: name.to_owned(),
        ops,
    }
}

/// The command messages of an encoded batch: (type, flags, seq, bytes).
fn commands(batch: &Batch) -> Vec<(u16, u16, u32, Vec<u8>)> {
    (0..batch.messages.len())
        .map(|i| {
            let m = batch.message_bytes(i);
            (
                read_u16(m, 4).unwrap(),
                read_u16(m, 6).unwrap(),
                read_u32(m, 8).unwrap(),
                m.to_vec(),
            )
        })
        .collect()
}

/// The `NFTA_LIST_ELEM`s of a command message, as byte slices.
fn list_elems(msg: &[u8]) -> Vec<Vec<u8>> {
    let (_, s, e) = attributes(msg, NLMSG_HDRLEN + NFGENMSG_LEN, msg.len())
        .into_iter()
        .find(|a| a.0 == NFTA_SET_ELEM_LIST_ELEMENTS)
        .unwrap();
    attributes(msg, s + NLA_HDRLEN, e)
        .into_iter()
        .map(|(_, s, e)| msg[s..e].to_vec())
        .collect()
}

#[test]
#[cfg(target_endian = "little")]
fn encodes_a_one_element_add_byte_for_byte() {
    let tables = [table(
        NftFamily::Ip,
        "t",
        vec![add("s", vec![elem(vec![10, 0, 0, 1], None, Some("hi"))])],
    )];
    let batch = encode(&tables, MAX_ELEMENTS_ATTR).unwrap();
    #[rustfmt::skip]
    let expected: Vec<u8> = vec![
        // batch begin: len 20, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq 1, port 0
        20, 0, 0, 0, 0x10, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0,
        // nfgenmsg: AF_UNSPEC, v0, res_id = NFNL_SUBSYS_NFTABLES big-endian
        0, 0, 0, 10,
        // NEWSETELEM: len 68, type (10 << 8) | 12, REQUEST|ACK|CREATE, seq 2, port 0
        68, 0, 0, 0, 12, 10, 0x05, 0x04, 2, 0, 0, 0, 0, 0, 0, 0,
        // nfgenmsg: NFPROTO_IPV4, v0, res_id 0
        2, 0, 0, 0,
        // NFTA_SET_ELEM_LIST_TABLE "t\0" (+2 pad), NFTA_SET_ELEM_LIST_SET "s\0" (+2 pad)
        6, 0, 1, 0, b't', 0, 0, 0,
        6, 0, 2, 0, b's', 0, 0, 0,
        // NFTA_SET_ELEM_LIST_ELEMENTS (nested), 32 bytes
        32, 0, 3, 0x80,
        // NFTA_LIST_ELEM (nested), 28 bytes
        28, 0, 1, 0x80,
        // NFTA_SET_ELEM_KEY (nested) { NFTA_DATA_VALUE 10.0.0.1 }
        12, 0, 1, 0x80, 8, 0, 1, 0, 10, 0, 0, 1,
        // NFTA_SET_ELEM_USERDATA: udata TLV (comment, len 3, "hi\0"), 9 bytes + 3 pad
        9, 0, 6, 0, 0, 3, b'h', b'i', 0, 0, 0, 0,
        // batch end: len 20, NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq 3
        20, 0, 0, 0, 0x11, 0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 10,
    ];
    assert_eq!(batch.bytes, expected);
    assert_eq!(
        batch.messages,
        vec![Origin {
            table: 0,
            op: 0,
            part: 0,
            first_element: 0,
            start: 20,
        }]
    );
}

#[test]
#[cfg(target_endian = "little")]
fn encodes_verdicts_values_deletes_and_flushes() {
    let tables = [table(
        NftFamily::Inet,
        "t",
        vec![
            add(
                "m",
                vec![
                    elem(
                        vec![1, 2, 3, 4],
                        Some(ElementData::Verdict(Verdict::Goto("c".to_owned()))),
                        None,
                    ),
                    elem(
                        vec![5, 6, 7, 8],
                        Some(ElementData::Value(vec![10, 1, 0, 1, 0x1f, 0x90, 0, 0])),
                        None,
                    ),
                    elem(
                        vec![9, 9, 9, 9],
                        Some(ElementData::Verdict(Verdict::Drop)),
                        None,
                    ),
                ],
            ),
            SetOp::Delete {
                set: "m".to_owned(),
                keys: vec![vec![1, 2, 3, 4]],
            },
            SetOp::Flush {
                set: "m".to_owned(),
            },
        ],
    )];
    let batch = encode(&tables, MAX_ELEMENTS_ATTR).unwrap();
    let cmds = commands(&batch);
    assert_eq!(cmds.len(), 3);
    assert_eq!((cmds[0].0, cmds[0].1, cmds[0].2), (0x0a0c, 0x405, 2));
    assert_eq!((cmds[1].0, cmds[1].1, cmds[1].2), (0x0a0e, 0x005, 3));
    assert_eq!((cmds[2].0, cmds[2].1, cmds[2].2), (0x0a0e, 0x005, 4));
    assert_eq!(cmds[0].3[16], 1, "nfgen_family NFPROTO_INET");

    let added = list_elems(&cmds[0].3);
    #[rustfmt::skip]
    let goto: Vec<u8> = vec![
        40, 0, 1, 0x80,                               // NFTA_LIST_ELEM
        12, 0, 1, 0x80, 8, 0, 1, 0, 1, 2, 3, 4,       // KEY { VALUE 1.2.3.4 }
        24, 0, 2, 0x80,                               // DATA
        20, 0, 2, 0x80,                               // NFTA_DATA_VERDICT
        8, 0, 1, 0, 0xff, 0xff, 0xff, 0xfc,           // NFTA_VERDICT_CODE NFT_GOTO (-4, BE)
        6, 0, 2, 0, b'c', 0, 0, 0,                    // NFTA_VERDICT_CHAIN "c"
    ];
    #[rustfmt::skip]
    let value: Vec<u8> = vec![
        32, 0, 1, 0x80,
        12, 0, 1, 0x80, 8, 0, 1, 0, 5, 6, 7, 8,
        16, 0, 2, 0x80, 12, 0, 1, 0, 10, 1, 0, 1, 0x1f, 0x90, 0, 0,   // DATA { VALUE }
    ];
    #[rustfmt::skip]
    let drop: Vec<u8> = vec![
        32, 0, 1, 0x80,
        12, 0, 1, 0x80, 8, 0, 1, 0, 9, 9, 9, 9,
        16, 0, 2, 0x80, 12, 0, 2, 0x80, 8, 0, 1, 0, 0, 0, 0, 0,       // DATA { VERDICT { NF_DROP } }
    ];
    assert_eq!(added, vec![goto, value, drop]);

    #[rustfmt::skip]
    let key: Vec<u8> = vec![16, 0, 1, 0x80, 12, 0, 1, 0x80, 8, 0, 1, 0, 1, 2, 3, 4];
    assert_eq!(list_elems(&cmds[1].3), vec![key]);

    // The flush is the bare header: table and set, no element list.
    assert_eq!(cmds[2].3.len(), NLMSG_HDRLEN + NFGENMSG_LEN + 8 + 8);
    assert!(
        attributes(&cmds[2].3, 20, cmds[2].3.len())
            .iter()
            .all(|a| a.0 != NFTA_SET_ELEM_LIST_ELEMENTS)
    );
}

#[test]
fn splits_long_element_lists_into_messages_under_the_limit() {
    let elements: Vec<Element> = (0..1000u32)
        .map(|i| elem(i.to_be_bytes().to_vec(), None, None))
        .collect();
    let tables = [table(NftFamily::Ip, "t", vec![add("s", elements.clone())])];
    let limit = 1000;
    let batch = encode(&tables, limit).unwrap();
    assert!(
        batch.messages.len() > 10,
        "{} messages",
        batch.messages.len()
    );
    let mut keys = Vec::new();
    for (i, (ty, _, seq, bytes)) in commands(&batch).into_iter().enumerate() {
        assert_eq!(ty, 0x0a0c);
        assert_eq!(seq, command_seq(i));
        let (_, s, e) = attributes(&bytes, 20, bytes.len())
            .into_iter()
            .find(|a| a.0 == NFTA_SET_ELEM_LIST_ELEMENTS)
            .unwrap();
        assert!(
            e - s <= limit,
            "message {i}: element list of {} bytes",
            e - s
        );
        assert_eq!(batch.messages[i].first_element, keys.len());
        assert_eq!(batch.messages[i].part, i);
        for el in list_elems(&bytes) {
            keys.push(el[12..16].to_vec());
        }
    }
    let want: Vec<Vec<u8>> = elements.into_iter().map(|e| e.key).collect();
    assert_eq!(keys, want, "every element once, in order");
    // The batch ends right after the last command, with the next sequence number.
    let last = batch.messages.len() - 1;
    let end = batch.messages[last].start + batch.message_bytes(last).len();
    assert_eq!(read_u16(&batch.bytes, end + 4), Some(NFNL_MSG_BATCH_END));
    assert_eq!(read_u32(&batch.bytes, end + 8), Some(command_seq(last + 1)));
    assert_eq!(batch.bytes.len(), end + 20);
}

#[test]
fn encodes_300k_elements_quickly_within_u16_attributes() {
    let elements: Vec<Element> = (0..300_000u32)
        .map(|i| {
            let mut key = vec![10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            key.extend_from_slice(&[6, 0, 0, 0, 0, 80, 0, 0]);
            elem(
                key,
                Some(ElementData::Verdict(Verdict::Goto("svc-abcdef".to_owned()))),
                None,
            )
        })
        .collect();
    let tables = [table(NftFamily::Ip, "t", vec![add("m", elements)])];
    let started = std::time::Instant::now();
    let batch = encode(&tables, MAX_ELEMENTS_ATTR).unwrap();
    eprintln!(
        "encoded 300k elements ({} bytes, {} messages) in {:?}",
        batch.bytes.len(),
        batch.messages.len(),
        started.elapsed()
    );
    let mut count = 0;
    for i in 0..batch.messages.len() {
        let m = batch.message_bytes(i);
        let list = attributes(m, 20, m.len());
        assert_eq!(
            list.last().map(|a| a.2),
            Some(m.len()),
            "attributes fill message {i}"
        );
        count += list_elems(m).len();
    }
    assert_eq!(count, 300_000);
}

#[test]
fn empty_adds_and_deletes_send_nothing() {
    // An element-less DELSETELEM is a flush: an empty delete must not become one.
    let tables = [table(
        NftFamily::Ip,
        "t",
        vec![
            add("s", vec![]),
            SetOp::Delete {
                set: "s".to_owned(),
                keys: vec![],
            },
        ],
    )];
    let batch = encode(&tables, MAX_ELEMENTS_ATTR).unwrap();
    assert!(batch.messages.is_empty());
    assert!(batch.bytes.is_empty());
    // And apply does not need the kernel for it (this passes without root).
    apply(&tables).unwrap();
    apply(&[]).unwrap();
    apply(&[table(NftFamily::Ip, "t", vec![])]).unwrap();
}

#[test]
fn bad_input_is_refused_before_sending_naming_the_op_and_element() {
    let cases: Vec<(SetOp, Option<usize>, &str)> = vec![
        (
            add(
                "s",
                vec![elem(vec![1; 4], None, None), elem(vec![1; 65], None, None)],
            ),
            Some(1),
            "key is 65 bytes",
        ),
        (
            add("s", vec![elem(vec![], None, None)]),
            Some(0),
            "key is 0 bytes",
        ),
        (
            add("s", vec![elem(vec![1; 4], None, Some(&"x".repeat(129)))]),
            Some(0),
            "comment",
        ),
        (
            add("s", vec![elem(vec![1; 4], None, Some("a\0b"))]),
            Some(0),
            "without NUL",
        ),
        (
            add(
                "s",
                vec![elem(
                    vec![1; 4],
                    Some(ElementData::Verdict(Verdict::Jump(String::new()))),
                    None,
                )],
            ),
            Some(0),
            "chain name",
        ),
        (add("s\0x", vec![]), None, "set name"),
        (
            SetOp::Delete {
                set: "s".to_owned(),
                keys: vec![vec![0; 100]],
            },
            Some(0),
            "key is 100 bytes",
        ),
    ];
    for (op, element, needle) in cases {
        let tables = [table(
            NftFamily::Ip6,
            "t",
            vec![SetOp::Flush { set: "s".into() }, op],
        )];
        let err = apply(&tables).unwrap_err();
        let NftElementsError::Invalid { at, .. } = &err else {
            panic!("expected Invalid, got {err}");
        };
        assert_eq!((at.op_index, at.element), (1, element), "{err}");
        assert_eq!(at.family, NftFamily::Ip6);
        assert!(err.to_string().contains(needle), "{err} lacks {needle:?}");
    }
}

/// A kernel error answer, as the kernel builds it with NETLINK_CAP_ACK and NETLINK_EXT_ACK.
fn error_answer(seq: u32, errno: i32, message: &str, offset: u32) -> Vec<u8> {
    let mut b = Vec::new();
    let start = put_nlmsghdr(&mut b, NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, seq);
    b.extend_from_slice(&(-errno).to_ne_bytes());
    put_nlmsghdr(&mut b, 0x0a0c, 0x405, seq); // the refused header, without its payload
    put_str(&mut b, NLMSGERR_ATTR_MSG, message);
    put_attr(&mut b, NLMSGERR_ATTR_OFFS, &offset.to_ne_bytes());
    let len = b.len() as u32;
    set_u32(&mut b, start, len);
    b
}

fn ack(seq: u32) -> Vec<u8> {
    let mut b = Vec::new();
    let start = put_nlmsghdr(&mut b, NLMSG_ERROR, NLM_F_CAPPED, seq);
    b.extend_from_slice(&0i32.to_ne_bytes());
    put_nlmsghdr(&mut b, 0x0a0c, 0x405, seq);
    let len = b.len() as u32;
    set_u32(&mut b, start, len);
    b
}

#[test]
fn a_refusal_is_traced_to_its_op_message_and_element() {
    let elements: Vec<Element> = (0..100u32)
        .map(|i| elem(i.to_be_bytes().to_vec(), None, None))
        .collect();
    let tables = [
        table(NftFamily::Ip, "a", vec![SetOp::Flush { set: "x".into() }]),
        table(NftFamily::Inet, "b", vec![add("y", elements)]),
    ];
    let batch = encode(&tables, 400).unwrap();
    // Point at the 3rd element of the 2nd message of the add (command 2 overall).
    let msg = batch.message_bytes(2);
    let (_, _, third_start, _) = {
        let (_, s, e) = attributes(msg, 20, msg.len())
            .into_iter()
            .find(|a| a.0 == NFTA_SET_ELEM_LIST_ELEMENTS)
            .unwrap();
        let elems = attributes(msg, s + 4, e);
        (elems[0], elems[1], elems[2].1, elems[3])
    };
    let first = batch.messages[2].first_element;
    assert!(first > 0);

    let mut answers = Answers::new(batch.messages.len());
    let mut datagram = ack(command_seq(0));
    datagram.extend(ack(command_seq(1)));
    answers.read(&batch, &datagram);
    answers.read(
        &batch,
        &error_answer(
            command_seq(2),
            libc::ENOENT,
            "no chain",
            third_start as u32 + 8,
        ),
    );
    let err = answers.into_result(&tables, &batch).unwrap_err();
    let NftElementsError::Rejected {
        at: Some(at),
        message,
        others,
        ..
    } = &err
    else {
        panic!("expected a located refusal, got {err}");
    };
    assert_eq!(err.errno(), Some(libc::ENOENT));
    assert_eq!(message.as_deref(), Some("no chain"));
    assert_eq!(*others, 0);
    assert_eq!(
        (
            at.table.as_str(),
            at.set.as_str(),
            at.kind,
            at.table_index,
            at.op_index
        ),
        ("b", "y", OpKind::Add, 1, 0)
    );
    assert_eq!((at.message, at.element), (1, Some(first + 2)));
    let text = err.to_string();
    assert!(
        text.contains("add element inet b y") && text.contains("No such file"),
        "{text}"
    );
}

#[test]
fn missing_answers_are_an_error_and_a_batch_level_refusal_names_the_batch() {
    let tables = [table(
        NftFamily::Ip,
        "t",
        vec![
            SetOp::Flush { set: "a".into() },
            SetOp::Flush { set: "b".into() },
        ],
    )];
    let batch = encode(&tables, MAX_ELEMENTS_ATTR).unwrap();
    let mut answers = Answers::new(2);
    answers.read(&batch, &ack(command_seq(0)));
    let err = answers.into_result(&tables, &batch).unwrap_err();
    assert!(
        matches!(
            err,
            NftElementsError::Unacknowledged {
                answered: 1,
                messages: 2,
                ..
            }
        ),
        "{err}"
    );

    let mut answers = Answers::new(2);
    answers.read(&batch, &error_answer(BEGIN_SEQ, libc::ENOMEM, "", 0));
    let err = answers.into_result(&tables, &batch).unwrap_err();
    assert!(
        matches!(err, NftElementsError::Rejected { at: None, .. }),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("nf_tables rejected the batch"),
        "{err}"
    );
}

mod kernel;
