//! Per-route client allowlists, checked against the real client address.
