//! What speaks to clients, each over the store (and the alerts): the line protocol
//! (`protocol` cuts lines and writes replies, `cmd` one file per command, `net` the TCP
//! listener), HTTP and the dashboard, `/metrics`, and the munin face.

pub(crate) mod cmd;
pub mod http;
pub mod metrics;
pub mod munin;
pub mod net;
pub(crate) mod protocol;
