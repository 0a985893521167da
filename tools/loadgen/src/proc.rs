//! Child processes (started, stopped, measured) and what `/proc` says about them.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A free TCP port on 127.0.0.1 (bound and released).
pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts TCP connections on `port`, or `child` exits.
pub(crate) fn wait_port(port: u16, child: &mut Proc, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        child.check_alive()?;
        if Instant::now() > deadline {
            bail!(
                "{} listens on no port {port} after {within:?}; its log:\n{}",
                child.name,
                child.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A child process with its log file: SIGTERM then SIGKILL when dropped.
pub(crate) struct Proc {
    child: Option<Child>,
    /// What it is (for messages).
    pub(crate) name: String,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stderr (and stdout unless `cmd` has it piped) into `dir/NAME.log`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, dir: &Path, pipe_stdout: bool) -> Result<Proc> {
        let log = dir.join(format!("{name}.log"));
        let file = File::create(&log).with_context(|| format!("{}", log.display()))?;
        cmd.stdin(Stdio::null()).stderr(file.try_clone()?);
        if pipe_stdout {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(file);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", cmd.get_program().display()))?;
        Ok(Proc {
            child: Some(child),
            name: name.to_owned(),
            log,
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Its piped standard output (once).
    pub(crate) fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.as_mut().and_then(|c| c.stdout.take())
    }

    /// An error with its log if it has exited.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.try_wait()?
        {
            bail!("{} exited ({status}); its log:\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// The last 40 lines of its log.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// CPU time and peak resident set so far.
    pub(crate) fn usage(&self) -> Usage {
        Usage::of(&self.pid().to_string())
    }

    /// SIGTERM (the way an operator stops it), up to 15 s, then SIGKILL.
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// CPU time (user + system) and peak resident set of one process.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Usage {
    /// Seconds of CPU.
    pub(crate) cpu_s: f64,
    /// Peak resident set (`VmHWM`), bytes.
    pub(crate) hwm: u64,
}

impl Usage {
    /// Of `/proc/{pid}` (`self` for this process); zeros if it is gone.
    pub(crate) fn of(pid: &str) -> Usage {
        let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                // Fields after the command name, which is in parentheses and may hold spaces.
                let rest = &s[s.rfind(')')? + 2..];
                let f: Vec<&str> = rest.split_whitespace().collect();
                // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0);
        let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .unwrap_or(0);
        Usage {
            cpu_s: crate::report::f(ticks) / crate::report::f(clk_tck()),
            hwm: hwm * 1024,
        }
    }
}

/// Clock ticks per second (`getconf CLK_TCK`, normally 100).
fn clk_tck() -> u64 {
    static TCK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}
