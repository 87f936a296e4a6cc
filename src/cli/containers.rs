//! Container commands: create, start, run, ps, stop, kill, rm, logs,
//! inspect, exec, wait, export, prune. Parsing and printing only; the
//! lifecycle is `mocker::container`.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use mocker::container::{self, Attach, Attached, Container, CreateOptions, OnFailedStart, Status};
use mocker::runtime::network::PortMapping;
use mocker::Mocker;

use super::format::Format;

/// docker's exit code when the engine itself failed to run the container.
const EXIT_ENGINE_FAILED: i32 = mocker::runtime::init::EXIT_RUNTIME_FAILED;

#[derive(Args)]
pub struct CreateArgs {
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Log rotation, as docker's json-file: max-size=SIZE, max-file=N
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    log_opt: Vec<String>,
    /// Keep STDIN open (attached with run)
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Run an init as PID 1 that forwards signals and reaps processes
    #[arg(long)]
    init: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass ours on)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long, value_name = "FILE")]
    env_file: Vec<std::path::PathBuf>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// User to run as: name|uid[:group|gid]
    #[arg(short, long, value_name = "USER[:GROUP]")]
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
    /// Every capability, no masked paths, no no_new_privs, no seccomp filter
    #[arg(long)]
    privileged: bool,
    /// Security options: seccomp=unconfined, seccomp=PROFILE.json,
    /// no-new-privileges[=false]
    #[arg(long, value_name = "OPTION")]
    security_opt: Vec<String>,
    /// User namespace: "host" runs in the host's even with --userns-remap
    #[arg(long, value_name = "MODE")]
    userns: Option<String>,
    /// Memory limit (e.g. 64m, 1g)
    #[arg(short, long, value_name = "BYTES", allow_hyphen_values = true)]
    memory: Option<String>,
    /// Memory plus swap limit (-1: unlimited swap)
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Number of CPUs (e.g. 0.5)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long, value_name = "N", allow_hyphen_values = true)]
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
    /// Network: bridge (default), none (loopback only) or host
    #[arg(long, value_name = "NETWORK", default_value = "bridge")]
    network: String,
    /// Publish a container's port: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/udp]
    #[arg(short, long = "publish", value_name = "PORTS")]
    publish: Vec<String>,
    image: String,
    /// Command and arguments (replace the image's Cmd)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
pub struct RunArgs {
    /// Run in the background and print the container ID
    #[arg(short, long)]
    detach: bool,
    #[command(flatten)]
    create: CreateArgs,
}

#[derive(Args)]
pub struct StartArgs {
    /// Attach the container's output (and wait for it to exit)
    #[arg(short, long)]
    attach: bool,
    /// Attach STDIN
    #[arg(short, long)]
    interactive: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Show the N most recently created containers (all states)
    #[arg(short = 'n', long = "last", value_name = "N")]
    last: Option<usize>,
    /// Show the most recently created container (all states)
    #[arg(short, long)]
    latest: bool,
    /// Filter output by condition (id=, name=, status=, exited=, ancestor=)
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// Format output: table, json, or a template such as
    /// 'table {{.ID}}\t{{.Names}}'
    #[arg(long, default_value = "table")]
    format: String,
}

/// `ps` template fields and their headers, in docker's order.
const PS_FIELDS: &super::format::Fields = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Status", "STATUS"),
    ("State", "STATE"),
    ("Ports", "PORTS"),
    ("Names", "NAMES"),
];

#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send (name or number)
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Kill and remove a running container
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end ("all" for every line)
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    container: String,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Keep STDIN open
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Set an environment variable
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// User to run as: name|uid[:group|gid]
    #[arg(short, long)]
    user: Option<String>,
    /// Every capability for the command
    #[arg(long)]
    privileged: bool,
    container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

#[derive(Args)]
pub struct ContainersArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct ExportArgs {
    container: String,
    /// Write to a file instead of standard output
    #[arg(short, long, value_name = "FILE")]
    output: Option<std::path::PathBuf>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

fn create_options(args: &CreateArgs, userns_remap: Option<&str>) -> mocker::Result<CreateOptions> {
    use mocker::runtime::{cgroup, init::Volume, Network, Overrides};
    let bytes = |v: &Option<String>| -> mocker::Result<Option<i64>> {
        match v.as_deref() {
            None => Ok(None),
            Some("-1") => Ok(Some(-1)),
            Some(s) => Ok(Some(cgroup::parse_bytes(s)?)),
        }
    };
    let mut env = Vec::new();
    for file in &args.env_file {
        let contents = std::fs::read_to_string(file).map_err(|source| mocker::Error::Io {
            context: format!("open {}", file.display()),
            source,
        })?;
        env.extend(mocker::runtime::spec::parse_env_file(&contents)?);
    }
    env.extend(args.env.iter().cloned());
    Ok(CreateOptions {
        image: args.image.clone(),
        name: args.name.clone(),
        overrides: Overrides {
            entrypoint: args.entrypoint.clone(),
            cmd: args.command.clone(),
            env,
            workdir: args.workdir.clone(),
            user: args.user.clone(),
            hostname: args.hostname.clone(),
            cap_add: args.cap_add.clone(),
            cap_drop: args.cap_drop.clone(),
            privileged: args.privileged,
        },
        limits: cgroup::Limits {
            memory: bytes(&args.memory)?,
            memory_swap: bytes(&args.memory_swap)?,
            cpus: args.cpus,
            cpu_shares: args.cpu_shares,
            pids: args.pids_limit,
        },
        volumes: args.volume.iter().map(|v| Volume::parse(v)).collect::<Result<_, _>>()?,
        read_only: args.read_only,
        network: Network::parse(&args.network)?,
        ports: args
            .publish
            .iter()
            .map(|p| PortMapping::parse(p))
            .collect::<Result<_, _>>()?,
        init: args.init,
        tty: args.tty,
        open_stdin: args.interactive,
        auto_remove: args.rm,
        log_rotation: container::logs::Rotation::from_log_opts(&args.log_opt)?,
        security: mocker::runtime::security::SecurityOptions::parse(&args.security_opt)?,
        userns: container::userns_mode(args.userns.as_deref(), userns_remap)?,
    })
}

/// Create, pulling the image first if it is not here (as docker run does).
fn create_pulling(mocker: &Mocker, cli: &super::Cli, opts: &CreateOptions) -> Result<Container> {
    Ok(mocker::run::create_pulling(mocker, opts, |reference| {
        eprintln!("Unable to find image '{}' locally", opts.image);
        super::pull_quietly(cli, mocker, reference)
    })?)
}

pub fn create(mocker: &Mocker, cli: &super::Cli, args: &CreateArgs) -> Result<i32> {
    let created = create_options(args, cli.userns_remap.as_deref())
        .map_err(anyhow::Error::from)
        .and_then(|o| create_pulling(mocker, cli, &o));
    match created {
        Ok(c) => {
            println!("{}", c.record.id);
            Ok(0)
        }
        Err(e) => {
            eprintln!("Error: {}", super::one_line(&e));
            Ok(EXIT_ENGINE_FAILED)
        }
    }
}

/// The exit code for an attached start that ended as `attached`.
fn attached_exit(attached: Attached) -> i32 {
    match attached {
        Attached::Exited(code) => code,
        Attached::NotStarted(e) => start_failed(&e),
        Attached::Lost(e) => {
            eprintln!("Error: {e}");
            EXIT_ENGINE_FAILED
        }
    }
}

pub fn run(mocker: &Mocker, cli: &super::Cli, args: &RunArgs) -> Result<i32> {
    // The container joins its cgroup in a few ms: start the kernel's wait now.
    mocker::startup::prepay_cgroup_move_grace_period();
    let opts = match create_options(&args.create, cli.userns_remap.as_deref()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("Error: {e}");
            return Ok(EXIT_ENGINE_FAILED);
        }
    };
    let created = match create_pulling(mocker, cli, &opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: {}", super::one_line(&e));
            return Ok(EXIT_ENGINE_FAILED);
        }
    };
    if args.detach {
        return match container::start_detached(mocker, &created, OnFailedStart::Remove) {
            Ok(_) => {
                println!("{}", created.record.id);
                Ok(0)
            }
            Err(e) => Ok(start_failed(&e)),
        };
    }
    let attached = container::start_attached(mocker, created, opts.open_stdin, opts.tty, OnFailedStart::Remove);
    Ok(attached_exit(attached))
}

/// Report a failed start the way docker does; the exit code to leave with.
fn start_failed(e: &mocker::Error) -> i32 {
    eprintln!("Error: {e}");
    match e {
        mocker::Error::StartFailed { code, .. } => *code,
        _ => EXIT_ENGINE_FAILED,
    }
}

pub fn start(mocker: &Mocker, args: &StartArgs) -> Result<i32> {
    mocker::startup::prepay_cgroup_move_grace_period();
    if args.attach || args.interactive {
        if args.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let c = container::get(mocker, &args.containers[0])?;
        let tty = c.config.as_ref().is_some_and(|c| c.init.tty);
        let attached = container::start_attached(mocker, c, args.interactive, tty, OnFailedStart::Keep);
        return Ok(attached_exit(attached));
    }
    each(&args.containers, |c| {
        container::start(mocker, c, Attach::default())?;
        Ok(c.to_string())
    })
}

/// Apply `f` to every named container, printing what it returns; like
/// docker, go on after a failure and exit 1 at the end.
fn each(names: &[String], mut f: impl FnMut(&str) -> mocker::Result<String>) -> Result<i32> {
    let mut failed = false;
    for name in names {
        match f(name) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

pub fn stop(mocker: &Mocker, args: &StopArgs) -> Result<i32> {
    each(&args.containers, |c| {
        container::stop(mocker, c, Duration::from_secs(args.time))?;
        Ok(c.to_string())
    })
}

fn parse_signal(input: &str) -> Result<nix::sys::signal::Signal> {
    let upper = input.to_ascii_uppercase();
    if let Ok(n) = upper.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).with_context(|| format!("invalid signal: {input}"));
    }
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().map_err(|_| anyhow::anyhow!("invalid signal: {input}"))
}

pub fn kill(mocker: &Mocker, args: &KillArgs) -> Result<i32> {
    let signal = parse_signal(&args.signal)?;
    each(&args.containers, |c| {
        container::kill(mocker, c, signal)?;
        Ok(c.to_string())
    })
}

pub fn rm(mocker: &Mocker, args: &RmArgs) -> Result<i32> {
    each(&args.containers, |c| {
        container::remove(mocker, c, args.force)?;
        Ok(c.to_string())
    })
}

pub fn wait(mocker: &Mocker, args: &ContainersArgs) -> Result<i32> {
    each(&args.containers, |c| Ok(container::wait(mocker, c)?.to_string()))
}

pub fn prune(mocker: &Mocker, args: &PruneArgs) -> Result<i32> {
    if !args.force {
        eprint!("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).context("reading the answer")?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let removed = container::prune(mocker)?;
    if !removed.is_empty() {
        println!("Deleted Containers:");
        for id in &removed {
            println!("{id}");
        }
        println!();
    }
    Ok(0)
}

/// docker's COMMAND column: quoted, truncated to 20 characters with "…".
fn command_column(c: &Container, no_trunc: bool) -> String {
    let args = c
        .config
        .as_ref()
        .map(|c| c.init.process.args.join(" "))
        .unwrap_or_default();
    // Quoted with escapes, as docker's strconv.Quote: a newline or tab in
    // the command must not break the table.
    if no_trunc || args.chars().count() <= 20 {
        format!("{args:?}")
    } else {
        format!("{:?}", format!("{}…", args.chars().take(19).collect::<String>()))
    }
}

fn ports_column(c: &Container) -> String {
    if c.state.status != Status::Running {
        return String::new();
    }
    c.state
        .ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn ps(mocker: &Mocker, args: &PsArgs) -> Result<i32> {
    let format = Format::parse(&args.format, PS_FIELDS)?;
    let containers = ps_selection(mocker, args)?;
    if args.quiet {
        let mut out = std::io::stdout().lock();
        for c in &containers {
            writeln!(out, "{}", ps_id(c, args.no_trunc))?;
        }
        return Ok(0);
    }
    let now = mocker::timestamp::now();
    let rows: Vec<PsRow> = containers.iter().map(|c| PsRow::of(c, args.no_trunc, now)).collect();
    if matches!(format, Format::Table) {
        print_ps_table(&rows);
    } else {
        let objects = rows.iter().map(serde_json::to_value).collect::<Result<Vec<_>, _>>()?;
        format.print(&objects, PS_FIELDS)?;
    }
    Ok(0)
}

/// The containers `ps` lists, newest first.
fn ps_selection(mocker: &Mocker, args: &PsArgs) -> Result<Vec<Container>> {
    let filter = container::Filter::parse(mocker, &args.filter)?;
    // docker: --last and --latest count every state, newest first.
    let last = if args.latest { Some(1) } else { args.last };
    let mut containers = container::list(mocker, args.all || last.is_some() || filter.wants_all())?;
    containers.retain(|c| filter.matches(c));
    if let Some(n) = last {
        containers.truncate(n);
    }
    Ok(containers)
}

fn ps_id(c: &Container, no_trunc: bool) -> String {
    if no_trunc {
        c.record.id.clone()
    } else {
        c.short_id().to_string()
    }
}

/// One container as `ps --format` sees it (the fields of [`PS_FIELDS`]).
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct PsRow {
    #[serde(rename = "ID")]
    id: String,
    image: String,
    command: String,
    created_at: String,
    running_for: String,
    status: String,
    state: &'static str,
    ports: String,
    names: String,
}

impl PsRow {
    fn of(c: &Container, no_trunc: bool, now: mocker::timestamp::Timestamp) -> PsRow {
        PsRow {
            id: ps_id(c, no_trunc),
            image: c.config.as_ref().map(|c| c.image.clone()).unwrap_or_default(),
            command: command_column(c, no_trunc),
            created_at: mocker::timestamp::format(&c.record.created),
            running_for: super::output::ago(c.record.created, now),
            status: c.state.describe(now),
            state: c.state.status.as_str(),
            ports: ports_column(c),
            names: c.record.name.clone(),
        }
    }
}

fn print_ps_table(rows: &[PsRow]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.image.clone(),
                r.command.clone(),
                r.running_for.clone(),
                r.status.clone(),
                r.ports.clone(),
                r.names.clone(),
            ]
        })
        .collect();
    super::output::print_table(
        &[
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ],
        &rows,
    );
}

pub fn logs(mocker: &Mocker, args: &LogsArgs) -> Result<i32> {
    let tail = match args.tail.as_str() {
        "all" => None,
        n => Some(
            n.parse::<usize>()
                .with_context(|| format!("invalid --tail value {n:?}"))?,
        ),
    };
    let opts = container::logs::ReadOptions {
        tail,
        follow: args.follow,
    };
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    container::logs::of_container(mocker, &args.container, &opts, |entry| {
        let out: &mut dyn Write = if entry.stream == "stderr" {
            &mut stderr
        } else {
            &mut stdout
        };
        if args.timestamps {
            write!(out, "{} ", entry.time)?;
        }
        out.write_all(entry.log.as_bytes())?;
        out.flush()
    })?;
    Ok(0)
}

pub fn exec(mocker: &Mocker, args: &ExecArgs) -> Result<i32> {
    mocker::startup::prepay_cgroup_move_grace_period();
    let opts = container::ExecOptions {
        stdin: args.interactive,
        tty: args.tty,
        command: args.command.clone(),
        env: args.env.clone(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        privileged: args.privileged,
    };
    let _raw = container::RawTerminal::enter(args.tty && args.interactive);
    match container::exec(mocker, &args.container, &opts) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("Error: {e}");
            Ok(EXIT_ENGINE_FAILED)
        }
    }
}

pub fn export(mocker: &Mocker, args: &ExportArgs) -> Result<i32> {
    super::write_tar(args.output.as_deref(), |out| {
        container::export(mocker, &args.container, out)
    })?;
    Ok(0)
}

/// docker inspect: containers first, then images, for each name.
pub fn inspect(mocker: &Mocker, names: &[String]) -> Result<i32> {
    inspect_with(mocker, names, |name| match mocker::images::inspect(mocker, name) {
        Err(mocker::Error::NoSuchImage(_)) => Err(container::ContainerError::NoSuchObject { name: name.into() }.into()),
        other => other,
    })
}

/// `container inspect`: containers only.
pub fn inspect_containers(mocker: &Mocker, names: &[String]) -> Result<i32> {
    inspect_with(mocker, names, |name| {
        Err(mocker::Error::NoSuchContainer(name.to_string()))
    })
}

/// Print one JSON array of what each name is; a name that is no container
/// goes to `otherwise`.
fn inspect_with(
    mocker: &Mocker,
    names: &[String],
    otherwise: impl Fn(&str) -> mocker::Result<Vec<serde_json::Value>>,
) -> Result<i32> {
    super::output::print_inspected(names, |name| match container::get(mocker, name) {
        Ok(c) => Ok(vec![container::inspect(mocker, &c)?]),
        Err(mocker::Error::NoSuchContainer(_)) => otherwise(name),
        Err(e) => Err(e),
    })
}
