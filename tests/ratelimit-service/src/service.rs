//! The gRPC service: `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`
//! over Limitador, and the HTTP/2 routing tonic's server needs (written by
//! hand over `tonic::server::Grpc` instead of generated, so no protoc).
//!
//! Error statuses, each with one log line on stderr:
//! - `NOT_FOUND`: the domain is not a namespace of the limits file;
//! - `INVALID_ARGUMENT`: no descriptors, a descriptor without entries, an
//!   empty key or value, or a limit's condition/variable that cannot be
//!   evaluated on this request (e.g. it indexes a descriptor the request
//!   does not have);
//! - `UNAVAILABLE`: the counter storage failed or did not answer within
//!   [`STORAGE_TIMEOUT`];
//! - `INTERNAL`: Limitador panicked on the request (a bug; logged);
//! - `UNIMPLEMENTED`: any other gRPC method.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use limitador::errors::LimitadorError;
use limitador::limit::{Context, Namespace};
use limitador::storage::redis::AsyncRedisStorage;
use limitador::{AsyncRateLimiter, CheckResult, RateLimiter};
use ratelimit_proto::{RateLimitRequest, RateLimitResponse};
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::{Request, Response, Status};

use crate::limits::Limits;
use crate::translate::{self, CounterView, RequestError};

/// How long one check may wait for the counter storage before the answer is
/// `UNAVAILABLE`. Redis on loopback answers in well under a millisecond;
/// the bound is for a dead or reconnecting Redis, which must not hang the
/// caller (Envoy's own timeout is usually far shorter anyway).
pub const STORAGE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long start-up waits for Redis to accept the first connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters held in this process's memory, as `--memory` asks.
const MEMORY_CACHE_SIZE: u64 = 10_000;

/// Where Limitador keeps the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// In this process (Limitador's in-memory storage): not shared.
    Memory,
    /// In Redis at this URL (Limitador's async Redis storage): shared by
    /// every service process on the same Redis.
    Redis(String),
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Redis refused the connection or the script upload.
    #[error("redis {url}: {message}")]
    Redis {
        /// The URL given.
        url: String,
        /// The client's error, on one line.
        message: String,
    },
    /// Redis did not answer within [`CONNECT_TIMEOUT`].
    #[error("redis {url}: no answer within {}s", CONNECT_TIMEOUT.as_secs())]
    RedisTimeout {
        /// The URL given.
        url: String,
    },
}

/// Limitador's two limiter types: the in-memory storage is synchronous, the
/// Redis one async.
enum Engine {
    Memory(RateLimiter),
    Redis(AsyncRateLimiter),
}

struct Inner {
    limits: Limits,
    engine: Engine,
}

/// The rate-limit service; cheap to clone (one shared state).
#[derive(Clone)]
pub struct RateLimitService {
    inner: Arc<Inner>,
}

impl RateLimitService {
    /// Builds the service: connects the storage and loads the limits into
    /// Limitador.
    ///
    /// # Errors
    ///
    /// [`StartError`] when Redis cannot be reached.
    pub async fn new(limits: Limits, storage: &Storage) -> Result<Self, StartError> {
        let engine = match storage {
            Storage::Memory => {
                let limiter = RateLimiter::new(MEMORY_CACHE_SIZE);
                for limit in limits.limits() {
                    limiter.add_limit(limit.clone());
                }
                Engine::Memory(limiter)
            }
            Storage::Redis(url) => {
                let limiter = AsyncRateLimiter::new_with_storage(Box::new(connect(url).await?));
                for limit in limits.limits() {
                    limiter.add_limit(limit.clone());
                }
                Engine::Redis(limiter)
            }
        };
        Ok(Self {
            inner: Arc::new(Inner { limits, engine }),
        })
    }

    /// Answers one `ShouldRateLimit` call.
    ///
    /// # Errors
    ///
    /// The gRPC statuses listed in the module documentation, each logged.
    pub async fn should_rate_limit(
        &self,
        request: RateLimitRequest,
    ) -> Result<RateLimitResponse, Status> {
        let checked = translate::validate(&request).and_then(|()| {
            translate::check_domain(&request.domain, self.inner.limits.namespaces())
        });
        if let Err(err) = checked {
            let status = match err {
                RequestError::UnknownDomain(_) => Status::not_found(err.to_string()),
                _ => Status::invalid_argument(err.to_string()),
            };
            return Err(logged(status));
        }
        // Limitador runs in its own task: should it panic on this request
        // (see Limits::check_conditions for the one case known), the task
        // ends with an error instead of the connection.
        let inner = Arc::clone(&self.inner);
        let task = tokio::spawn(async move { check(&inner, &request).await });
        match task.await {
            Ok(result) => result.map_err(logged),
            Err(err) => Err(logged(Status::internal(format!(
                "the rate limiter failed on this request: {err}"
            )))),
        }
    }
}

/// Limitador's async Redis storage on `url`; it connects and uploads its
/// scripts, so an unreachable Redis fails here, at start.
async fn connect(url: &str) -> Result<AsyncRedisStorage, StartError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, AsyncRedisStorage::new(url)).await {
        Ok(Ok(storage)) => Ok(storage),
        Ok(Err(err)) => Err(StartError::Redis {
            url: url.to_owned(),
            message: one_line(&err.to_string()),
        }),
        Err(_) => Err(StartError::RedisTimeout {
            url: url.to_owned(),
        }),
    }
}

/// Runs Limitador on a validated request.
async fn check(inner: &Inner, request: &RateLimitRequest) -> Result<RateLimitResponse, Status> {
    let namespace = Namespace::from(request.domain.as_str());
    let mut ctx = Context::default();
    ctx.list_binding(
        "descriptors".to_owned(),
        translate::descriptor_maps(request),
    );
    inner
        .limits
        .check_conditions(&request.domain, &ctx)
        .map_err(Status::invalid_argument)?;
    let hits = translate::hits(request);
    let result = match &inner.engine {
        Engine::Memory(limiter) => limiter.check_rate_limited_and_update(&namespace, &ctx, hits),
        Engine::Redis(limiter) => tokio::time::timeout(
            STORAGE_TIMEOUT,
            limiter.check_rate_limited_and_update(&namespace, &ctx, hits),
        )
        .await
        .map_err(|_| {
            Status::unavailable(format!(
                "counter storage: no answer within {} ms",
                STORAGE_TIMEOUT.as_millis()
            ))
        })?,
    };
    let CheckResult {
        limited, counters, ..
    } = result.map_err(|err| match err {
        LimitadorError::StorageError(err) => {
            Status::unavailable(format!("counter storage: {}", one_line(&err.to_string())))
        }
        LimitadorError::InterpreterError(err) => Status::invalid_argument(format!(
            "a limit's variable cannot be evaluated for this request: {}",
            one_line(&err.to_string())
        )),
    })?;
    let views: Vec<CounterView> = counters.iter().map(CounterView::from).collect();
    Ok(translate::response(
        limited,
        request.descriptors.len(),
        &views,
    ))
}

fn logged(status: Status) -> Status {
    eprintln!(
        "ratelimit-service: {:?}: {}",
        status.code(),
        status.message()
    );
    status
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// The unary method as tonic's server helper wants it.
struct ShouldRateLimit(RateLimitService);

impl tonic::server::UnaryService<RateLimitRequest> for ShouldRateLimit {
    type Response = RateLimitResponse;
    type Future = BoxFuture<Response<RateLimitResponse>, Status>;

    fn call(&mut self, request: Request<RateLimitRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move {
            service
                .should_rate_limit(request.into_inner())
                .await
                .map(Response::new)
        })
    }
}

/// HTTP/2 routing: the one method by its path, `UNIMPLEMENTED` otherwise.
impl<B> Service<http::Request<B>> for RateLimitService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() == ratelimit_proto::PATH {
            let method = ShouldRateLimit(self.clone());
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<
                    RateLimitResponse,
                    RateLimitRequest,
                >::default());
                Ok(grpc.unary(method, request).await)
            })
        } else {
            let path = request.uri().path().to_owned();
            Box::pin(async move {
                Ok(logged(Status::unimplemented(format!("no method {path}"))).into_http())
            })
        }
    }
}
