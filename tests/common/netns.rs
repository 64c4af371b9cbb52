//! Network namespaces for the integration tests that need more than loopback: two L2 subnets
//! and the hosts on them, built with iproute2's `ip` and removed on drop. Needs root and `ip`;
//! `root_or_skip` says whether a test can run here.
//!
//! ```text
//!   namespace  subnet 1 (10.231.1.0/24)   subnet 2 (10.231.2.0/24)
//!   hub        bridge                     bridge
//!   a          10.231.1.10/24             -
//!   b          -                          10.231.2.10/24
//!   g1         10.231.1.1/24              10.231.2.1/24
//!   g2         10.231.1.2/24              10.231.2.2/24
//! ```
//!
//! Each subnet is a Linux bridge in the `hub` namespace; every host namespace is joined to it
//! by a veth pair created in place (`peer ... netns`), so no interface ever appears in the root
//! namespace. g1 and g2 are plain hosts with one interface on each subnet: no forwarding, no
//! routes beyond the connected ones, which is what a gateway running oscgate sees. Nothing
//! here sends traffic; the tests do, only inside these namespaces.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Set to `1` (CI does) to turn "cannot run here" into a failure instead of a skip.
pub const REQUIRE_ENV: &str = "OSCGATE_REQUIRE_ROOT_TESTS";

/// Whether the namespace tests can run: effective uid 0 and a working `ip netns`. If not,
/// prints `skipped <test>: <reason>` and returns false, or panics with the reason when
/// `OSCGATE_REQUIRE_ROOT_TESTS=1`.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let why = if euid != 0 {
        format!("needs root to create network namespaces (effective uid is {euid})")
    } else {
        match Command::new("ip").args(["netns", "list"]).output() {
            Err(e) => format!("cannot run `ip` (install iproute2): {e}"),
            Ok(o) if !o.status.success() => format!(
                "`ip netns list` failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Ok(_) => return true,
        }
    };
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("{test} cannot run: {why} ({REQUIRE_ENV}=1 makes this a failure, not a skip)");
    }
    eprintln!("skipped {test}: {why}");
    false
}

/// Runs `f` on a new thread that has joined namespace `ns` (a name under `/run/netns`) and
/// returns its result. Sockets `f` opens belong to `ns` for good and can be used from any
/// thread afterwards; the calling thread's namespace is untouched.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let path = Path::new("/run/netns").join(ns);
            let file = File::open(&path).unwrap_or_else(|e| {
                panic!(
                    "cannot open {} to enter namespace {ns}: {e}",
                    path.display()
                )
            });
            // SAFETY: the fd is open for the whole call; setns(2) with CLONE_NEWNET only moves
            // this thread, which no other code shares.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                panic!(
                    "setns into network namespace {ns} failed: {}",
                    io::Error::last_os_error()
                );
            }
            f()
        });
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A command running `program` inside namespace `ns` (`ip netns exec`); add its arguments.
pub fn command(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c
}

/// A namespace of a [`Topology`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Holds the two bridges (one per subnet) and the hub ends of the veth pairs.
    Hub,
    /// A host on subnet 1 only.
    A,
    /// A host on subnet 2 only.
    B,
    /// A host on both subnets.
    G1,
    /// Another host on both subnets.
    G2,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Hub, Role::A, Role::B, Role::G1, Role::G2];
    pub const HOSTS: [Role; 4] = [Role::A, Role::B, Role::G1, Role::G2];

    fn code(self) -> &'static str {
        match self {
            Role::Hub => "hub",
            Role::A => "a",
            Role::B => "b",
            Role::G1 => "g1",
            Role::G2 => "g2",
        }
    }

    /// The host's number on `subnet` (its address is 10.231.`subnet`.`host`), if attached.
    fn host(self, subnet: u8) -> Option<u8> {
        match (self, subnet) {
            (Role::A, 1) | (Role::B, 2) => Some(10),
            (Role::G1, 1 | 2) => Some(1),
            (Role::G2, 1 | 2) => Some(2),
            _ => None,
        }
    }
}

/// The subnets' numbers, for `iface`, `addr`, `broadcast` and `network`.
pub const SUBNETS: [u8; 2] = [1, 2];
pub const NET1: &str = "10.231.1.0/24";
pub const NET2: &str = "10.231.2.0/24";
pub const BCAST1: Ipv4Addr = Ipv4Addr::new(10, 231, 1, 255);
pub const BCAST2: Ipv4Addr = Ipv4Addr::new(10, 231, 2, 255);

/// Bridge ports: a and b have one, g1 and g2 two.
const PORTS: usize = 6;
/// Bound on the bridge ports reaching the forwarding state (immediate with STP off; the
/// kernel applies a veth's carrier change from a work queue, so allow it to run).
const FORWARDING_WITHIN: Duration = Duration::from_secs(2);

fn subnet_index(subnet: u8) -> usize {
    assert!(
        SUBNETS.contains(&subnet),
        "subnet must be 1 or 2, not {subnet}"
    );
    usize::from(subnet - 1)
}

/// Whether `name` (a namespace or interface) belongs to the topology tagged `tag`: after the
/// tag comes `-` or a letter that is not a hex digit, so tag `o7x1` does not claim `o7x1a-hub`.
pub fn named_by(name: &str, tag: &str) -> bool {
    name.strip_prefix(tag)
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| !c.is_ascii_hexdigit())
}

/// Two subnets in namespaces (see the module header). Every name it makes begins with
/// `tag()`: `o<pid in hex>x<counter in hex>`, unique among the live topologies of all
/// processes and short enough for interface names (15 bytes at most); see `named_by`.
/// Dropping it deletes its namespaces, and with them every interface it made (a socket still
/// open in a deleted namespace keeps it alive, nameless, until the socket closes).
pub struct Topology {
    tag: String,
    ns: [String; 5],
    /// Per role and subnet: the interface inside that namespace (hub: the bridge), or "".
    ifaces: [[String; 2]; 5],
}

impl Topology {
    /// Builds the two subnets, all links and `lo` up, every address with its broadcast set,
    /// and waits (bounded) until the bridges forward on every port, so a broadcast sent right
    /// after this returns reaches every host on its subnet. On error, what was made is removed.
    pub fn two_subnets() -> io::Result<Topology> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // 3 hex digits keep the longest name at 15 bytes; 4096 live topologies in one
        // process would be needed for a clash.
        let n = NEXT.fetch_add(1, Ordering::Relaxed) & 0xfff;
        let tag = format!("o{:x}x{n:x}", std::process::id());
        let ifaces = Role::ALL.map(|r| {
            SUBNETS.map(|s| match (r, r.host(s)) {
                (Role::Hub, _) => format!("{tag}sw{s}"),
                (_, Some(_)) => format!("{tag}i{}{s}", r.code()),
                (_, None) => String::new(),
            })
        });
        let t = Topology {
            ns: Role::ALL.map(|r| format!("{tag}-{}", r.code())),
            tag,
            ifaces,
        };
        // From here on, an early return drops `t`, which deletes whatever namespaces exist.
        let adds: String = t.ns.iter().map(|ns| format!("netns add {ns}\n")).collect();
        ip_batch(&[], &adds)?;

        // No STP and no forward delay: ports forward as soon as their link is up. No
        // multicast snooping: with no IGMP querier on these wires, flooding every group
        // keeps multicast delivery independent of report timing.
        let mut hub = String::from("link set lo up\n");
        for s in SUBNETS {
            hub += &format!(
                "link add {} up type bridge forward_delay 0 stp_state 0 mcast_snooping 0\n",
                t.iface(Role::Hub, s)
            );
        }
        for r in Role::HOSTS {
            for s in SUBNETS.into_iter().filter(|&s| r.host(s).is_some()) {
                hub += &format!(
                    "link add {tag}p{code}{s} master {br} up type veth peer name {peer} netns {ns}\n",
                    tag = t.tag,
                    code = r.code(),
                    br = t.iface(Role::Hub, s),
                    peer = t.iface(r, s),
                    ns = t.ns(r),
                );
            }
        }
        ip_batch(&["-n", t.ns(Role::Hub)], &hub)?;

        for r in Role::HOSTS {
            let mut host = String::from("link set lo up\n");
            for s in SUBNETS.into_iter().filter(|&s| r.host(s).is_some()) {
                let dev = t.iface(r, s);
                host += &format!("addr add {}/24 brd + dev {dev}\n", Self::addr(r, s));
                host += &format!("link set {dev} up\n");
            }
            ip_batch(&["-n", t.ns(r)], &host)?;
        }
        t.wait_forwarding()?;
        Ok(t)
    }

    /// The prefix of every namespace and interface name of this topology.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The namespace's name, for `in_ns`, `command` or `ip -n`.
    pub fn ns(&self, role: Role) -> &str {
        &self.ns[role as usize]
    }

    /// The interface of `role` on `subnet` inside its namespace; for the hub, the bridge.
    /// Panics if the role has none there (a is on subnet 1 only, b on subnet 2 only).
    pub fn iface(&self, role: Role, subnet: u8) -> &str {
        let name = &self.ifaces[role as usize][subnet_index(subnet)];
        assert!(
            !name.is_empty(),
            "{role:?} has no interface on subnet {subnet}"
        );
        name
    }

    /// The address of `role` on `subnet`. Panics if it has none there (the hub never has).
    pub fn addr(role: Role, subnet: u8) -> Ipv4Addr {
        subnet_index(subnet);
        match role.host(subnet) {
            Some(h) => Ipv4Addr::new(10, 231, subnet, h),
            None => panic!("{role:?} has no address on subnet {subnet}"),
        }
    }

    /// The broadcast address of `subnet`: 10.231.1.255 or 10.231.2.255.
    pub fn broadcast(subnet: u8) -> Ipv4Addr {
        [BCAST1, BCAST2][subnet_index(subnet)]
    }

    /// The network of `subnet` in CIDR form: "10.231.1.0/24" or "10.231.2.0/24".
    pub fn network(subnet: u8) -> &'static str {
        [NET1, NET2][subnet_index(subnet)]
    }

    fn wait_forwarding(&self) -> io::Result<()> {
        let hub = self.ns(Role::Hub);
        let deadline = Instant::now() + FORWARDING_WITHIN;
        loop {
            let out = (Command::new("ip").args(["-n", hub, "-d", "-o", "link", "show"]))
                .args(["type", "bridge_slave"])
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let forwarding = text
                .lines()
                .filter(|l| l.contains("bridge_slave state forwarding"))
                .count();
            if out.status.success() && forwarding == PORTS {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "{forwarding} of {PORTS} bridge ports in {hub} forwarding after \
                     {FORWARDING_WITHIN:?}; `ip -d link` says:\n{text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            // Waiting on the kernel's link-state work queue, not a timer: normally never reached.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Hub first: its veth ends take their peers with them. `-force` goes on past the
        // namespaces a failed construction never made; what still exists afterwards decides.
        let dels: String = (self.ns.iter())
            .map(|ns| format!("netns del {ns}\n"))
            .collect();
        let result = ip_batch(&["-force"], &dels);
        let left: Vec<&String> = (self.ns.iter())
            .filter(|ns| Path::new("/run/netns").join(ns).exists())
            .collect();
        if left.is_empty() {
            return;
        }
        let msg = format!(
            "network namespaces {left:?} left behind ({}); remove each with `ip netns del NAME`",
            match result {
                Ok(()) => "ip reported no error".to_owned(),
                Err(e) => e.to_string(),
            }
        );
        if std::thread::panicking() {
            eprintln!("{msg}");
        } else {
            panic!("{msg}");
        }
    }
}

/// Runs `ip <options> -batch -` with `script` on stdin: one process for many commands.
fn ip_batch(options: &[&str], script: &str) -> io::Result<()> {
    let mut cmd = Command::new("ip");
    let mut child = (cmd.args(options).args(["-batch", "-"]))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run `ip` (iproute2): {e}")))?;
    // Dropping stdin at the end of the statement closes it, so `ip` sees the script end.
    let written = (child.stdin.take().expect("piped")).write_all(script.as_bytes());
    let out = child.wait_with_output()?;
    if out.status.success() && written.is_ok() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{cmd:?} failed ({}): {}; script:\n{script}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}
