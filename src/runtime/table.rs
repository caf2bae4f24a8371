//! The route table as the runtime holds it: the model's table ([`crate::model::route`]), each
//! upstream carrying its address handle ([`Addrs`]: cached DNS and each address's state) and
//! each route its metric handles ([`RouteCounters`]). Built by the control plane, read by every
//! connection.

use std::sync::Arc;

use crate::model::route;
use crate::runtime::route_counters::RouteCounters;
use crate::runtime::upstream::resolve::Addrs;

/// The route table as the runtime holds it: each upstream carries its address handle.
pub type RouteTable = route::RouteTable<Arc<Addrs>, RouteCounters>;
/// One route of a [`RouteTable`].
pub type Route = route::Route<Arc<Addrs>, RouteCounters>;
/// One upstream host of a [`Route`].
pub type Upstream = route::Upstream<Arc<Addrs>>;
