//! Hardened XML reading with positions.
