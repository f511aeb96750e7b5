//! Tests that span the spec modules: network config fields and the captured runtime samples.

mod config;
mod samples;

use crate::error::{CniError, Code};

/// Asserts `err` has `code` and a message containing every needle (field path, value, ...).
#[track_caller]
fn assert_error(err: CniError, code: Code, needles: &[&str]) {
    assert_eq!(err.code, code, "unexpected code for: {}", err.msg);
    for needle in needles {
        assert!(
            err.msg.contains(needle),
            "{:?} not in message: {}",
            needle,
            err.msg
        );
    }
}
