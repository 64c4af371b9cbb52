//! The few raw syscalls the load generator needs: `poll` to wait for sockets, `epoll` to wait
//! on many streams cheaply, `getrusage` for CPU time and `sched_setaffinity` to pin threads,
//! plus reading another process's CPU time and memory from `/proc`. Everything else goes through std, socket2 or oscgate's engine.
//!
//! This is the crate's only module with unsafe code; each block has a `// SAFETY:` comment.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// A set of file descriptors to wait on for one event kind.
pub struct PollSet {
    fds: Vec<libc::pollfd>,
}

impl PollSet {
    /// Waits for `POLLIN` (`write = false`) or `POLLOUT` on each of `socks`. The sockets must
    /// outlive the set's use (callers keep both in the same thread scope).
    pub fn new<S: AsFd>(socks: &[S], write: bool) -> PollSet {
        let events = if write { libc::POLLOUT } else { libc::POLLIN };
        PollSet {
            fds: socks
                .iter()
                .map(|s| libc::pollfd {
                    fd: s.as_fd().as_raw_fd(),
                    events,
                    revents: 0,
                })
                .collect(),
        }
    }

    /// Waits up to `timeout` for any descriptor to be ready; returns how many are.
    /// `EINTR` counts as a timeout.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<usize> {
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a live, exclusively borrowed array of `fds.len()` pollfd structs;
        // the kernel writes only their `revents` fields during the call.
        let n = unsafe { libc::poll(self.fds.as_mut_ptr(), self.fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(n as usize)
    }

    /// Whether descriptor `i` was ready (or in error) after the last [`wait`](Self::wait).
    pub fn ready(&self, i: usize) -> bool {
        self.fds.get(i).is_some_and(|p| p.revents != 0)
    }
}

/// A level-triggered `epoll` set for read readiness, each descriptor tagged with a token.
/// Unlike [`PollSet`], a wait costs the number of ready descriptors, not of registered ones:
/// what a receiver thread holding a hundred busy TCP streams needs.
pub struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    /// An empty set returning at most `max_events` descriptors per [`wait`](Self::wait).
    pub fn new(max_events: usize) -> io::Result<Epoll> {
        // SAFETY: epoll_create1 has no memory preconditions; the flag is a valid constant.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by epoll_create1 and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let empty = libc::epoll_event { events: 0, u64: 0 };
        Ok(Epoll {
            fd,
            events: vec![empty; max_events.max(1)],
        })
    }

    fn ctl<S: AsFd>(&self, op: libc::c_int, sock: &S, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open (borrowed for the call); `ev` is a valid, writable
        // epoll_event the kernel reads during the call only.
        let rc =
            unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, sock.as_fd().as_raw_fd(), &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Watches `sock` for input (and hang-up), reported as `token`. The caller keeps `sock`
    /// open while it is in the set, or removes it first.
    pub fn add<S: AsFd>(&self, sock: &S, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, sock, token)
    }

    /// Stops watching `sock`.
    pub fn remove<S: AsFd>(&self, sock: &S) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, sock, 0)
    }

    /// Waits up to `timeout` and returns the tokens of the ready descriptors (empty on
    /// timeout or `EINTR`).
    pub fn wait(&mut self, timeout: Duration) -> io::Result<impl Iterator<Item = u64> + '_> {
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let cap = self.events.len().min(i32::MAX as usize) as i32;
        // SAFETY: `events` is a live, exclusively borrowed array of at least `cap` entries,
        // which the kernel fills during the call.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), self.events.as_mut_ptr(), cap, ms) };
        let n = if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
            0
        } else {
            n as usize
        };
        // `epoll_event` is packed on x86_64: the field is copied out, never borrowed.
        Ok(self.events[..n].iter().map(|e| e.u64))
    }
}

/// Which CPU time to read.
#[derive(Debug, Clone, Copy)]
pub enum Who {
    /// The whole process, all threads.
    Process,
    /// The calling thread only.
    Thread,
}

/// User + system CPU time of the process or the calling thread, in seconds.
pub fn cpu_seconds(who: Who) -> f64 {
    let who = match who {
        Who::Process => libc::RUSAGE_SELF,
        Who::Thread => libc::RUSAGE_THREAD,
    };
    // SAFETY: `rusage` is plain old data, all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage; `who` is one of the constants getrusage takes.
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    if rc != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Pins the calling thread to the CPUs in `cpus` (ids at or above `CPU_SETSIZE` are
/// ignored). Returns whether the kernel accepted the mask.
pub fn pin_current_thread(cpus: &[usize]) -> bool {
    // SAFETY: `cpu_set_t` is a plain bit array, all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let mut any = false;
    for &c in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: `c` is below CPU_SETSIZE, so CPU_SET stays inside `set`.
        unsafe { libc::CPU_SET(c, &mut set) };
        any = true;
    }
    if !any {
        return false;
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// CPU time and memory of another process, read from `/proc/PID`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// User + system CPU seconds since the process started.
    pub cpu_s: f64,
    /// Resident set size now, in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size, in KiB (`VmHWM`).
    pub peak_rss_kib: u64,
}

/// Reads `/proc/PID/stat` and `/proc/PID/status`; `None` if the process is gone or the files
/// do not parse.
pub fn proc_sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    parse_proc(&stat, &status, if ticks > 0 { ticks as f64 } else { 100.0 })
}

/// The pure part of [`proc_sample`]: utime and stime are fields 14 and 15 of `stat`, counted
/// after the `)` that closes the command name (which may itself hold spaces or parentheses).
fn parse_proc(stat: &str, status: &str, ticks_per_s: f64) -> Option<ProcSample> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(ProcSample {
        cpu_s: (utime + stime) as f64 / ticks_per_s,
        rss_kib: kib("VmRSS:")?,
        peak_rss_kib: kib("VmHWM:").unwrap_or(0),
    })
}

/// The pid of the only process whose command name (`/proc/PID/comm`) is `name`, other than
/// this one; `None` when there is none or more than one.
pub fn find_process(name: &str) -> Option<u32> {
    let me = std::process::id();
    let mut found = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if comm.trim_end() == name {
            if found.is_some() {
                return None;
            }
            found = Some(pid);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn poll_sees_readable_socket_and_times_out() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut set = PollSet::new(&[&a, &b], false);
        assert_eq!(set.wait(Duration::from_millis(10)).unwrap(), 0);
        a.send_to(b"x", b.local_addr().unwrap()).unwrap();
        assert_eq!(set.wait(Duration::from_millis(1000)).unwrap(), 1);
        assert!(!set.ready(0));
        assert!(set.ready(1));
    }

    #[test]
    fn epoll_reports_the_token_of_the_ready_socket_until_removed() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut ep = Epoll::new(4).unwrap();
        ep.add(&a, 7).unwrap();
        ep.add(&b, 9).unwrap();
        assert_eq!(ep.wait(Duration::from_millis(10)).unwrap().count(), 0);
        a.send_to(b"x", b.local_addr().unwrap()).unwrap();
        let ready: Vec<u64> = ep.wait(Duration::from_millis(1000)).unwrap().collect();
        assert_eq!(ready, [9]);
        // Level-triggered: still ready while unread.
        let again: Vec<u64> = ep.wait(Duration::from_millis(1000)).unwrap().collect();
        assert_eq!(again, [9]);
        ep.remove(&b).unwrap();
        assert_eq!(ep.wait(Duration::from_millis(10)).unwrap().count(), 0);
        assert!(ep.add(&b, 1).is_ok());
        assert!(
            ep.add(&b, 1).is_err(),
            "a second add of the same socket must fail"
        );
    }

    #[test]
    fn pinning_to_cpu_zero_works_in_a_thread() {
        let ok = std::thread::spawn(|| {
            // SAFETY: sched_getcpu has no preconditions.
            pin_current_thread(&[0]) && unsafe { libc::sched_getcpu() } == 0
        });
        assert!(ok.join().unwrap());
        assert!(!pin_current_thread(&[]));
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let t0 = cpu_seconds(Who::Thread);
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(cpu_seconds(Who::Thread) > t0);
        assert!(cpu_seconds(Who::Process) >= cpu_seconds(Who::Thread));
    }

    #[test]
    fn proc_files_parse_and_this_process_is_readable() {
        let stat = "42 (osc gate (x)) S 1 42 42 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        let status = "Name:\toscgate\nVmHWM:\t   2048 kB\nVmRSS:\t    1024 kB\n";
        let s = parse_proc(stat, status, 100.0).unwrap();
        assert_eq!(s.cpu_s, 3.0);
        assert_eq!((s.rss_kib, s.peak_rss_kib), (1024, 2048));
        assert!(parse_proc("garbage", status, 100.0).is_none());
        assert!(parse_proc(stat, "Name: x", 100.0).is_none());
        let me = proc_sample(std::process::id()).unwrap();
        assert!(me.rss_kib > 0 && me.peak_rss_kib >= me.rss_kib);
        assert!(proc_sample(u32::MAX).is_none());
        assert_eq!(find_process("no-such-process-name-here"), None);
    }
}
