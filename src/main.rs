//! The `flashsql` command line: serve a data directory over the PostgreSQL protocol, or
//! generate a synthetic flash-sale world into one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use flashsql_datasets::Scale;
use flashsql_engine::{Engine, EngineConfig, Store};
use flashsql_sql::{Server, ServerConfig};
use tracing::info;

/// mimalloc keeps freed memory for reuse: with the system allocator, every large tensor freed
/// in a training step went back to the OS and came back as page faults, which made an epoch
/// 3.4× slower (see benches/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its position in the v2 `mi_option_e`; the Rust
/// bindings name no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory stays committed for a second before it is returned to the OS (mimalloc's
/// default is 10 ms): a training step frees and reallocates the same tensors every few
/// milliseconds, and re-committing them cost 15 % of an epoch in page faults and zeroing.
/// An idle server still gives its memory back after a second.
fn keep_freed_memory_for_a_second() {
    // SAFETY: sets a plain integer option of the allocator; any value is valid.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
}

#[derive(Parser)]
#[command(
    name = "flashsql",
    version,
    about = "Flash-sale optimisation in SQL: Apache DataFusion served over the PostgreSQL wire protocol",
    long_about = "flashsql serves a data directory of Parquet tables over the PostgreSQL wire \
                  protocol. Without a subcommand it runs `serve`: on first start with an empty \
                  data directory it generates the synthetic flash-sale world (users, items, \
                  events, campaigns, exposures and the ground truth in schema `truth`) and then \
                  serves it. Connect with: psql -h 127.0.0.1 -p 5433 -U flashsql flashsql"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the data directory over the PostgreSQL protocol (the default).
    Serve(ServeArgs),
    /// Generate the synthetic flash-sale world into a new data directory.
    Generate(GenerateArgs),
    /// Load a public e-commerce log (taobao, rees46, obd, hillstrom) or any CSV/Parquet file
    /// into a new table of a data directory (the server must not be running on it; from a
    /// running server use `SELECT * FROM load_file(...)` instead).
    Load(LoadArgs),
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Data directory: Parquet tables and the catalog. Created and filled with the generated
    /// world on first start.
    #[arg(long, env = "FLASHSQL_DATA_DIR", default_value = "./flashsql-data")]
    data_dir: PathBuf,
    /// Address to listen on. A non-loopback address requires a password.
    #[arg(long, env = "FLASHSQL_LISTEN", default_value = "127.0.0.1:5433")]
    listen: SocketAddr,
    /// Size of the world generated into an empty data directory: tiny, small, medium, large.
    #[arg(long, env = "FLASHSQL_SCALE", default_value = "small")]
    scale: Scale,
    /// Seed of the world generated into an empty data directory.
    #[arg(long, env = "FLASHSQL_SEED", default_value_t = 42)]
    seed: u64,
    /// File holding the password of user `flashsql`; clients then authenticate with
    /// SCRAM-SHA-256. (Or set FLASHSQL_PASSWORD.)
    #[arg(long, env = "FLASHSQL_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    /// File listing further users, one `name:role:password` per line, role `read_write`
    /// or `read_only` (refused every write with SQLSTATE 42501). Clients then
    /// authenticate with SCRAM-SHA-256.
    #[arg(long, env = "FLASHSQL_USERS_FILE")]
    users_file: Option<PathBuf>,
    /// Memory for query execution (sorts, joins, aggregates) in MiB.
    #[arg(long, env = "FLASHSQL_MEMORY_MB", default_value_t = 8192)]
    memory_mb: usize,
    /// Memory in MiB for large tables held because prepared point lookups read them
    /// (besides 64 MiB of small tables); 0 holds none.
    #[arg(long, env = "FLASHSQL_LOOKUP_MEMORY_MB", default_value_t = 512)]
    lookup_memory_mb: u64,
    /// Do not generate a world into an empty data directory.
    #[arg(long)]
    no_seed: bool,
    /// Where models train unless a call says otherwise: auto (a CUDA GPU when this binary
    /// is built with CUDA and one answers, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, env = "FLASHSQL_DEVICE", default_value = "auto")]
    device: String,
    /// Connections served at once; more are refused (SQLSTATE 53300).
    #[arg(long, env = "FLASHSQL_MAX_CONNECTIONS", default_value_t = flashsql_sql::server::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Seconds a client has to finish connecting and logging in (PostgreSQL's
    /// `authentication_timeout`); a socket that stays silent longer is closed.
    #[arg(long, env = "FLASHSQL_AUTHENTICATION_TIMEOUT", default_value_t = 60)]
    authentication_timeout: u64,
    /// A directory whose files clients may read with CREATE EXTERNAL TABLE … LOCATION (and
    /// write with COPY … TO a file). Repeat for several; the data directory's import/ is
    /// always allowed, nothing else is by default.
    #[arg(
        long = "allow-path",
        env = "FLASHSQL_ALLOW_PATHS",
        value_delimiter = ':'
    )]
    allow_paths: Vec<PathBuf>,
    /// TLS certificate chain (PEM). With --tls-key, clients can connect with sslmode=require
    /// or verify-full; on a non-loopback address, unencrypted logins are then refused.
    #[arg(long, env = "FLASHSQL_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for --tls-cert.
    #[arg(long, env = "FLASHSQL_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Accept unencrypted connections (and passwords) on a non-loopback address.
    #[arg(long)]
    allow_insecure: bool,
    /// Threads serving connections: the wire protocol, results' encoding, prepared point
    /// lookups answered from memory. Statements plan and run on a separate pool of one
    /// thread per core. Default: half the cores, at least one.
    #[arg(long, env = "FLASHSQL_CONNECTION_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    connection_threads: Option<u16>,
}

/// Connection threads by default: half the cores, at least one. On two cores, one thread
/// beside the two of the execution pool kept prepared point lookups at 32 clients to a p99
/// of 1.4–2.1 ms, against 2.5–3.5 ms with two, at the same throughput (benches/RESULTS.md):
/// fewer threads than cores leaves the cores to the statements and the clients.
fn default_connection_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

#[derive(Args)]
struct GenerateArgs {
    /// tiny, small, medium or large.
    #[arg(long, default_value = "small")]
    scale: Scale,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// New data directory to write (must not exist or be empty); serve it with
    /// `flashsql serve --data-dir DIR`.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct LoadArgs {
    /// taobao, rees46, obd, hillstrom, csv or parquet (see docs/loading.md).
    format: String,
    /// The file (or, for parquet, a folder of files) to load.
    path: PathBuf,
    /// The new table; by default the file's name without its extension.
    #[arg(long)]
    table: Option<String>,
    /// The table's schema (must exist).
    #[arg(long, default_value = "public")]
    schema: String,
    /// Append to an existing table with the same columns (e.g. the next day's log) instead
    /// of creating a new one; still all or nothing.
    #[arg(long)]
    append: bool,
    /// Data directory to load into (created empty if it does not exist).
    #[arg(long, env = "FLASHSQL_DATA_DIR", default_value = "./flashsql-data")]
    data_dir: PathBuf,
    /// Memory for the load in MiB: a file larger than this streams through it.
    #[arg(long, env = "FLASHSQL_MEMORY_MB", default_value_t = 1024)]
    memory_mb: usize,
}

async fn load(args: LoadArgs) -> Result<()> {
    let source: flashsql_engine::load::Source = args.format.parse()?;
    let table = match args.table {
        Some(t) => t,
        None => flashsql_engine::load::default_table_name(&args.path)
            .context("name the table with --table")?,
    };
    let mut config = EngineConfig::new(&args.data_dir);
    config.seed_world = None;
    config.memory_limit = args.memory_mb << 20;
    let engine = Engine::open(config)
        .await
        .with_context(|| format!("opening {}", args.data_dir.display()))?;
    let session = engine.new_session()?;
    let target = flashsql_engine::load::Target {
        schema: args.schema.clone(),
        table: table.clone(),
        append: args.append,
    };
    let t0 = Instant::now();
    let progress = tokio::spawn(report_progress(args.data_dir.join("tables"), t0));
    let loaded = flashsql_engine::load::load(&session, source, &args.path, &target).await;
    progress.abort();
    let rows = loaded?;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "loaded {rows} rows into {}.{table} in {secs:.1} s ({:.0} rows/s)",
        args.schema,
        rows as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// Every 10 s of a long load, a line on stderr with the Parquet written so far (the files
/// still being written carry the storage's temporary suffix until they are complete).
async fn report_progress(tables: PathBuf, t0: Instant) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    tick.tick().await;
    loop {
        tick.tick().await;
        let written: u64 = std::fs::read_dir(&tables)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|dir| {
                std::fs::read_dir(dir.path())
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .filter(|f| {
                f.file_name()
                    .to_string_lossy()
                    .ends_with(flashsql_engine::storage::TMP_SUFFIX)
            })
            .filter_map(|f| f.metadata().ok())
            .map(|m| m.len())
            .sum();
        eprintln!(
            "loading: {:.0} s, {:.0} MiB of Parquet written",
            t0.elapsed().as_secs_f64(),
            written as f64 / f64::from(1 << 20)
        );
    }
}

fn password(args: &ServeArgs) -> Result<Option<String>> {
    if let Some(path) = &args.password_file {
        let p = std::fs::read_to_string(path)
            .with_context(|| format!("reading password file {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the password file can be read by other users: chmod 600 it"
                );
            }
        }
        let p = p.trim_end_matches(['\n', '\r']).to_string();
        if p.is_empty() {
            bail!("password file {} is empty", path.display());
        }
        return Ok(Some(p));
    }
    Ok(std::env::var("FLASHSQL_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty()))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!("SIGINT received"),
        _ = term => info!("SIGTERM received"),
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let t0 = Instant::now();
    let password = password(&args)?;
    let users = match &args.users_file {
        Some(path) => flashsql_sql::users::read_file(path)?,
        None => Vec::new(),
    };
    let asks_password = password.is_some() || !users.is_empty();
    let mut config = EngineConfig::new(&args.data_dir);
    config.seed_world = (!args.no_seed).then_some((args.scale, args.seed));
    config.memory_limit = args.memory_mb << 20;
    config.lookup_memory = args.lookup_memory_mb << 20;
    config.allow_paths = args.allow_paths.clone();
    config.device = args
        .device
        .parse()
        .map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    let engine = Arc::new(
        Engine::open(config)
            .await
            .with_context(|| format!("opening data directory {}", args.data_dir.display()))?,
    );
    let server = Server::bind(
        engine,
        ServerConfig {
            listen: args.listen,
            password,
            users,
            max_connections: args.max_connections,
            authentication_timeout: std::time::Duration::from_secs(
                args.authentication_timeout.max(1),
            ),
            tls: match (&args.tls_cert, &args.tls_key) {
                (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                (None, None) => None,
                _ => bail!("--tls-cert and --tls-key go together"),
            },
            allow_insecure: args.allow_insecure,
        },
    )
    .await?;
    let addr = server.local_addr()?;
    info!(seconds = t0.elapsed().as_secs_f64(), %addr, "ready");
    println!(
        "flashsql {} is ready on {addr} (data: {})\n  connect: psql -h {} -p {} -U flashsql flashsql{}",
        env!("CARGO_PKG_VERSION"),
        args.data_dir.display(),
        addr.ip(),
        addr.port(),
        if asks_password {
            "   (password required)"
        } else {
            ""
        }
    );
    server.serve(shutdown_signal()).await?;
    info!("stopped");
    Ok(())
}

fn generate(args: GenerateArgs) -> Result<()> {
    if args.out.exists()
        && std::fs::read_dir(&args.out)
            .with_context(|| format!("reading {}", args.out.display()))?
            .next()
            .is_some()
    {
        bail!("{} exists and is not empty", args.out.display());
    }
    let t0 = Instant::now();
    let dataset = flashsql_datasets::generate(args.scale, args.seed)?;
    let generated = t0.elapsed();
    let store = Store::open(&args.out)?;
    store.load_dataset(&dataset)?;
    for t in &dataset.tables {
        println!("{:>10} rows  {}.{}", t.num_rows(), t.schema, t.name);
    }
    println!(
        "generated in {:.2} s, written in {:.2} s to {}",
        generated.as_secs_f64(),
        (t0.elapsed() - generated).as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

/// Files and folders the server creates (tables, catalog, models) are readable by its own
/// user only, like PostgreSQL's data directory.
fn private_files() {
    // SAFETY: sets the process's file-creation mask; no memory is involved.
    unsafe { libc::umask(0o077) };
}

fn main() -> Result<()> {
    keep_freed_memory_for_a_second();
    private_files();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // A panic is a bug, but one in a connection's task ends only that connection: log it on
    // one line, without a backtrace in the server log unless RUST_BACKTRACE asks for one.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        // Arrow checks the 2 GiB limit of a string or list array's offsets by panicking
        // before it allocates (a large constant repeated for every row of a batch, say);
        // the statement's task catches it and the statement fails alone with 54000. It is a
        // limit, not a fault: say so, without the alarm.
        if message == "offset overflow" && location.contains("arrow-buffer") {
            tracing::warn!(
                %location,
                "a result exceeded Arrow's 2 GiB per-array limit; the statement fails with 54000"
            );
            return;
        }
        tracing::error!(%location, %message, "panic");
        if std::env::var_os("RUST_BACKTRACE").is_some() {
            tracing::error!("{}", std::backtrace::Backtrace::force_capture());
        }
    }));
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    let serving = match &cli.command {
        Some(Command::Serve(s)) => Some(s),
        None => Some(&cli.serve),
        _ => None,
    };
    if let Some(serve) = serving {
        let threads = serve
            .connection_threads
            .map_or_else(default_connection_threads, usize::from);
        runtime.worker_threads(threads);
    }
    let runtime = runtime
        .thread_stack_size(flashsql_engine::executor::THREAD_STACK_BYTES)
        .enable_all()
        .build()?;
    match cli.command {
        Some(Command::Generate(g)) => generate(g),
        Some(Command::Load(l)) => runtime.block_on(load(l)),
        Some(Command::Serve(s)) => runtime.block_on(serve(s)),
        None => runtime.block_on(serve(cli.serve)),
    }
}
