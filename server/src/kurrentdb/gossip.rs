//! `Gossip.Read`: the cluster as this server sees it, which is one member,
//! itself, the leader, alive. Its endpoint is the address the client
//! reached it by (the call's `:authority`, which [`Authority`] keeps for
//! the handler), so a client that reconnects to "the leader" reconnects to
//! where it already is, with the same host name for TLS; the listener's
//! own address when the call names none.

use std::task::{Context, Poll};
use std::time::SystemTime;

use strata_proto::kurrentdb::gossip::gossip_server::Gossip;
use strata_proto::kurrentdb::gossip::member_info::VNodeState;
use strata_proto::kurrentdb::gossip::{ClusterInfo, EndPoint, MemberInfo};
use strata_proto::kurrentdb::shared::Empty;
use tonic::codegen::{http, Service};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use super::convert;

/// The `:authority` (host and port) a call was addressed to.
#[derive(Clone, Debug)]
struct CalledAuthority(http::uri::Authority);

/// A service whose requests keep the authority they were addressed to, for
/// the handler (tonic hands handlers the headers, not the URI).
#[derive(Clone, Debug)]
pub struct Authority<S>(pub S);

impl<S: NamedService> NamedService for Authority<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Authority<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        if let Some(authority) = req.uri().authority().cloned() {
            req.extensions_mut().insert(CalledAuthority(authority));
        }
        self.0.call(req)
    }
}

/// `event_store.client.gossip.Gossip`.
#[derive(Clone, Debug)]
pub struct GossipService {
    /// This server's id for this run.
    instance_id: [u8; 16],
}

impl GossipService {
    /// The service of a server that runs with a fresh instance id.
    pub fn new() -> Self {
        GossipService {
            instance_id: *uuid::Uuid::new_v4().as_bytes(),
        }
    }
}

impl Default for GossipService {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the caller reached this server.
fn endpoint<T>(request: &Request<T>) -> EndPoint {
    let local = request.local_addr();
    if let Some(CalledAuthority(a)) = request.extensions().get::<CalledAuthority>() {
        let host = a.host().trim_start_matches('[').trim_end_matches(']');
        if let Some(port) = a.port_u16().or(local.map(|l| l.port())) {
            return EndPoint {
                address: host.to_owned(),
                port: port.into(),
            };
        }
    }
    match local {
        Some(addr) => EndPoint {
            address: addr.ip().to_string(),
            port: addr.port().into(),
        },
        None => EndPoint {
            address: "localhost".into(),
            port: 2113,
        },
    }
}

#[tonic::async_trait]
impl Gossip for GossipService {
    async fn read(&self, request: Request<Empty>) -> Result<Response<ClusterInfo>, Status> {
        let micros = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let member = MemberInfo {
            instance_id: Some(convert::uuid_to_wire(self.instance_id, None)),
            time_stamp: convert::ticks_from_micros(micros),
            state: VNodeState::Leader.into(),
            is_alive: true,
            http_end_point: Some(endpoint(&request)),
        };
        Ok(Response::new(ClusterInfo {
            members: vec![member],
        }))
    }
}
