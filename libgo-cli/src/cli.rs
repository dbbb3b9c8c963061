//! The command line's grammar (clap derive): completions and man pages come from it too.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;

use crate::output::Format;

const EXAMPLES: &str = "\
Examples:
  libgo run busybox --name web -p 8080:80 -e MODE=demo -- sleep 300
  libgo create --vm --template small --name vm1 --memory 512MiB --disk 2GiB
  libgo ls --kind container --format json
  libgo exec web -- cat /etc/hostname
  libgo exec -it web -- sh
  libgo export vm1 --disk-format vmdk -o vm1.vmdk
  libgo logs -f web
  libgo console vm1                  (Ctrl-] detaches)
  libgo remote add lab http://10.0.0.2:8080 && libgo login --remote lab --username admin
";

/// VMs and containers, one command line: the local Docker and libvirt (embedded), or a
/// libgo server (remote).
#[derive(Debug, Parser)]
#[command(name = "libgo", version, after_help = EXAMPLES, propagate_version = true)]
pub struct Cli {
    /// Talk to this remote instead of the current one (`libgo remote list`).
    #[arg(long, global = true, env = "LIBGO_REMOTE", conflicts_with = "local")]
    pub remote: Option<String>,
    /// Use the local engines even when a remote is current.
    #[arg(long, global = true)]
    pub local: bool,
    /// API key for the remote (instead of the stored login).
    #[arg(long, global = true, env = "LIBGO_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// No progress bars or notes, only results and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List instances (VMs and containers).
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one instance.
    Info {
        /// Instance name or id.
        name: String,
    },
    /// Create an instance (started with `--start`, or use `run`).
    Create(CreateArgs),
    /// Create and start an instance.
    Run(CreateArgs),
    /// Start instances.
    Start(Names),
    /// Stop instances: gracefully, then forcibly after the timeout.
    Stop(StopArgs),
    /// Restart instances.
    Restart(StopArgs),
    /// Freeze instances.
    Pause(Names),
    /// Thaw paused instances.
    Resume(Names),
    /// Send a signal to containers, or pull a VM's plug.
    Kill {
        /// Signal (the engine's default when absent).
        #[arg(short, long)]
        signal: Option<String>,
        #[command(flatten)]
        names: Names,
    },
    /// Delete instances.
    #[command(visible_alias = "rm")]
    Delete {
        /// Stop running ones first.
        #[arg(short, long)]
        force: bool,
        #[command(flatten)]
        names: Names,
    },
    /// Run a command in an instance; its stdout, stderr and exit code are passed through.
    Exec(ExecArgs),
    /// Print an instance's log (container output, VM serial console).
    Logs(LogsArgs),
    /// Join the terminal to an instance's console (container TTY, VM serial); Ctrl-] detaches.
    Console {
        /// Instance name or id.
        name: String,
    },
    /// Resource use of instances, refreshed every second on a terminal (all running ones
    /// when no name is given).
    Stats {
        /// Instance names or ids.
        names: Vec<String>,
        /// Print one sample and end.
        #[arg(long)]
        no_stream: bool,
    },
    /// Print instance events as they happen (Ctrl-C ends).
    Events {
        /// Only events of this instance.
        #[arg(long)]
        instance: Option<String>,
        /// Only this kind.
        #[arg(long, value_parser = ["vm", "container"])]
        kind: Option<String>,
        /// Only this backend.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Long operations of a server (pulls, exports, batches).
    #[command(subcommand)]
    Task(TaskCommand),
    /// Users of a server (administrators).
    #[command(subcommand)]
    User(UserCommand),
    /// Groups of users and their instances, on a server (administrators).
    #[command(subcommand)]
    Group(GroupCommand),
    /// Custom roles of a server: sets of the routes' permissions (administrators).
    #[command(subcommand)]
    Role(RoleCommand),
    /// Address pools of a server: addresses handed out to instances from ranges.
    #[command(subcommand, name = "address-pool", visible_alias = "ap")]
    AddressPool(AddressPoolCommand),
    /// API keys of a server.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// The audit log of a server (administrators), newest first.
    Audit {
        /// How many records.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Export an instance's disk (VM) or file system (container) to a file; against a
    /// remote the server writes it and this downloads it.
    Export {
        /// Instance name or id.
        name: String,
        /// The file's format (`--format` is the output format of every command).
        #[arg(long, value_parser = ["qcow2", "vmdk", "vdi", "raw", "ova", "tar", "imagetar"])]
        disk_format: String,
        /// The file to write (it must not exist).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Change an instance: its limits, its name, how it starts by itself.
    Update {
        /// Instance name or id.
        name: String,
        /// CPUs (VM) or CPU limit (container).
        #[arg(long)]
        cpus: Option<u32>,
        /// Memory: `512MiB`, `2GiB`, `1G`.
        #[arg(long, value_parser = parse_bytes)]
        memory: Option<u64>,
        /// A new name (a VM must be shut off).
        #[arg(long = "name", value_name = "NEW_NAME")]
        new_name: Option<String>,
        /// VMs: start with the host.
        #[arg(long)]
        autostart: Option<bool>,
        /// Containers: when Docker restarts it.
        #[arg(long, value_parser = ["no", "always", "unless-stopped", "on-failure"])]
        restart: Option<String>,
        /// VMs: the boot order from the next start, e.g. `cdrom,disk` (disk, cdrom, network).
        #[arg(long, value_delimiter = ',', value_parser = ["disk", "cdrom", "network"])]
        boot: Option<Vec<String>>,
    },
    /// Rename an instance (a VM must be shut off).
    Rename {
        /// Instance name or id.
        name: String,
        /// Its new name.
        new_name: String,
    },
    /// Move an instance to another host: a VM live (or paused with --offline), a container
    /// by a cold move.
    Migrate {
        /// Instance name or id.
        name: String,
        /// The host to move it to.
        #[arg(long)]
        host: String,
        /// Pause a VM for the copy instead of keeping it running.
        #[arg(long)]
        offline: bool,
    },
    /// Hosts: this machine (`local`) and the others a server manages.
    #[command(subcommand)]
    Host(HostCommand),
    /// Every host and compute pool together.
    Zone,
    /// What each backend supports (or the one named): kinds, snapshots, export formats…
    Capabilities {
        /// Only this backend.
        backend: Option<String>,
    },
    /// Snapshots of an instance.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Rebuild an instance from its image (or --image), keeping its configuration: a VM's
    /// root disk (its other disks stay), a container's filesystem.
    Reinstall {
        /// Instance.
        name: String,
        /// The image to rebuild from instead of the one it was made from.
        #[arg(long)]
        image: Option<String>,
    },
    /// Set a user's password inside a VM's guest (through its QEMU guest agent); the
    /// password is read from standard input, never from the command line.
    Passwd {
        /// VM.
        name: String,
        /// The guest's user.
        #[arg(long, default_value = "root")]
        user: String,
        /// What is read is a crypt(3) hash, not the password.
        #[arg(long)]
        crypted: bool,
    },
    /// A VM's disks: list, attach (hot-plug), detach, resize.
    #[command(subcommand)]
    Disk(DiskCommand),
    /// A VM's CD-ROM media: insert, eject.
    #[command(subcommand)]
    Media(MediaCommand),
    /// Images of every backend.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Storage pools.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// VM templates.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Servers this command line can talk to.
    #[command(subcommand)]
    Remote(RemoteCommand),
    /// Log in to a remote; the session token is stored (0600) for later commands.
    Login(LoginArgs),
    /// Print a shell completion script.
    Completion {
        /// The shell.
        shell: Shell,
    },
    /// Write man pages (one per command) into a directory.
    Man {
        /// Where to write them.
        dir: PathBuf,
    },
}

/// Instances to act on.
#[derive(Debug, Args)]
pub struct Names {
    /// Instance names or ids.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only names starting with this.
    pub prefix: Option<String>,
    /// Only this kind.
    #[arg(long, value_parser = ["vm", "container"])]
    pub kind: Option<String>,
    /// Only this state (running, stopped, paused, …).
    #[arg(long)]
    pub state: Option<String>,
    /// Only instances with this label (`key=value`; repeat for all of several).
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Only this backend.
    #[arg(long)]
    pub backend: Option<String>,
    /// Only the instances of this group (their `io.libgo.group` label).
    #[arg(long)]
    pub group: Option<String>,
}

/// `create` and `run`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Image: a container image, or a VM's base disk image.
    pub image: Option<String>,
    /// Name of the new instance.
    #[arg(long)]
    pub name: String,
    /// Make a VM (a container otherwise, unless a template or `--disk` says VM).
    #[arg(long)]
    pub vm: bool,
    /// Backend to create it on.
    #[arg(long)]
    pub backend: Option<String>,
    /// The group it belongs to (a server's; its scoped users' only group by default).
    #[arg(long)]
    pub group: Option<String>,
    /// VM template to start from.
    #[arg(long)]
    pub template: Option<String>,
    /// CPUs (VM) or CPU limit (container).
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Memory: `512MiB`, `2GiB`, `1G`.
    #[arg(long, value_parser = parse_bytes)]
    pub memory: Option<u64>,
    /// A blank disk of this size (repeat for several).
    #[arg(long, value_parser = parse_bytes)]
    pub disk: Vec<u64>,
    /// cloud-init user-data for the VM, from this file.
    #[arg(long, value_name = "FILE")]
    pub cloud_init: Option<PathBuf>,
    /// Boot the VM straight into this kernel (no bootloader).
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<String>,
    /// The initrd for `--kernel`.
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<String>,
    /// The kernel command line for `--kernel`.
    #[arg(long, value_name = "TEXT", requires = "kernel")]
    pub cmdline: Option<String>,
    /// VMs: the boot order, e.g. `cdrom,disk` (disk, cdrom, network).
    #[arg(long, value_delimiter = ',', value_parser = ["disk", "cdrom", "network"])]
    pub boot: Vec<String>,
    /// Network to attach (repeat for several).
    #[arg(long)]
    pub network: Vec<String>,
    /// An address from a server's address pool: `POOL`, or `POOL=IP` for a fixed one
    /// (repeat for several pools).
    #[arg(long, value_name = "POOL[=IP]")]
    pub address: Vec<String>,
    /// Publish a port: `[IP:]HOST:CONTAINER[/udp]`.
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    pub publish: Vec<String>,
    /// Environment variable `KEY=VALUE`.
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Mount a volume: `VOLUME:/path[:ro]`.
    #[arg(short, long, value_name = "VOLUME:PATH")]
    pub volume: Vec<String>,
    /// Label `KEY=VALUE`.
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Give the container a TTY.
    #[arg(short, long)]
    pub tty: bool,
    /// Start it once created (what `run` does).
    #[arg(long)]
    pub start: bool,
    /// Make this many (1–100) as one batch, named by `--name` with `{n}` for the number
    /// (`NAME-{n}` without it); each is reported.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub count: Option<u32>,
    /// The container's command.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `stop` and `restart`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait for a clean stop before forcing it.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Do not wait: stop at once.
    #[arg(short, long)]
    pub force: bool,
    #[command(flatten)]
    pub names: Names,
}

/// `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Instance name or id.
    pub name: String,
    /// Environment variable `KEY=VALUE`.
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User to run as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Keep standard input open and pass it to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a terminal (raw mode, window size; Ctrl-C goes to the command).
    #[arg(short, long)]
    pub tty: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Instance name or id.
    pub name: String,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    /// Only lines since this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Prefix each line with its time.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Keep printing new lines as they come (Ctrl-C ends).
    #[arg(short, long)]
    pub follow: bool,
}

/// `disk …`.
#[derive(Debug, Subcommand)]
pub enum DiskCommand {
    /// List a VM's disks and CD-ROM drives.
    #[command(visible_alias = "ls")]
    List {
        /// VM.
        name: String,
    },
    /// Attach an existing volume, or a new one of --size; hot-plugged into a running VM.
    Attach {
        /// VM.
        name: String,
        /// An existing volume (`pool/name` or a name in the default pool).
        volume: Option<String>,
        /// Size of a new blank volume instead (512MiB, 2GiB).
        #[arg(long, value_parser = parse_bytes, conflicts_with = "volume")]
        size: Option<u64>,
        /// Format of the new volume (qcow2, raw, vmdk, vdi).
        #[arg(long)]
        disk_format: Option<String>,
        /// Storage pool of the new volume.
        #[arg(long)]
        pool: Option<String>,
        /// Bus: virtio (default), sata or scsi (those two only while the VM is shut off).
        #[arg(long)]
        bus: Option<String>,
        /// Attach read-only.
        #[arg(long)]
        read_only: bool,
    },
    /// Detach a disk; its volume stays.
    Detach {
        /// VM.
        name: String,
        /// Device name (vdb).
        target: String,
    },
    /// Grow a disk (online), or shrink it while the VM is shut off with --allow-shrink.
    Resize {
        /// VM.
        name: String,
        /// Device name (vdb).
        target: String,
        /// New size (4GiB).
        #[arg(value_parser = parse_bytes)]
        size: u64,
        /// Allow a smaller size: data past it is lost.
        #[arg(long)]
        allow_shrink: bool,
    },
}

/// `media …`.
#[derive(Debug, Subcommand)]
pub enum MediaCommand {
    /// Insert an ISO volume into the VM's CD-ROM drive (a shut-off VM gets a drive if it
    /// has none).
    Insert {
        /// VM.
        name: String,
        /// ISO volume (`pool/name` or a name in the default pool).
        image: String,
    },
    /// Eject the media of the VM's CD-ROM drive.
    Eject {
        /// VM.
        name: String,
    },
}

/// `snapshot …`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot.
    Create {
        /// Instance.
        name: String,
        /// Snapshot name.
        snapshot: String,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// List an instance's snapshots.
    #[command(visible_alias = "ls")]
    List {
        /// Instance.
        name: String,
    },
    /// One snapshot: its parent, whether it is current, when it was taken.
    Info {
        /// Instance.
        name: String,
        /// Snapshot name.
        snapshot: String,
    },
    /// Go back to a snapshot.
    Revert {
        /// Instance.
        name: String,
        /// Snapshot name.
        snapshot: String,
    },
    /// Delete a snapshot.
    #[command(visible_alias = "rm")]
    Delete {
        /// Instance.
        name: String,
        /// Snapshot name.
        snapshot: String,
    },
}

/// `image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images.
    #[command(visible_alias = "ls")]
    List,
    /// Pull an image from a registry (Docker) or URL (libvirt).
    Pull {
        /// Reference, e.g. `busybox:latest`.
        reference: String,
        /// Backend to pull into.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Build an image from a directory with a Dockerfile (the directory is sent as the
    /// build context).
    Build {
        /// The context directory.
        context: PathBuf,
        /// Tag for the result (repeat for several).
        #[arg(short, long = "tag", value_name = "REFERENCE")]
        tags: Vec<String>,
        /// The Dockerfile's path inside the context.
        #[arg(short = 'f', long)]
        file: Option<String>,
        /// Build argument `KEY=VALUE` (embedded only: the REST API takes none).
        #[arg(long = "build-arg", value_name = "KEY=VALUE")]
        build_args: Vec<String>,
        /// Backend.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Push an image to its registry.
    Push {
        /// Reference, e.g. `127.0.0.1:5000/web:1`.
        reference: String,
        /// Backend.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Give an image another reference.
    Tag {
        /// The image.
        source: String,
        /// The new reference.
        target: String,
        /// Backend.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Remove images.
    #[command(visible_alias = "rm")]
    Remove {
        /// Images.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Remove even when used.
        #[arg(short, long)]
        force: bool,
        /// Backend.
        #[arg(long)]
        backend: Option<String>,
    },
}

/// `network …`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// List networks.
    #[command(visible_alias = "ls")]
    List,
    /// Create a network.
    Create {
        /// Name.
        name: String,
        /// Backend.
        #[arg(long)]
        backend: Option<String>,
        /// Subnet in CIDR form.
        #[arg(long)]
        subnet: Option<String>,
    },
    /// Delete networks.
    #[command(visible_alias = "rm")]
    Delete {
        /// Networks.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Backend.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Show one, with the instances on it.
    Info {
        /// Network.
        id: String,
        /// Backend.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Attach an instance to a network.
    Connect {
        /// Network.
        network: String,
        /// Instance.
        instance: String,
    },
    /// Detach an instance from a network.
    Disconnect {
        /// Network.
        network: String,
        /// Instance.
        instance: String,
    },
}

/// `volume …`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// List volumes.
    #[command(visible_alias = "ls")]
    List,
    /// Create a volume.
    Create {
        /// Name.
        name: String,
        /// Size (`1GiB`); libvirt volumes need one.
        #[arg(long, value_parser = parse_bytes)]
        size: Option<u64>,
        /// Backend.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Delete volumes.
    #[command(visible_alias = "rm")]
    Delete {
        /// Volumes.
        #[arg(required = true)]
        names: Vec<String>,
        /// Delete even when used.
        #[arg(short, long)]
        force: bool,
        /// Backend.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Show one.
    Info {
        /// Volume.
        name: String,
        /// Backend.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Grow a volume.
    Resize {
        /// Volume.
        name: String,
        /// New size: `2GiB`.
        #[arg(value_parser = parse_bytes)]
        size: u64,
        /// Backend.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Copy a volume to a new one.
    Clone {
        /// Volume to copy.
        source: String,
        /// Name of the copy.
        target: String,
        /// Backend.
        #[arg(long)]
        backend: Option<String>,
    },
}

/// `task …`.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// List tasks, newest first.
    #[command(visible_alias = "ls")]
    List,
    /// Wait for a task to end; its result is printed, its failure is the exit code.
    Wait {
        /// Task id.
        id: String,
    },
    /// Cancel a running task.
    Cancel {
        /// Task id.
        id: String,
    },
}

/// `user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users.
    #[command(visible_alias = "ls")]
    List,
    /// Create a user; the password is read from standard input.
    Create {
        /// User name.
        name: String,
        /// Role: admin, operator, viewer or a custom role's name.
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Where the role applies: everything, or the instances of the user's groups.
        #[arg(long, value_parser = ["all", "groups"], default_value = "all")]
        scope: String,
    },
    /// Delete users.
    #[command(visible_alias = "rm")]
    Delete {
        /// User names or ids.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `group …`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List groups and their members.
    #[command(visible_alias = "ls")]
    List,
    /// Create a group.
    Create {
        /// Group name.
        name: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete groups that have no instances left.
    #[command(visible_alias = "rm")]
    Delete {
        /// Group names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Make users members of a group.
    Add {
        /// Group name.
        group: String,
        /// User names.
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Remove users from a group.
    Remove {
        /// Group name.
        group: String,
        /// User names.
        #[arg(required = true)]
        users: Vec<String>,
    },
}

/// `address-pool …`.
#[derive(Debug, Subcommand)]
pub enum AddressPoolCommand {
    /// List address pools: their gateway, size and how many addresses are handed out.
    #[command(visible_alias = "ls")]
    List,
    /// One pool with its ranges and who holds which address.
    Info {
        /// Pool name.
        name: String,
    },
    /// Create a pool (administrators).
    Create {
        /// Pool name.
        name: String,
        /// The instances' gateway, on the host bridge of the pool's network.
        #[arg(long)]
        gateway: String,
        /// A name server for the instances (repeat for several).
        #[arg(long)]
        dns: Vec<String>,
        /// A range `START-END/PREFIX` (repeat for several).
        #[arg(long, value_name = "START-END/PREFIX", value_parser = parse_range)]
        range: Vec<(String, String, u8)>,
    },
    /// Delete pools that hand out no address (administrators).
    #[command(visible_alias = "rm")]
    Delete {
        /// Pool names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Add a range to a pool (administrators).
    AddRange {
        /// Pool name.
        name: String,
        /// `START-END/PREFIX`.
        #[arg(value_parser = parse_range)]
        range: (String, String, u8),
    },
    /// Remove the range that starts at START, unless one of its addresses is handed out.
    RemoveRange {
        /// Pool name.
        name: String,
        /// The range's first address.
        start: String,
    },
}

/// `START-END/PREFIX`, e.g. `10.0.0.10-10.0.0.99/24`.
fn parse_range(s: &str) -> Result<(String, String, u8), String> {
    let bad = || format!("{s:?} is not START-END/PREFIX (e.g. 10.0.0.10-10.0.0.99/24)");
    let (addresses, prefix) = s.rsplit_once('/').ok_or_else(bad)?;
    let (start, end) = addresses.split_once('-').ok_or_else(bad)?;
    let prefix = prefix.parse().map_err(|_| bad())?;
    Ok((start.to_string(), end.to_string(), prefix))
}

/// `role …`.
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// List the built-in and custom roles.
    #[command(visible_alias = "ls")]
    List,
    /// List the permissions roles are made of.
    Permissions,
    /// Create a custom role.
    Create {
        /// Role name.
        name: String,
        /// A permission (`instances.read`, …); repeat for several.
        #[arg(long = "permission", value_name = "PERMISSION")]
        permissions: Vec<String>,
    },
    /// Delete custom roles no user holds.
    #[command(visible_alias = "rm")]
    Delete {
        /// Role names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `api-key …`.
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// List keys (their prefixes, never the keys).
    #[command(visible_alias = "ls")]
    List,
    /// Create a key; it is printed once.
    Create {
        /// A name for it.
        name: String,
        /// Days until it expires.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke keys.
    #[command(visible_alias = "rm")]
    Revoke {
        /// Key ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// `host …`.
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// List hosts.
    #[command(visible_alias = "ls")]
    List,
    /// Show one.
    Info {
        /// Host name.
        name: String,
    },
}

/// `pool …`.
#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// List storage pools.
    #[command(visible_alias = "ls")]
    List,
    /// Show one.
    Info {
        /// Pool name.
        name: String,
        /// Backend.
        #[arg(long)]
        backend: Option<String>,
    },
}

/// `template …`.
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// List templates.
    #[command(visible_alias = "ls")]
    List,
    /// Show one.
    Info {
        /// Template name.
        name: String,
        /// Backend.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Make a template (`create --vm --template NAME` starts from it).
    Create {
        /// Template name.
        name: String,
        /// Base disk image.
        #[arg(long)]
        image: Option<String>,
        /// Operating system, for people.
        #[arg(long)]
        os: Option<String>,
        /// CPUs.
        #[arg(long)]
        cpus: Option<u32>,
        /// Memory: `512MiB`, `2GiB`.
        #[arg(long, value_parser = parse_bytes)]
        memory: Option<u64>,
        /// Backend.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Delete a template.
    #[command(visible_alias = "rm")]
    Delete {
        /// Template name.
        name: String,
        /// Backend.
        #[arg(long)]
        backend: Option<String>,
    },
}

/// `remote …`.
#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Add a remote (and make it current if it is the first).
    Add {
        /// Its name here.
        name: String,
        /// Base URL, e.g. `http://10.0.0.2:8080`.
        url: String,
    },
    /// List remotes; `*` marks the current one.
    #[command(visible_alias = "ls")]
    List,
    /// Make a remote current (`local` for the embedded engines).
    Switch {
        /// Remote name, or `local`.
        name: String,
    },
    /// Forget a remote and its credentials.
    #[command(visible_alias = "rm")]
    Remove {
        /// Remote name.
        name: String,
    },
}

/// `login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// User name.
    #[arg(long, default_value = "admin")]
    pub username: String,
    /// Read the password from standard input (else `LIBGO_PASSWORD`).
    #[arg(long)]
    pub password_stdin: bool,
}

/// Parses `512MiB`, `2GiB`, `1G`, `1048576`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(text)
        .map_err(|e| format!("{text:?} is not a size like 512MiB or 2GiB: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_grammar_is_consistent() {
        // clap's own checks: unique flags (a subcommand's `--format` would clash with the
        // global one), valid defaults, required positionals in order.
        Cli::command().debug_assert();
    }
}
