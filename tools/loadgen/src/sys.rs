//! The few raw syscalls the load generator needs: `poll` to wait for sockets, `getrusage`
//! for CPU time and `sched_setaffinity` to pin threads. Everything else goes through std, socket2 or oscgate's engine.
//!
//! This is the crate's only module with unsafe code; each block has a `// SAFETY:` comment.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
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
}
