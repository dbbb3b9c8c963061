//! Assembling and running the server.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, header};
use futures::future::BoxFuture;
use libgo_core::{Backend, LibGo};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::{LoginLimiter, Role, Scope, Tokens, hash_password, random_hex};
use crate::config::Config;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::state::AppState;
use crate::tasks::TaskManager;
use crate::{events, middleware, routes};

/// Why the server could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// Connects a backend: called again until it succeeds.
pub type Connector =
    Arc<dyn Fn() -> BoxFuture<'static, libgo_core::Result<Arc<dyn Backend>>> + Send + Sync>;

/// A backend the server connects to, retrying while its engine is down.
#[derive(Clone)]
pub struct BackendSpec {
    /// Name it is registered under.
    pub name: String,
    /// How to connect.
    pub connect: Connector,
}

impl std::fmt::Debug for BackendSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendSpec")
            .field("name", &self.name)
            .finish()
    }
}

const REQUEST_ID: &str = "x-request-id";

/// A configured server, ready to serve.
pub struct Server {
    state: Arc<AppState>,
    router: axum::Router,
    generated_admin_password: Mutex<Option<String>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("state", &self.state)
            .finish()
    }
}

/// The OpenAPI document of the server (the same one `/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) =
        OpenApiRouter::<Arc<AppState>>::with_openapi(crate::openapi::ApiDoc::openapi())
            .merge(routes::router())
            .split_for_parts();
    crate::openapi::finish(&mut api);
    api.info.version = env!("CARGO_PKG_VERSION").to_string();
    api
}

impl Server {
    /// Opens the database, creates the first administrator when there is none, and builds
    /// the routes over `libgo`.
    ///
    /// The server's files hold secrets (the JWT secret, password hashes, exported disks), so
    /// the process umask becomes 0077 and the data dir is made 0700 with its files 0600.
    pub async fn new(config: Config, libgo: Arc<LibGo>) -> Result<Server, StartError> {
        config.validate().map_err(|e| StartError(e.to_string()))?;
        private_files();
        return_large_buffers();
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StartError(format!("cannot create {}: {e}", config.data_dir.display())))?;
        restrict(&config.data_dir)?;
        let db = Db::connect(&config.database_url())
            .await
            .map_err(|e| StartError(format!("database: {e}")))?;
        restrict(&config.data_dir)?;
        let secret = match &config.jwt_secret {
            Some(s) => s.0.clone(),
            None => db
                .setting_or_insert("jwt_secret", &random_hex(32))
                .await
                .map_err(|e| StartError(format!("database: {e}")))?,
        };
        if secret.len() < 32 {
            return Err(StartError(
                "the JWT secret needs at least 32 characters".into(),
            ));
        }
        let mut generated = None;
        let users = db
            .user_count()
            .await
            .map_err(|e| StartError(format!("database: {e}")))?;
        if users == 0 {
            let password = match &config.admin_password {
                Some(p) => p.0.clone(),
                None => {
                    let p = random_hex(12);
                    generated = Some(p.clone());
                    p
                }
            };
            libgo_core::validate::name("admin user", &config.admin_user)
                .map_err(|e| StartError(e.to_string()))?;
            let hash = hash_password(password)
                .await
                .map_err(|e| StartError(format!("{e:?}")))?;
            db.user_insert(&config.admin_user, &hash, Role::Admin.as_str(), Scope::All)
                .await
                .map_err(|e| StartError(format!("database: {e}")))?;
            tracing::info!(user = %config.admin_user, "created the first administrator");
        }
        let (events_tx, _) = broadcast::channel(1024);
        let tasks = TaskManager::new(db.clone(), events_tx.clone(), config.tasks_per_user);
        tasks
            .recover()
            .await
            .map_err(|e| StartError(format!("database: {e}")))?;
        libgo.set_address_allocator(Arc::new(crate::addresses::DbAllocator::new(db.clone())));
        let state = Arc::new(AppState {
            libgo,
            tokens: Tokens::new(
                secret.as_bytes(),
                Duration::from_secs(config.token_ttl_secs),
            ),
            login_limiter: LoginLimiter::new(
                config.login_max_failures,
                config.login_client_max_failures,
                Duration::from_secs(config.login_window_secs),
            ),
            password_slots: tokio::sync::Semaphore::new(match config.login_concurrency {
                0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
                n => n,
            }),
            sockets: Mutex::new(std::collections::HashMap::new()),
            request_slots: tokio::sync::Semaphore::new(config.max_concurrent_requests),
            unauthenticated: Mutex::new(crate::state::UnauthenticatedFailures {
                count: 0,
                last_summary: None,
            }),
            rate_limiter: RateLimiter::per_minute(config.rate_limit_per_minute),
            db,
            tasks,
            events: events_tx,
            metrics: Metrics::new(),
            pending: Mutex::new(Vec::new()),
            health_cache: tokio::sync::Mutex::new(None),
            health_generation: std::sync::atomic::AtomicU64::new(0),
            started: Instant::now(),
            shutdown: CancellationToken::new(),
            hosts_busy: Mutex::new(Default::default()),
            webhook_wake: tokio::sync::Notify::new(),
            alert_pending: Default::default(),
            history: crate::history::StatsHistory::new(
                Duration::from_secs(config.stats_history_full_secs),
                Duration::from_secs(config.stats_history_secs),
            ),
            config,
        });
        let router = build_router(state.clone());
        for name in state.libgo.backend_names() {
            events::spawn_pump(state.clone(), name);
        }
        spawn_retention(state.clone());
        crate::webhooks::spawn(state.clone());
        crate::addresses::spawn_reclaimer(state.clone());
        state.tasks.spawn_leases(state.shutdown.clone());
        crate::metrics::spawn_sampler(
            state.clone(),
            Duration::from_secs(state.config.stats_interval_secs),
        );
        Ok(Server {
            state,
            router,
            generated_admin_password: Mutex::new(generated),
        })
    }

    /// The first administrator's password, when the server generated it — returned once.
    pub fn take_generated_admin_password(&self) -> Option<String> {
        self.generated_admin_password
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The complete router.
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// Connects the backends in the background: each is registered as soon as its engine
    /// answers, and retried every `reconnect_secs` until then (shown as down in `/health`).
    pub fn attach_backends(&self, specs: Vec<BackendSpec>) {
        for spec in specs {
            let state = self.state.clone();
            state.set_pending(&spec.name, Some("connecting".into()));
            tokio::spawn(async move {
                let every = Duration::from_secs(state.config.reconnect_secs.max(1));
                loop {
                    match (spec.connect)().await {
                        Ok(backend) => match state.libgo.register(backend) {
                            Ok(()) => {
                                state.set_pending(&spec.name, None);
                                tracing::info!(backend = %spec.name, "backend connected");
                                events::spawn_pump(state.clone(), spec.name.clone());
                                return;
                            }
                            Err(e) => {
                                tracing::error!(backend = %spec.name, error = %e, "cannot register backend");
                                state.set_pending(&spec.name, Some(e.to_string()));
                                return;
                            }
                        },
                        Err(e) if e.kind() == libgo_core::ErrorKind::Unavailable => {
                            tracing::warn!(backend = %spec.name, error = %e, "backend unavailable; will retry");
                            state.set_pending(&spec.name, Some(e.to_string()));
                        }
                        // A wrong setting or an engine this build lacks: trying again
                        // cannot help.
                        Err(e) => {
                            tracing::error!(backend = %spec.name, error = %e, "cannot connect backend");
                            state.set_pending(&spec.name, Some(e.to_string()));
                            return;
                        }
                    }
                    tokio::select! {
                        _ = state.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                }
            });
        }
    }

    /// Connects the hosts and pools stored in the database (added through
    /// `POST /api/v1/hosts` on this or another replica) and keeps following the database
    /// (see [`crate::hosts_sync`]); watches the hosts' engines. Each host is known at once
    /// (its engines read as down), and each engine joins as soon as it answers.
    pub async fn attach_hosts(&self) -> Result<(), sqlx::Error> {
        events::spawn_host_watch(self.state.clone());
        crate::hosts_sync::sync_once(&self.state).await?;
        crate::hosts_sync::spawn(self.state.clone());
        Ok(())
    }

    /// Serves on `listener` until `signal` completes, then stops taking connections, ends
    /// WebSockets, marks running tasks as interrupted and lets requests in flight finish.
    ///
    /// A client has `header_read_timeout_secs` to send a request's headers (a connection
    /// that trickles them is closed): hyper's own accept loop, because `axum::serve` sets
    /// no timer and so no such timeout.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
        use hyper_util::server::conn::auto::Builder;
        use tower::ServiceExt;

        let state = self.state.clone();
        // HTTP/1.1 only, as before: the header timeout is an HTTP/1 setting.
        let mut builder = Builder::new(TokioExecutor::new()).http1_only();
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(
                state.config.header_read_timeout_secs.max(1),
            ));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut signal = std::pin::pin!(signal);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut signal => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let app =
                self.router
                    .clone()
                    .map_request(move |mut req: Request<hyper::body::Incoming>| {
                        req.extensions_mut()
                            .insert(axum::extract::ConnectInfo(peer));
                        req.map(axum::body::Body::new)
                    });
            let conn = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    hyper_util::service::TowerToHyperService::new(app),
                )
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::trace!(error = %e, "connection ended");
                }
            });
        }
        drop(listener);
        tracing::info!("shutting down");
        state.shutdown.cancel();
        state.tasks.interrupt_all(Duration::from_secs(5)).await;
        graceful.shutdown().await;
        Ok(())
    }
}

/// Deletes expired sessions and old audit records and tasks, at start and hourly.
fn spawn_retention(state: Arc<AppState>) {
    tokio::spawn(async move {
        let day_ms = |d: u64| i64::try_from(d.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
        let rows = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        loop {
            let c = &state.config;
            match state
                .db
                .purge(
                    day_ms(c.audit_retention_days),
                    rows(c.audit_max_rows),
                    day_ms(c.task_retention_days),
                    rows(c.task_max_rows),
                )
                .await
            {
                Ok(n) if n > 0 => tracing::info!(rows = n, "retention: deleted old records"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "retention: cannot delete old records"),
            }
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
        }
    });
}

/// Files the process creates from now on are readable by their owner only.
fn private_files() {
    // SAFETY: umask(2) only swaps the process's file mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Large buffers go back to the system when freed. glibc raises its mmap threshold after
/// the first large free, so argon2's 19 MiB per password check and exec outputs would
/// otherwise stay in the heap (and one arena per thread): RSS only grows under a login
/// flood. Fixing the threshold at 1 MiB and capping arenas keeps RSS near what is in use.
fn return_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters; bad values are refused.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// The data dir 0700 and every file directly in it (database, WAL, exports) 0600.
fn restrict(dir: &std::path::Path) -> Result<(), StartError> {
    use std::os::unix::fs::PermissionsExt;
    let set = |p: &std::path::Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| StartError(format!("cannot restrict {}: {e}", p.display())))
    };
    set(dir, 0o700)?;
    let entries = std::fs::read_dir(dir)
        .map_err(|e| StartError(format!("cannot read {}: {e}", dir.display())))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| StartError(format!("cannot read {}: {e}", path.display())))?;
        if meta.is_dir() {
            set(&path, 0o700)?;
        } else if meta.is_file() {
            set(&path, 0o600)?;
        }
    }
    Ok(())
}

/// The router with every layer.
///
/// The OpenAPI document is kept only as the JSON `/openapi.json` serves: the document's own
/// structure (a few MiB of strings) is dropped once the access table is read from it.
pub fn build_router(state: Arc<AppState>) -> axum::Router {
    let (api_router, mut api) = OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .merge(routes::router())
        .split_for_parts();
    crate::openapi::finish(&mut api);
    api.info.version = env!("CARGO_PKG_VERSION").to_string();
    let openapi_json = match serde_json::to_vec(&api) {
        Ok(json) => axum::body::Bytes::from(json),
        Err(e) => {
            // Not reachable for a document of strings and maps; the route then says so.
            tracing::error!(error = %e, "the OpenAPI document could not be serialized");
            axum::body::Bytes::new()
        }
    };
    let access = Arc::new(crate::auth::AccessTable::from_openapi(&api));
    crate::auth::share_access_table(&access);
    drop(api);
    for op in access.undeclared() {
        tracing::error!(operation = %op, "no access declared: every request to it is refused");
    }
    let api_router = api_router
        .route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), access),
            crate::auth::authorize,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::deadline,
        ))
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes));

    let request_id = HeaderName::from_static(REQUEST_ID);
    axum::Router::new()
        .merge(api_router)
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let json = openapi_json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], json) }
            }),
        )
        .merge(SwaggerUi::new("/swagger").config(utoipa_swagger_ui::Config::from("/openapi.json")))
        // The web console (and the 404 for everything else); compressed, unlike the API,
        // whose streams must not wait in an encoder.
        .fallback(axum::handler::Handler::layer(
            middleware::not_found,
            tower_http::compression::CompressionLayer::new(),
        ))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                        let id = req
                            .headers()
                            .get(REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
                    })
                    .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(CatchPanicLayer::new())
                .layer(axum::middleware::from_fn(middleware::json_errors))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    middleware::observe,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    crate::ratelimit::limit,
                )),
        )
        .with_state(state)
}
