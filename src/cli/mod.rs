//! Argument definitions and dispatch. Output conventions follow docker's CLI;
//! errors are one line on stderr and a non-zero exit code.

mod output;
mod progress;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use mocker::platform::Platform;
use mocker::pull::PullOptions;
use mocker::reference::ImageRef;
use mocker::registry::RegistryOptions;
use mocker::Mocker;

#[derive(Parser)]
#[command(
    name = "mocker",
    version,
    about = "A small, daemonless container engine",
    propagate_version = true
)]
struct Cli {
    /// Storage root for images, blobs and the index
    #[arg(long, global = true, env = "MOCKER_ROOT", default_value = mocker::DEFAULT_ROOT, value_name = "DIR")]
    root: PathBuf,

    /// Registry (host[:port]) to reach over plain HTTP; loopback always is
    #[arg(
        long = "insecure-registry",
        global = true,
        env = "MOCKER_INSECURE_REGISTRIES",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    insecure_registries: Vec<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download an image from a registry
    Pull(PullArgs),
    /// Run a command in a new container (foreground; needs --rm for now)
    Run(Box<RunArgs>),
    /// List images
    Images(ImagesArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag(TagArgs),
    /// Show low-level information on images as JSON
    Inspect(InspectArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage the storage root
    #[command(subcommand)]
    System(SystemCommand),
    /// Log in to a registry (stores credentials in docker's config.json)
    Login(LoginArgs),
    /// Log out from a registry
    Logout(LogoutArgs),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Download an image from a registry
    Pull(PullArgs),
    /// List images
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(RmiArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag(TagArgs),
    /// Show low-level information on images as JSON
    Inspect(InspectArgs),
    /// Write an image's root filesystem (all layers merged) as a tar archive
    Export(ExportArgs),
}

#[derive(Subcommand)]
enum SystemCommand {
    /// Show disk usage
    Df(DfArgs),
    /// Verify every blob and index entry against the disk
    Check(CheckArgs),
    /// Remove unused data: untagged images (all unused images with -a), and
    /// blobs, snapshots and partial downloads nothing uses
    Prune(PruneArgs),
    /// Show where mocker keeps its data and what it holds
    Info,
}

#[derive(Args)]
struct PullArgs {
    /// Image reference, e.g. busybox, 127.0.0.1:5000/app:v1, app@sha256:…
    reference: String,
    /// Suppress progress output; print only the image name
    #[arg(short, long)]
    quiet: bool,
    /// Platform to pull from a multi-platform image (os/arch[/variant])
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    /// Maximum number of layers downloaded at once
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_downloads: u16,
    /// Seconds to wait for a registry connection before giving up
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    connect_timeout: u64,
    /// Refuse a layer whose unpacked size exceeds this many bytes
    #[arg(long, value_name = "BYTES", default_value_t = mocker::unpack::Limits::default().max_unpacked_bytes)]
    max_layer_size: u64,
}

#[derive(Args)]
struct RunArgs {
    /// Remove the container when it exits (required: keeping containers comes later)
    #[arg(long)]
    rm: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass ours on)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// User to run as: uid[:gid]
    #[arg(short, long, value_name = "UID[:GID]")]
    user: Option<String>,
    /// Container host name (default: the short container id)
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Override the image's entrypoint
    #[arg(long, value_name = "CMD")]
    entrypoint: Option<String>,
    /// Add a capability (e.g. NET_ADMIN, or ALL)
    #[arg(long, value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop a capability (e.g. CHOWN, or ALL)
    #[arg(long, value_name = "CAP")]
    cap_drop: Vec<String>,
    /// Every capability, no masked paths, no no_new_privs
    #[arg(long)]
    privileged: bool,
    /// Memory limit (e.g. 64m, 1g)
    #[arg(short, long, value_name = "BYTES")]
    memory: Option<String>,
    /// Memory plus swap limit (-1: unlimited swap)
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Number of CPUs (e.g. 0.5)
    #[arg(long, value_name = "N")]
    cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long, value_name = "N")]
    cpu_shares: Option<u64>,
    /// Maximum number of processes (-1: unlimited)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Bind mount a host path: HOST:CONTAINER[:ro]
    #[arg(short, long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    volume: Vec<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    read_only: bool,
    /// Network: none (loopback only) or host
    #[arg(long, value_name = "NETWORK", default_value = "none")]
    network: String,
    image: String,
    /// Command and arguments (replace the image's Cmd)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
struct ImagesArgs {
    /// Only show images of this repository[:tag]
    repository: Option<String>,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Output format: table or json (one object per line)
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
}

#[derive(Args)]
struct RmiArgs {
    /// Images to remove, by name or ID
    #[arg(required = true)]
    images: Vec<String>,
    /// Force removal: an image ID removes the image with all its tags
    #[arg(short, long)]
    force: bool,
}

#[derive(Args)]
struct TagArgs {
    source: String,
    target: String,
}

#[derive(Args)]
struct InspectArgs {
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
struct ExportArgs {
    image: String,
    /// Write to a file instead of standard output
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct DfArgs {
    /// Output format: table or json
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
}

#[derive(Args)]
struct CheckArgs {
    /// Rebuild what can be rebuilt from the blobs and report what was lost
    #[arg(long)]
    repair: bool,
}

#[derive(Args)]
struct PruneArgs {
    /// Remove all unused images, not just untagged ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

#[derive(Args)]
struct LoginArgs {
    /// Registry host[:port] (default: Docker Hub)
    server: Option<String>,
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin)
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Args)]
struct LogoutArgs {
    /// Registry host[:port] (default: Docker Hub)
    server: Option<String>,
}

/// Exit code for an interrupted command, as a shell reports SIGINT.
const EXIT_INTERRUPTED: i32 = 130;

pub fn run() -> i32 {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            match e.downcast_ref::<mocker::Error>() {
                Some(mocker::Error::Interrupted) => EXIT_INTERRUPTED,
                _ => 1,
            }
        }
    }
}

fn open(cli: &Cli) -> Result<Mocker> {
    Ok(Mocker::open(&cli.root)?)
}

fn dispatch(cli: Cli) -> Result<i32> {
    let mocker = open(&cli)?;
    match &cli.command {
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => pull(&cli, &mocker, a),
        Command::Run(a) => run_container(&mocker, a),
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => output::images(&mocker, a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => rmi(&mocker, a),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => {
            mocker::images::tag(&mocker, &a.source, &a.target)?;
            Ok(0)
        }
        Command::Inspect(a) | Command::Image(ImageCommand::Inspect(a)) => output::inspect(&mocker, &a.images),
        Command::Image(ImageCommand::Export(a)) => export(&mocker, a),
        Command::System(SystemCommand::Df(a)) => output::df(&mocker, &a.format),
        Command::System(SystemCommand::Check(a)) => output::check(&mocker, a.repair),
        Command::System(SystemCommand::Info) => output::info(&mocker),
        Command::System(SystemCommand::Prune(a)) => prune(&mocker, a),
        Command::Login(a) => login(&cli, a),
        Command::Logout(a) => logout(a),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn pull(cli: &Cli, mocker: &Mocker, args: &PullArgs) -> Result<i32> {
    // Validate everything local before any network traffic.
    let reference = ImageRef::parse(&args.reference)?;
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    let opts = PullOptions {
        platform,
        max_concurrent_downloads: args.max_concurrent_downloads as usize,
        registry: RegistryOptions {
            insecure_registries: cli.insecure_registries.clone(),
            connect_timeout: Duration::from_secs(args.connect_timeout),
            ..Default::default()
        },
        max_unpacked_bytes: args.max_layer_size,
    };
    let progress = progress::for_terminal(args.quiet, std::io::stderr().is_terminal());
    if !args.quiet {
        let from = match reference.tag().filter(|_| reference.digest().is_none()) {
            Some(tag) => format!("{tag}: Pulling from {}", reference.repository()),
            None => format!("Pulling from {}", reference.repository()),
        };
        eprintln!("{from}");
    }
    let pulled = runtime()?.block_on(async {
        tokio::select! {
            r = mocker::pull::pull(mocker, &reference, &opts, progress.as_ref()) => r,
            _ = interrupted() => Err(mocker::Error::Interrupted),
        }
    });
    progress.finish();
    let pulled = pulled?;
    let shown = mocker::reference::familiar_name(&reference.name()).to_string();
    let shown = match (reference.digest(), reference.tag()) {
        (Some(d), _) => format!("{shown}@{d}"),
        (None, Some(t)) => format!("{shown}:{t}"),
        _ => shown,
    };
    if !args.quiet {
        println!("Digest: {}", pulled.image.repo_digest());
        if pulled.updated {
            println!("Status: Downloaded newer image for {shown}");
        } else {
            println!("Status: Image is up to date for {shown}");
        }
    }
    println!("{}", reference.index_key());
    Ok(0)
}

/// Resolves on Ctrl-C; never, if the handler cannot be installed.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// docker's exit code when the engine itself failed to run the container.
const EXIT_ENGINE_FAILED: i32 = 125;

fn run_container(mocker: &Mocker, args: &RunArgs) -> Result<i32> {
    let bytes = |v: &Option<String>| -> Result<Option<i64>> {
        match v.as_deref() {
            None => Ok(None),
            Some("-1") => Ok(Some(-1)),
            Some(s) => Ok(Some(mocker::runtime::cgroup::parse_bytes(s)?)),
        }
    };
    let limits = match (bytes(&args.memory), bytes(&args.memory_swap)) {
        (Ok(memory), Ok(memory_swap)) => mocker::runtime::cgroup::Limits {
            memory,
            memory_swap,
            cpus: args.cpus,
            cpu_shares: args.cpu_shares,
            pids: args.pids_limit,
        },
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("Error: {e:#}");
            return Ok(EXIT_ENGINE_FAILED);
        }
    };
    let parsed = args
        .volume
        .iter()
        .map(|v| mocker::runtime::init::Volume::parse(v))
        .collect::<std::result::Result<Vec<_>, _>>()
        .and_then(|volumes| Ok((volumes, mocker::runtime::Network::parse(&args.network)?)));
    let (volumes, network) = match parsed {
        Ok(v) => v,
        Err(e) => {
            eprintln!("Error: {e}");
            return Ok(EXIT_ENGINE_FAILED);
        }
    };
    let opts = mocker::runtime::RunOptions {
        volumes,
        network,
        read_only: args.read_only,
        limits,
        image: args.image.clone(),
        overrides: mocker::runtime::Overrides {
            entrypoint: args.entrypoint.clone(),
            cmd: args.command.clone(),
            env: args.env.clone(),
            workdir: args.workdir.clone(),
            user: args.user.clone(),
            hostname: args.hostname.clone(),
            cap_add: args.cap_add.clone(),
            cap_drop: args.cap_drop.clone(),
            privileged: args.privileged,
        },
    };
    if !args.rm {
        eprintln!("Error: keeping containers after they exit is not built yet: use `mocker run --rm`");
        return Ok(EXIT_ENGINE_FAILED);
    }
    match mocker::runtime::run(mocker, &opts) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("Error: {e}");
            Ok(EXIT_ENGINE_FAILED)
        }
    }
}

fn prune(mocker: &Mocker, args: &PruneArgs) -> Result<i32> {
    if !args.force {
        eprintln!("WARNING! This will remove:");
        eprintln!("  - all {} images", if args.all { "unused" } else { "dangling" });
        eprintln!("  - all blobs, layer snapshots and partial downloads no image uses");
        eprint!("\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).context("reading the answer")?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let pruned = mocker::images::prune(mocker, args.all)?;
    if !pruned.removed.is_empty() {
        println!("Deleted Images:");
        for line in &pruned.removed {
            match line {
                mocker::images::Removed::Untagged(name) => println!("untagged: {name}"),
                mocker::images::Removed::Deleted(id) => println!("deleted: {id}"),
            }
        }
        println!();
    }
    println!("Total reclaimed space: {}", mocker::units::human_size(pruned.reclaimed));
    Ok(0)
}

fn export(mocker: &Mocker, args: &ExportArgs) -> Result<i32> {
    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            mocker::rootfs::export_image(mocker, &args.image, std::io::BufWriter::new(file))?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!("refusing to write a tar archive to a terminal: use -o FILE or redirect the output");
            }
            mocker::rootfs::export_image(mocker, &args.image, std::io::BufWriter::new(std::io::stdout().lock()))?;
        }
    }
    Ok(0)
}

fn rmi(mocker: &Mocker, args: &RmiArgs) -> Result<i32> {
    let mut failed = false;
    for image in &args.images {
        match mocker::images::remove(mocker, image, args.force) {
            Ok(lines) => {
                for line in lines {
                    match line {
                        mocker::images::Removed::Untagged(name) => println!("Untagged: {name}"),
                        mocker::images::Removed::Deleted(id) => println!("Deleted: {id}"),
                    }
                }
            }
            Err(e) => {
                // Like docker: report each failure and go on with the rest.
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn registry_for(server: Option<&str>) -> &str {
    server.unwrap_or("docker.io")
}

fn login(cli: &Cli, args: &LoginArgs) -> Result<i32> {
    let server = registry_for(args.server.as_deref())
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let Some(username) = args.username.clone() else {
        bail!("a username is required: use --username");
    };
    let password = match (&args.password, args.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p.clone(),
        (None, true) => {
            let mut p = String::new();
            std::io::stdin()
                .read_to_string(&mut p)
                .context("reading the password from stdin")?;
            p.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("a password is required: use --password-stdin"),
    };
    let opts = RegistryOptions {
        insecure_registries: cli.insecure_registries.clone(),
        ..Default::default()
    };
    let path = runtime()?.block_on(mocker::auth::login(server, &username, &password, &opts))?;
    eprintln!("Credentials stored in {}", path.display());
    println!("Login Succeeded");
    Ok(0)
}

fn logout(args: &LogoutArgs) -> Result<i32> {
    let server = registry_for(args.server.as_deref());
    if mocker::auth::remove_login(server)? {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(0)
}
