//! The interface SPUD collectors are written against. The stable ABI arrives with the
//! plugin-api issue; until then this crate only reserves its place in the workspace.
#![deny(missing_docs)]
