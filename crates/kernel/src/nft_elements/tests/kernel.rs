//! Against the real kernel, each test in a namespace of its own, checked with `nft list`.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{add, elem, table};
use crate::nft_elements::*;

/// A throwaway network namespace, removed on drop (also when the test panics). Named like the
/// test kit's (`pnt-<pid>-…`), so one left by a killed run is swept by the next kernel test.
struct TestNs {
    name: String,
    file: File,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

const RULESET: &str = "
table ip t {
    chain c {
    }
    chain d {
    }
    set s {
        type ipv4_addr
    }
    map vm {
        type ipv4_addr . inet_proto . inet_service : verdict
    }
    map dm {
        typeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport
    }
}
table ip6 t6 {
    set s6 {
        type ipv6_addr
    }
}
";

impl TestNs {
    /// A namespace holding [`RULESET`]; `None` (after saying why) when the test cannot run here.
    fn with_ruleset(label: &str) -> Option<TestNs> {
        let euid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_owned))
            });
        if euid.as_deref() != Some("0") {
            eprintln!("skipping nft_elements kernel test {label}: needs root");
            return None;
        }
        if std::process::Command::new("nft")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipping nft_elements kernel test {label}: nft is not installed");
            return None;
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("pnt-{}-nfe{n}-{label}", std::process::id());
        let path = crate::netns::create_named(&name).unwrap();
        let ns = TestNs {
            file: File::open(path).unwrap(),
            name,
        };
        ns.run(|| crate::nft::apply(RULESET)).unwrap();
        Some(ns)
    }

    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        crate::netns::run_in(&self.file, f).unwrap()
    }

    fn apply(&self, tables: &[TableOps]) -> Result<(), NftElementsError> {
        self.run(|| apply(tables))
    }

    /// The elements `nft list set|map FAMILY TABLE NAME` prints, one string each, sorted.
    fn elements(&self, what: &str, family: &str, table: &str, name: &str) -> Vec<String> {
        let text = self
            .run(|| crate::nft::list(&[what, family, table, name]))
            .unwrap();
        let Some(start) = text.find("elements = {") else {
            return Vec::new();
        };
        let body = &text[start + "elements = {".len()..];
        let body = &body[..body.find('}').unwrap()];
        let mut out: Vec<String> = body
            .split(',')
            .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|e| !e.is_empty())
            .collect();
        out.sort();
        out
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if let Err(e) = crate::netns::delete_named(&self.name) {
            eprintln!("warning: removing test netns {}: {e}", self.name);
        }
    }
}

// Keys and values in nftables' register layout: every field of a concatenation padded to 4
// bytes; a lone field unpadded.

fn ip(a: [u8; 4]) -> Vec<u8> {
    a.to_vec()
}

/// `ipv4_addr . inet_proto . inet_service`.
fn vm_key(addr: [u8; 4], proto: u8, port: u16) -> Vec<u8> {
    let mut k = addr.to_vec();
    k.extend_from_slice(&[proto, 0, 0, 0]);
    k.extend_from_slice(&port.to_be_bytes());
    k.extend_from_slice(&[0, 0]);
    k
}

/// `ip daddr . tcp dport` (a data map's value, and the start of its key).
fn addr_port(addr: [u8; 4], port: u16) -> Vec<u8> {
    let mut k = addr.to_vec();
    k.extend_from_slice(&port.to_be_bytes());
    k.extend_from_slice(&[0, 0]);
    k
}

/// `ip daddr . tcp dport . numgen random mod 1`: numgen's value is in host byte order.
fn dm_key(addr: [u8; 4], port: u16, n: u32) -> Vec<u8> {
    let mut k = addr_port(addr, port);
    k.extend_from_slice(&n.to_ne_bytes());
    k
}

fn verdict(v: Verdict) -> Option<ElementData> {
    Some(ElementData::Verdict(v))
}

fn goto(chain: &str) -> Option<ElementData> {
    verdict(Verdict::Goto(chain.to_owned()))
}

const TCP: u8 = 6;
const UDP: u8 = 17;

fn strings(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

/// The elements of the main test: every kind of data, comments, both families.
fn sample() -> Vec<TableOps> {
    vec![
        table(
            NftFamily::Ip,
            "t",
            vec![
                add(
                    "s",
                    vec![
                        elem(ip([10, 0, 0, 1]), None, Some("first one")),
                        elem(ip([10, 0, 0, 2]), None, None),
                    ],
                ),
                add(
                    "vm",
                    vec![
                        elem(vm_key([10, 0, 0, 1], TCP, 80), goto("c"), Some("web")),
                        elem(
                            vm_key([10, 0, 0, 2], UDP, 53),
                            verdict(Verdict::Jump("d".into())),
                            None,
                        ),
                        elem(
                            vm_key([10, 0, 0, 3], TCP, 443),
                            verdict(Verdict::Drop),
                            None,
                        ),
                        elem(
                            vm_key([10, 0, 0, 4], TCP, 22),
                            verdict(Verdict::Accept),
                            None,
                        ),
                        elem(
                            vm_key([10, 0, 0, 5], TCP, 1),
                            verdict(Verdict::Return),
                            None,
                        ),
                    ],
                ),
                add(
                    "dm",
                    vec![elem(
                        dm_key([10, 0, 0, 1], 80, 0),
                        Some(ElementData::Value(addr_port([10, 1, 0, 1], 8080))),
                        None,
                    )],
                ),
            ],
        ),
        table(
            NftFamily::Ip6,
            "t6",
            vec![add(
                "s6",
                vec![elem(
                    "fd00::1".parse::<Ipv6Addr>().unwrap().octets().to_vec(),
                    None,
                    Some("six"),
                )],
            )],
        ),
    ]
}

#[test]
fn adds_set_and_map_elements_with_verdicts_values_and_comments() {
    let Some(ns) = TestNs::with_ruleset("add") else {
        return;
    };
    ns.apply(&sample()).unwrap();
    assert_eq!(
        ns.elements("set", "ip", "t", "s"),
        strings(&["10.0.0.1 comment \"first one\"", "10.0.0.2"])
    );
    assert_eq!(
        ns.elements("map", "ip", "t", "vm"),
        strings(&[
            "10.0.0.1 . tcp . 80 comment \"web\" : goto c",
            "10.0.0.2 . udp . 53 : jump d",
            "10.0.0.3 . tcp . 443 : drop",
            "10.0.0.4 . tcp . 22 : accept",
            "10.0.0.5 . tcp . 1 : return",
        ])
    );
    assert_eq!(
        ns.elements("map", "ip", "t", "dm"),
        strings(&["10.0.0.1 . 80 . 0 : 10.1.0.1 . 8080"])
    );
    assert_eq!(
        ns.elements("set", "ip6", "t6", "s6"),
        strings(&["fd00::1 comment \"six\""])
    );
    // Adding the same elements again is not an error, and changes nothing.
    ns.apply(&sample()).unwrap();
    assert_eq!(ns.elements("map", "ip", "t", "vm").len(), 5);
}

#[test]
fn deletes_flushes_and_replaces_in_one_call() {
    let Some(ns) = TestNs::with_ruleset("del") else {
        return;
    };
    ns.apply(&sample()).unwrap();
    let ops = |ops| vec![table(NftFamily::Ip, "t", ops)];

    ns.apply(&ops(vec![
        SetOp::Delete {
            set: "vm".into(),
            keys: vec![
                vm_key([10, 0, 0, 2], UDP, 53),
                vm_key([10, 0, 0, 3], TCP, 443),
            ],
        },
        // An empty delete deletes nothing (it must not turn into a flush).
        SetOp::Delete {
            set: "s".into(),
            keys: vec![],
        },
    ]))
    .unwrap();
    assert_eq!(
        ns.elements("map", "ip", "t", "vm"),
        strings(&[
            "10.0.0.1 . tcp . 80 comment \"web\" : goto c",
            "10.0.0.4 . tcp . 22 : accept",
            "10.0.0.5 . tcp . 1 : return",
        ])
    );
    assert_eq!(ns.elements("set", "ip", "t", "s").len(), 2);

    // A key cannot be re-added with another value...
    let retarget = add(
        "vm",
        vec![elem(vm_key([10, 0, 0, 1], TCP, 80), goto("d"), None)],
    );
    let err = ns.apply(&ops(vec![retarget.clone()])).unwrap_err();
    eprintln!("re-adding with another value: {err}");
    assert_eq!(err.op().map(|at| at.set.as_str()), Some("vm"), "{err}");
    // ...but deleting and adding it in one call replaces it.
    ns.apply(&ops(vec![
        SetOp::Delete {
            set: "vm".into(),
            keys: vec![vm_key([10, 0, 0, 1], TCP, 80)],
        },
        retarget,
    ]))
    .unwrap();
    assert!(
        ns.elements("map", "ip", "t", "vm")
            .contains(&"10.0.0.1 . tcp . 80 : goto d".to_owned())
    );

    // Flush then add: the whole contents replaced, atomically.
    ns.apply(&ops(vec![
        SetOp::Flush { set: "s".into() },
        add("s", vec![elem(ip([192, 168, 0, 9]), None, None)]),
        SetOp::Flush { set: "vm".into() },
    ]))
    .unwrap();
    assert_eq!(
        ns.elements("set", "ip", "t", "s"),
        strings(&["192.168.0.9"])
    );
    assert!(ns.elements("map", "ip", "t", "vm").is_empty());
}

#[test]
fn a_refused_op_names_itself_and_leaves_nothing_applied() {
    let Some(ns) = TestNs::with_ruleset("fail") else {
        return;
    };
    let tables = vec![table(
        NftFamily::Ip,
        "t",
        vec![
            add("s", vec![elem(ip([10, 9, 9, 9]), None, None)]),
            add("nope", vec![elem(ip([10, 9, 9, 8]), None, None)]),
            add(
                "vm",
                vec![elem(vm_key([10, 9, 9, 9], TCP, 80), goto("c"), None)],
            ),
        ],
    )];
    let err = ns.apply(&tables).unwrap_err();
    eprintln!("{err}");
    let at = err.op().unwrap();
    assert_eq!(
        (
            at.family,
            at.table.as_str(),
            at.set.as_str(),
            at.kind,
            at.op_index
        ),
        (NftFamily::Ip, "t", "nope", OpKind::Add, 1),
        "{err}"
    );
    assert_eq!(err.errno(), Some(libc::ENOENT), "{err}");
    assert!(err.to_string().contains("add element ip t nope"), "{err}");
    assert!(
        ns.elements("set", "ip", "t", "s").is_empty(),
        "earlier add applied"
    );
    assert!(
        ns.elements("map", "ip", "t", "vm").is_empty(),
        "later add applied"
    );
}

#[test]
fn a_bad_element_deep_in_a_large_add_is_found_by_index() {
    let Some(ns) = TestNs::with_ruleset("bad") else {
        return;
    };
    let elements: Vec<Element> = (0..5000u32)
        .map(|i| {
            let a = Ipv4Addr::from(0x0a00_0000 + i).octets();
            let chain = if i == 3000 { "missing" } else { "c" };
            elem(vm_key(a, TCP, 80), goto(chain), None)
        })
        .collect();
    let tables = vec![
        table(
            NftFamily::Ip6,
            "t6",
            vec![add("s6", vec![elem(vec![0xfd; 16], None, None)])],
        ),
        table(NftFamily::Ip, "t", vec![add("vm", elements)]),
    ];
    let err = ns.apply(&tables).unwrap_err();
    eprintln!("{err}");
    let at = err.op().unwrap();
    assert_eq!((at.table_index, at.set.as_str()), (1, "vm"), "{err}");
    assert_eq!(at.element, Some(3000), "{err}");
    assert!(
        at.message >= 1,
        "5000 elements span several messages: {err}"
    );
    assert!(ns.elements("map", "ip", "t", "vm").is_empty());
    assert!(ns.elements("set", "ip6", "t6", "s6").is_empty());
}

#[test]
fn two_hundred_thousand_elements_in_one_call() {
    let Some(ns) = TestNs::with_ruleset("big") else {
        return;
    };
    let n = 200_000u32;
    let elements: Vec<Element> = (0..n)
        .map(|i| {
            let a = Ipv4Addr::from(0x0a00_0000 + i).octets();
            elem(vm_key(a, TCP, 80), goto("c"), None)
        })
        .collect();
    let tables = vec![table(NftFamily::Ip, "t", vec![add("vm", elements)])];
    let started = Instant::now();
    ns.apply(&tables).unwrap();
    eprintln!("applied {n} elements in {:?}", started.elapsed());
    let mut expected: Vec<String> = (0..n)
        .map(|i| format!("{} . tcp . 80 : goto c", Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    expected.sort();
    // A set this large is a hash table the kernel grows in the background after the insert, and
    // a netlink dump that spans a resize can skip or repeat elements (the dump resumes by count).
    // So a listing that disagrees is read again, a bounded number of times, before it counts.
    let mut listed = Vec::new();
    for _ in 0..20 {
        listed = ns.elements("map", "ip", "t", "vm");
        if listed == expected {
            return;
        }
        eprintln!(
            "listing held {} elements, not the {n} written; reading again",
            listed.len()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let missing: Vec<_> = expected
        .iter()
        .filter(|e| listed.binary_search(e).is_err())
        .take(5)
        .collect();
    let extra: Vec<_> = listed
        .iter()
        .filter(|e| expected.binary_search(e).is_err())
        .take(5)
        .collect();
    panic!(
        "listed {} elements, expected {n}; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
        listed.len()
    );
}
