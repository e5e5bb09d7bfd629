//! Headless Chromium driven over the DevTools protocol (CDP), for tests that look
//! at a page the way a person would: open it, read what the DOM shows, take a
//! screenshot.
//!
//! A deliberately small client: Chromium is started with
//! `--remote-debugging-port=0`, prints the browser's WebSocket address on stderr,
//! and this client opens one page target on that socket (flat sessions) and sends
//! it commands one at a time. Events Chromium pushes meanwhile are skipped.
//!
//! The browser runs in its own process group, which [`Chromium`]'s `Drop` kills,
//! so no renderer outlives the test, panic or not.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long Chromium may take to start and to answer one command.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The page's width and the height it starts with, in CSS pixels.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 900;

/// Why talking to Chromium failed.
#[derive(Debug)]
pub enum CdpError {
    /// The WebSocket failed or closed.
    Socket(String),
    /// No answer within the timeout.
    Timeout(&'static str),
    /// Chromium answered a command with an error.
    Command { method: String, message: String },
    /// A script run in the page threw.
    Script(String),
    /// An answer without the expected field.
    Malformed(String),
}

impl fmt::Display for CdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CdpError::Socket(e) => write!(f, "DevTools socket: {e}"),
            CdpError::Timeout(what) => write!(f, "Chromium did not answer {what} in time"),
            CdpError::Command { method, message } => write!(f, "{method} failed: {message}"),
            CdpError::Script(e) => write!(f, "script threw: {e}"),
            CdpError::Malformed(e) => write!(f, "unexpected answer: {e}"),
        }
    }
}

impl std::error::Error for CdpError {}

/// The Chromium binary: `$KEEL_CHROMIUM`, else `chromium` or `chromium-browser`
/// on `PATH`.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KEEL_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// A headless Chromium with one open page. Dropping it kills the browser.
pub struct Chromium {
    child: Child,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Starts Chromium and opens a blank page. The browser may reach `allowed`
    /// only: every other host name fails to resolve, so it sends nothing off the
    /// machine. Panics with what to install if Chromium is missing.
    pub async fn launch(allowed: IpAddr) -> Chromium {
        let bin = find_chromium().unwrap_or_else(|| {
            panic!(
                "this test needs headless Chromium and found none (looked for $KEEL_CHROMIUM, \
                 then chromium and chromium-browser on PATH): install Debian's `chromium` \
                 package (`apt-get install chromium`; .ci/run does this)"
            )
        });
        let profile = tempfile::Builder::new()
            .prefix("keel-chromium-")
            .tempdir()
            .expect("profile dir");
        let mut child = Command::new(&bin)
            .args([
                "--headless=new",
                // Tests run as root in CI, where the sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-pings",
                "--no-proxy-server",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!(
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {allowed}"
            ))
            .arg(format!("--window-size={WIDTH},{HEIGHT}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let url = match devtools_url(&mut child) {
            Ok(url) => url,
            Err(why) => {
                kill_group(&mut child);
                panic!("{} did not start: {why}", bin.display());
            }
        };
        let socket = match tokio::time::timeout(
            STARTUP_TIMEOUT,
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        {
            Ok(Ok((socket, _))) => socket,
            Ok(Err(e)) => {
                kill_group(&mut child);
                panic!("cannot connect to Chromium's DevTools at {url}: {e}");
            }
            Err(_) => {
                kill_group(&mut child);
                panic!("connecting to Chromium's DevTools at {url} timed out");
            }
        };
        let mut browser = Chromium {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await
            .expect("open a page");
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await
            .expect("attach to the page");
        browser.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        browser
    }

    /// Sends one command (to the page once attached) and waits for its answer.
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, CdpError> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::text(msg.to_string()))
            .await
            .map_err(|e| CdpError::Socket(e.to_string()))?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = match tokio::time::timeout(left, self.socket.next()).await {
                Err(_) => return Err(CdpError::Timeout("a command")),
                Ok(None) => return Err(CdpError::Socket("closed by Chromium".into())),
                Ok(Some(Err(e))) => return Err(CdpError::Socket(e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            let Message::Text(text) = frame else {
                continue;
            };
            let answer: Value = serde_json::from_str(text.as_str())
                .map_err(|e| CdpError::Malformed(format!("{e}: {text}")))?;
            if answer["id"].as_u64() != Some(id) {
                continue; // an event, or the answer to an abandoned command
            }
            if let Some(err) = answer.get("error") {
                return Err(CdpError::Command {
                    method: method.to_string(),
                    message: err["message"].as_str().unwrap_or("?").to_string(),
                });
            }
            return Ok(answer["result"].clone());
        }
    }

    /// Loads `url` in the page.
    pub async fn navigate(&mut self, url: &str) -> Result<(), CdpError> {
        let r = self.call("Page.navigate", json!({"url": url})).await?;
        match r.get("errorText").and_then(Value::as_str) {
            Some(e) if !e.is_empty() => Err(CdpError::Command {
                method: "Page.navigate".into(),
                message: format!("{url}: {e}"),
            }),
            _ => Ok(()),
        }
    }

    /// Runs `expression` in the page and returns its value (as JSON).
    pub async fn eval(&mut self, expression: &str) -> Result<Value, CdpError> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            let text = ex["exception"]["description"]
                .as_str()
                .or_else(|| ex["text"].as_str())
                .unwrap_or("?");
            return Err(CdpError::Script(text.to_string()));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Saves a PNG of the whole page (not only the window) to `path`.
    pub async fn screenshot(&mut self, path: &Path) -> Result<(), CdpError> {
        let height = self
            .eval("document.documentElement.scrollHeight")
            .await?
            .as_u64()
            .unwrap_or(u64::from(HEIGHT))
            .max(u64::from(HEIGHT));
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await?;
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await?;
        let data = shot["data"]
            .as_str()
            .ok_or_else(|| CdpError::Malformed("screenshot without data".into()))?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| CdpError::Malformed(format!("screenshot is not base64: {e}")))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, png).expect("write screenshot");
        Ok(())
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// Kills the browser and every process it started (its process group).
fn kill_group(child: &mut Child) {
    let pid = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads Chromium's stderr until it prints its DevTools address; then keeps
/// draining it in the background so the browser never blocks on a full pipe.
fn devtools_url(child: &mut Child) -> Result<String, String> {
    const PREFIX: &str = "DevTools listening on ";
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            // The receiver is gone once the address was found: just drain.
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(url) = line.strip_prefix(PREFIX) {
                    return Ok(url.trim().to_string());
                }
                seen.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "no DevTools address within {STARTUP_TIMEOUT:?}; it said:\n{}",
                    seen.join("\n")
                ));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!("it exited; it said:\n{}", seen.join("\n")));
            }
        }
    }
}
