//! Argument definitions and dispatch. Output conventions follow docker's CLI;
//! errors are one line on stderr and a non-zero exit code.

mod archive;
mod commit;
mod containers;
mod format;
mod output;
mod progress;
mod push;

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
pub(crate) struct Cli {
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

    /// Run new containers in a user namespace: container root is the first
    /// id of USER's (and GROUP's) range in /etc/subuid and /etc/subgid
    #[arg(long, global = true, env = "MOCKER_USERNS_REMAP", value_name = "USER[:GROUP]")]
    userns_remap: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(push::PushArgs),
    /// Create and run a new container from an image
    Run(Box<containers::RunArgs>),
    /// Create a new container
    Create(Box<containers::CreateArgs>),
    /// Start one or more stopped containers
    Start(containers::StartArgs),
    /// List containers
    Ps(containers::PsArgs),
    /// Stop one or more running containers
    Stop(containers::StopArgs),
    /// Kill one or more running containers
    Kill(containers::KillArgs),
    /// Remove one or more containers
    Rm(containers::RmArgs),
    /// Fetch the logs of a container
    Logs(containers::LogsArgs),
    /// Run a command in a running container
    Exec(containers::ExecArgs),
    /// Block until containers stop, then print their exit codes
    Wait(containers::ContainersArgs),
    /// Export a container's filesystem as a tar archive
    Export(containers::ExportArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(commit::DiffArgs),
    /// Create a new image from a container's changes
    Commit(commit::CommitArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// List images
    Images(ImagesArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag(TagArgs),
    /// Show low-level information on containers or images as JSON
    Inspect(InspectArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage the storage root
    #[command(subcommand)]
    System(SystemCommand),
    /// Log in to a registry (stores credentials in docker's config.json)
    Login(LoginArgs),
    /// Show the history of an image
    History(archive::HistoryArgs),
    /// Save one or more images to a tar archive
    Save(archive::SaveArgs),
    /// Load images from a tar archive
    Load(archive::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(archive::ImportArgs),
    /// Log out from a registry
    Logout(LogoutArgs),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(push::PushArgs),
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
    /// Show the history of an image
    History(archive::HistoryArgs),
    /// Save one or more images to a tar archive
    Save(archive::SaveArgs),
    /// Load images from a tar archive
    Load(archive::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(archive::ImportArgs),
}

#[derive(Subcommand)]
enum ContainerCommand {
    /// Create and run a new container from an image
    Run(Box<containers::RunArgs>),
    /// Create a new container
    Create(Box<containers::CreateArgs>),
    /// Start one or more stopped containers
    Start(containers::StartArgs),
    /// List containers
    #[command(visible_aliases = ["ps", "list"])]
    Ls(containers::PsArgs),
    /// Stop one or more running containers
    Stop(containers::StopArgs),
    /// Kill one or more running containers
    Kill(containers::KillArgs),
    /// Remove one or more containers
    #[command(visible_alias = "remove")]
    Rm(containers::RmArgs),
    /// Fetch the logs of a container
    Logs(containers::LogsArgs),
    /// Run a command in a running container
    Exec(containers::ExecArgs),
    /// Block until containers stop, then print their exit codes
    Wait(containers::ContainersArgs),
    /// Export a container's filesystem as a tar archive
    Export(containers::ExportArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(commit::DiffArgs),
    /// Create a new image from a container's changes
    Commit(commit::CommitArgs),
    /// Show low-level information on containers as JSON
    Inspect(containers::ContainersArgs),
    /// Remove all stopped containers
    Prune(containers::PruneArgs),
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
    /// Filter output by condition (dangling=true|false, reference=PATTERN)
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// Format output: table, json, or a template such as
    /// 'table {{.Repository}}\t{{.Tag}}'
    #[arg(long, default_value = "table")]
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
    /// Containers or images, by name or ID
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

/// docker's exit code for a command line it cannot parse, and for its own failures.
const EXIT_USAGE: i32 = 125;

pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {}", one_line(&e));
            match e.downcast_ref::<mocker::Error>() {
                Some(mocker::Error::Interrupted) => EXIT_INTERRUPTED,
                _ => 1,
            }
        }
    }
}

/// Help and version print as clap does; a bad command line is one line and
/// docker's 125, not a page of usage.
fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind::*;
    if matches!(
        e.kind(),
        DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let rendered = e.to_string();
    let message: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    eprintln!("Error: {message} (see `mocker --help`)");
    EXIT_USAGE
}

/// An error and its causes on one line, each cause once: an error's own
/// message often already ends with its source's.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
    }
    line
}

fn open(cli: &Cli) -> Result<Mocker> {
    Ok(Mocker::open(&cli.root)?)
}

fn dispatch(cli: Cli) -> Result<i32> {
    match &cli.command {
        // These touch only docker's config.json: a user who cannot reach the
        // storage root may still log in.
        Command::Login(a) => login(&cli, a),
        Command::Logout(a) => logout(a),
        _ => dispatch_stored(&cli, &open(&cli)?),
    }
}

fn dispatch_stored(cli: &Cli, mocker: &Mocker) -> Result<i32> {
    match &cli.command {
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => pull(cli, mocker, a),
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => push::push(mocker, &cli.insecure_registries, a),
        Command::Run(a) | Command::Container(ContainerCommand::Run(a)) => containers::run(mocker, cli, a),
        Command::Create(a) | Command::Container(ContainerCommand::Create(a)) => containers::create(mocker, cli, a),
        Command::Start(a) | Command::Container(ContainerCommand::Start(a)) => containers::start(mocker, a),
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => containers::ps(mocker, a),
        Command::Stop(a) | Command::Container(ContainerCommand::Stop(a)) => containers::stop(mocker, a),
        Command::Kill(a) | Command::Container(ContainerCommand::Kill(a)) => containers::kill(mocker, a),
        Command::Rm(a) | Command::Container(ContainerCommand::Rm(a)) => containers::rm(mocker, a),
        Command::Logs(a) | Command::Container(ContainerCommand::Logs(a)) => containers::logs(mocker, a),
        Command::Exec(a) | Command::Container(ContainerCommand::Exec(a)) => containers::exec(mocker, a),
        Command::Wait(a) | Command::Container(ContainerCommand::Wait(a)) => containers::wait(mocker, a),
        Command::Export(a) | Command::Container(ContainerCommand::Export(a)) => containers::export(mocker, a),
        Command::Diff(a) | Command::Container(ContainerCommand::Diff(a)) => commit::diff(mocker, a),
        Command::Commit(a) | Command::Container(ContainerCommand::Commit(a)) => commit::commit(mocker, a),
        Command::Container(ContainerCommand::Inspect(a)) => containers::inspect_containers(mocker, &a.containers),
        Command::Container(ContainerCommand::Prune(a)) => containers::prune(mocker, a),
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => output::images(mocker, a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => rmi(mocker, a),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => {
            mocker::images::tag(mocker, &a.source, &a.target)?;
            Ok(0)
        }
        Command::Inspect(a) => containers::inspect(mocker, &a.images),
        Command::Image(ImageCommand::Inspect(a)) => output::inspect(mocker, &a.images),
        Command::Image(ImageCommand::Export(a)) => export(mocker, a),
        Command::History(a) | Command::Image(ImageCommand::History(a)) => archive::history(mocker, a),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => archive::save(mocker, a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => archive::load(mocker, a),
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => archive::import(mocker, a),
        Command::System(SystemCommand::Df(a)) => output::df(mocker, &a.format),
        Command::System(SystemCommand::Check(a)) => output::check(mocker, a.repair),
        Command::System(SystemCommand::Info) => output::info(mocker),
        Command::System(SystemCommand::Prune(a)) => prune(mocker, a),
        Command::Login(_) | Command::Logout(_) => unreachable!("dispatched without a storage root"),
    }
}

pub(crate) fn runtime() -> mocker::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| mocker::Error::Io {
            context: "starting the async runtime".into(),
            source: e,
        })
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
    // docker prints the whole pull on stdout.
    let progress = progress::for_stream(args.quiet, progress::Stream::Stdout);
    if !args.quiet {
        let from = match reference.tag().filter(|_| reference.digest().is_none()) {
            Some(tag) => format!("{tag}: Pulling from {}", reference.repository()),
            None => format!("Pulling from {}", reference.repository()),
        };
        println!("{from}");
    }
    let pulled = pull_until_interrupted(mocker, &reference, &opts, progress.as_ref())?;
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

/// The pull, on an async runtime of its own, abandoned on Ctrl-C (what it
/// leaves is resumed by the next pull); the progress display is closed
/// either way.
fn pull_until_interrupted(
    mocker: &Mocker,
    reference: &ImageRef,
    opts: &PullOptions,
    progress: &dyn progress::Render,
) -> mocker::Result<mocker::pull::Pulled> {
    let pulled = runtime()?.block_on(async {
        tokio::select! {
            r = mocker::pull::pull(mocker, reference, opts, progress) => r,
            _ = interrupted() => Err(mocker::Error::Interrupted),
        }
    });
    progress.finish();
    pulled
}

/// Resolves on Ctrl-C; never, if the handler cannot be installed.
pub(crate) async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// `run`'s implicit pull of a missing image: docker's progress lines on
/// stderr, nothing on stdout.
fn pull_quietly(cli: &Cli, mocker: &Mocker, reference: &ImageRef) -> mocker::Result<()> {
    let opts = PullOptions {
        platform: None,
        max_concurrent_downloads: 3,
        registry: RegistryOptions {
            insecure_registries: cli.insecure_registries.clone(),
            ..Default::default()
        },
        max_unpacked_bytes: mocker::unpack::Limits::default().max_unpacked_bytes,
    };
    let progress = progress::for_stream(false, progress::Stream::Stderr);
    let pulled = pull_until_interrupted(mocker, reference, &opts, progress.as_ref())?;
    eprintln!("Digest: {}", pulled.image.repo_digest());
    Ok(())
}

fn prune(mocker: &Mocker, args: &PruneArgs) -> Result<i32> {
    if !args.force {
        eprintln!("WARNING! This will remove:");
        eprintln!("  - all {} images", if args.all { "unused" } else { "dangling" });
        eprintln!("  - all blobs, layer snapshots and partial downloads no image uses");
        eprintln!("  - the bridge network, if no container uses it");
        eprint!("\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).context("reading the answer")?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let mocker::system::SystemPruned {
        images: pruned,
        bridge_removed,
    } = mocker::system::prune(mocker, args.all)?;
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
    if bridge_removed {
        println!("Deleted Networks:\nbridge\n");
    }
    println!("Total reclaimed space: {}", mocker::units::human_size(pruned.reclaimed));
    Ok(0)
}

fn export(mocker: &Mocker, args: &ExportArgs) -> Result<i32> {
    write_tar(args.output.as_deref(), |out| {
        mocker::rootfs::export_image(mocker, &args.image, out)
    })?;
    Ok(0)
}

/// A tar archive to `output` (renamed into place once whole: a failed
/// export leaves no partial file) or to stdout (never a terminal).
pub(super) fn write_tar(
    output: Option<&std::path::Path>,
    write: impl FnOnce(&mut dyn std::io::Write) -> mocker::Result<()>,
) -> Result<()> {
    let Some(path) = output else {
        if std::io::stdout().is_terminal() {
            bail!("refusing to write a tar archive to a terminal: use -o FILE or redirect the output");
        }
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        return Ok(write(&mut out)?);
    };
    Ok(mocker::outfile::write(path, write)?)
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
    let path = runtime()?.block_on(mocker::login::login(server, &username, &password, &opts))?;
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
