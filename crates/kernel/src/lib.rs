//! podnet kernel access.
