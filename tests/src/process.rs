//! Child processes of the project's binaries, killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Path of one of the workspace's binaries, built on first use if missing
/// (`cargo build --bins` beforehand makes this instant).
pub fn binary(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target directory")
        .to_path_buf();
    let path = dir.join(name);
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--workspace", "--bins"])
            .status()
            .expect("running cargo build for the service binaries");
        assert!(status.success(), "building the service binaries failed");
    });
    assert!(path.exists(), "binary {} not found", path.display());
    path
}

/// A running child process.
pub struct Process {
    pub name: String,
    child: Option<Child>,
    command: Vec<String>,
    env: Vec<(String, String)>,
}

impl Process {
    /// Starts `binary` with `args` and extra environment.
    pub fn spawn(
        name: &str,
        binary_name: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> Process {
        let mut process = Process {
            name: name.to_string(),
            child: None,
            command: std::iter::once(binary(binary_name).display().to_string())
                .chain(args.iter().cloned())
                .collect(),
            env: env.to_vec(),
        };
        process.start();
        process
    }

    fn start(&mut self) {
        let mut command = Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .env(
                "RUST_LOG",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        self.child = Some(child);
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks the process to stop (SIGTERM) and waits up to `grace` for it to
    /// exit by itself; kills it after that. Returns whether it exited alone.
    pub fn terminate(&mut self, grace: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Sends SIGTERM and returns at once (a drain can then be observed;
    /// [`Process::terminate`] waits for the exit).
    pub fn signal_terminate(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }

    /// Starts it again with the same command line.
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until a TCP port accepts connections.
pub fn wait_for_tcp(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
}
