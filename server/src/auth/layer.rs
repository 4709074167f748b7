//! The one authentication layer, in front of every gRPC service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine as _;
use tonic::codegen::http;
use tonic::codegen::Service;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

use super::{rpc_need, tls, Caller, Directory, Need};

/// The longest `authorization` value looked at, in bytes.
const MAX_CREDENTIALS: usize = 4096;

/// Authenticates every call and refuses what its RPC needs and the caller
/// lacks (see [`rpc_need`]); puts the [`Caller`] into the request.
#[derive(Clone)]
pub struct AuthLayer {
    directory: Option<Arc<Directory>>,
    tls: bool,
}

impl AuthLayer {
    /// Authentication against `directory`; `None` turns it off (every
    /// caller may do everything). `tls` says whether connections are TLS,
    /// which `Basic` credentials need unless they come over loopback.
    pub fn new(directory: Option<Arc<Directory>>, tls: bool) -> Self {
        AuthLayer { directory, tls }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service behind [`AuthLayer`].
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    layer: AuthLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Authenticated<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The service that was polled ready is the one to call.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let Some(directory) = self.layer.directory.clone() else {
            // Authentication is off: nothing to look at, nobody to refuse.
            request.extensions_mut().insert(Caller::Everyone);
            return Box::pin(inner.call(request));
        };
        let layer = self.layer.clone();
        let presented = Presented::of(&request);
        Box::pin(async move {
            match layer.admit(&directory, presented).await {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// What a request shows of its caller, taken out of it before any wait.
struct Presented {
    path: String,
    authorization: Option<http::HeaderValue>,
    /// The common name of an mTLS client certificate, read only when
    /// there is no `authorization` header (which wins).
    certificate_name: Option<String>,
    over_loopback: bool,
}

impl Presented {
    fn of<B>(request: &http::Request<B>) -> Self {
        let extensions = request.extensions();
        let authorization = request.headers().get(http::header::AUTHORIZATION).cloned();
        let certificate_name = match authorization {
            Some(_) => None,
            None => extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|t| t.peer_certs())
                .and_then(|certs| certs.first().and_then(|c| tls::common_name(c))),
        };
        let over_loopback = extensions
            .get::<TcpConnectInfo>()
            .and_then(|c| c.remote_addr())
            .is_some_and(|a| a.ip().is_loopback());
        Presented {
            path: request.uri().path().to_owned(),
            authorization,
            certificate_name,
            over_loopback,
        }
    }
}

impl AuthLayer {
    /// Who is calling, if the call may go on.
    async fn admit(&self, directory: &Directory, presented: Presented) -> Result<Caller, Status> {
        let need = rpc_need(&presented.path);
        if need == Need::Open {
            // Health and reflection: no credentials looked at.
            return Ok(Caller::Everyone);
        }
        let caller = Caller::User(self.authenticate(directory, &presented).await?);
        match need {
            Need::Role(role) if !caller.has(role) => Err(super::denied(&format!(
                "{} needs the {role} role",
                presented.path
            ))),
            _ => Ok(caller),
        }
    }

    async fn authenticate(
        &self,
        directory: &Directory,
        presented: &Presented,
    ) -> Result<Arc<super::Principal>, Status> {
        let failed = || Status::unauthenticated("authentication failed");
        let Some(value) = &presented.authorization else {
            // An mTLS connection authenticates as its certificate's name.
            return match &presented.certificate_name {
                Some(name) => directory.certificate_user(name).ok_or_else(failed),
                None => Err(Status::unauthenticated(
                    "credentials required: authorization 'Basic base64(user:password)' or 'Bearer <api key>'",
                )),
            };
        };
        if value.len() > MAX_CREDENTIALS {
            return Err(Status::unauthenticated(format!(
                "the authorization header is longer than {MAX_CREDENTIALS} bytes"
            )));
        }
        let malformed = || {
            Status::unauthenticated(
                "malformed authorization header: expected 'Basic …' or 'Bearer …'",
            )
        };
        let value = value.to_str().map_err(|_| malformed())?;
        let (scheme, credentials) = value.trim().split_once(' ').ok_or_else(malformed)?;
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            if !self.tls && !presented.over_loopback {
                return Err(Status::unauthenticated(
                    "Basic credentials are accepted only over TLS or from loopback",
                ));
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(credentials)
                .map_err(|_| malformed())?;
            let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
            let (user, password) = decoded.split_once(':').ok_or_else(malformed)?;
            directory
                .check_password(user, password)
                .await
                .ok_or_else(failed)
        } else if scheme.eq_ignore_ascii_case("bearer") {
            directory
                .check_api_key(credentials)
                .await
                .ok_or_else(failed)
        } else {
            Err(malformed())
        }
    }
}
