//! The CNI wire format.
