//! PROXY protocol header we send to upstreams.
