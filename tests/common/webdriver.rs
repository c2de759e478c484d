//! A minimal W3C WebDriver client for browser tests: starts Debian's chromedriver
//! on a free loopback port, opens one headless Chromium session with a profile of
//! its own, and speaks WebDriver's JSON over HTTP with curl. Every wait is bounded
//! by a named constant; the driver and the browser it started are stopped by pid
//! on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use super::kimcm::curl_within;

/// How long chromedriver may take to answer `/status` as ready.
const DRIVER_START: Duration = Duration::from_secs(20);
/// Bound on one WebDriver request (a new session starts Chromium: the longest).
const CALL_SECS: u64 = 60;
/// Bound on a page load (navigation, or a click that submits a form).
const PAGE_LOAD_MS: u64 = 30_000;
/// Bound on waiting for an element or a page state.
pub const WAIT: Duration = Duration::from_secs(20);
/// Pause between two looks while waiting.
const POLL: Duration = Duration::from_millis(100);
/// How long the processes get to end after a kill.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// The W3C key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The 8 bytes every PNG file starts with.
pub const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// `name` on PATH, or None.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// The Chromium and ChromeDriver binaries; the test fails (never skips) without them.
fn binaries() -> (PathBuf, PathBuf) {
    let chromium = on_path("chromium");
    let driver = on_path("chromedriver");
    match (chromium, driver) {
        (Some(c), Some(d)) => (c, d),
        (c, d) => panic!(
            "the browser test needs Chromium and ChromeDriver, and {} not found on PATH: \
             run .ci/run as root, or `apt-get install --no-install-recommends chromium \
             chromium-driver` (Debian's packages: /usr/bin/chromium, /usr/bin/chromedriver)",
            match (c.is_none(), d.is_none()) {
                (true, true) => "`chromium` and `chromedriver` were",
                (true, false) => "`chromium` was",
                _ => "`chromedriver` was",
            }
        ),
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; chromedriver binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The pids of `pid`'s children, grandchildren, … (from /proc).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let up = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == up)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// A WebDriver error answer, or a transport failure.
#[derive(Debug)]
pub struct WdError {
    pub status: u16,
    pub error: String,
    pub message: String,
}

/// One chromedriver with one headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    session: Option<String>,
    /// The browser profile (--user-data-dir) and chromedriver's log.
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; panics with what to
    /// install when the binaries are missing, or with chromedriver's log when it
    /// does not come up.
    pub fn start() -> Browser {
        let (chromium, chromedriver) = binaries();
        let dir = tempfile::tempdir().expect("temp dir");
        let profile = dir.path().join("profile");
        std::fs::create_dir_all(&profile).unwrap();
        let log_path = dir.path().join("chromedriver.log");
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log_path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", chromedriver.display()));
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: None,
            dir,
        };

        let until = Instant::now() + DRIVER_START;
        loop {
            if let Ok(v) = b.call("GET", "/status", None) {
                if v["ready"] == true {
                    break;
                }
            }
            if let Ok(Some(status)) = b.driver.try_wait() {
                panic!("chromedriver ended ({status}):\n{}", b.driver_log());
            }
            assert!(
                Instant::now() < until,
                "chromedriver not ready on port {port} within {DRIVER_START:?}:\n{}",
                b.driver_log()
            );
            std::thread::sleep(POLL);
        }

        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"pageLoad": PAGE_LOAD_MS, "script": PAGE_LOAD_MS, "implicit": 0},
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                    // a closed network: no calls home, no first-run pages
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-quic",
                    "--window-size=1280,900",
                ],
            },
        }}});
        let v = b
            .call("POST", "/session", Some(&caps))
            .unwrap_or_else(|e| panic!("new session: {e:?}\n{}", b.driver_log()));
        b.session = Some(
            v["sessionId"]
                .as_str()
                .unwrap_or_else(|| panic!("no sessionId in {v}"))
                .to_string(),
        );
        b
    }

    fn driver_log(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
        // the end tells why
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// One WebDriver request; the answer's `value`.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, WdError> {
        self.call_within(CALL_SECS, method, path, body)
    }

    fn call_within(
        &self,
        max_secs: u64,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, WdError> {
        let url = format!("{}{path}", self.base);
        let data = body.map(Value::to_string);
        let mut args = vec!["-X", method, "-w", "\n%{http_code}", "--url", &url];
        if let Some(d) = &data {
            args.extend_from_slice(&[
                "-H",
                "Content-Type: application/json; charset=utf-8",
                "--data-binary",
                d,
            ]);
        }
        let (code, out, err) = curl_within(max_secs, &args);
        if code != 0 {
            return Err(WdError {
                status: 0,
                error: format!("curl exit {code}"),
                message: err,
            });
        }
        let text = String::from_utf8_lossy(&out);
        let (json_text, status) = text.rsplit_once('\n').unwrap_or((&text, "0"));
        let status: u16 = status.trim().parse().unwrap_or(0);
        let v: Value = serde_json::from_str(json_text).unwrap_or(Value::Null);
        if status == 200 {
            Ok(v["value"].clone())
        } else {
            Err(WdError {
                status,
                error: v["value"]["error"].as_str().unwrap_or("?").to_string(),
                message: v["value"]["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| json_text.to_string()),
            })
        }
    }

    /// A request in this session; panics with WebDriver's error.
    fn session_call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let sid = self.session.as_deref().expect("an open session");
        self.call(method, &format!("/session/{sid}{path}"), body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e:?}"))
    }

    /// Navigates to `url` and waits for the page to load.
    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(&json!({ "url": url })));
    }

    /// The current page's URL.
    pub fn url(&self) -> String {
        self.session_call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The first element matching `css` now, if any.
    pub fn try_find(&self, css: &str) -> Option<Element> {
        let sid = self.session.as_deref().expect("an open session");
        let body = json!({"using": "css selector", "value": css});
        match self.call("POST", &format!("/session/{sid}/element"), Some(&body)) {
            Ok(v) => Some(Element(
                v[ELEMENT_KEY]
                    .as_str()
                    .unwrap_or_else(|| panic!("no element reference in {v}"))
                    .to_string(),
            )),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("find {css}: {e:?}"),
        }
    }

    /// The first element matching `css`, waiting for it up to [`WAIT`].
    pub fn find(&self, css: &str) -> Element {
        let until = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.try_find(css) {
                return e;
            }
            assert!(
                Instant::now() < until,
                "no element `{css}` within {WAIT:?} on {}:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Waits up to [`WAIT`] until `cond` holds; `what` names it in the failure.
    pub fn wait_until(&self, what: &str, mut cond: impl FnMut(&Browser) -> bool) {
        let until = Instant::now() + WAIT;
        while !cond(self) {
            assert!(
                Instant::now() < until,
                "not within {WAIT:?}: {what}; on {}:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(POLL);
        }
    }

    pub fn click(&self, e: &Element) {
        self.session_call("POST", &format!("/element/{}/click", e.0), Some(&json!({})));
    }

    /// Types `text` into `e` (after what it holds).
    pub fn send_keys(&self, e: &Element, text: &str) {
        self.session_call(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(&json!({ "text": text })),
        );
    }

    /// Empties an input.
    pub fn clear(&self, e: &Element) {
        self.session_call("POST", &format!("/element/{}/clear", e.0), Some(&json!({})));
    }

    /// The element's rendered text (what is visible of it).
    pub fn text(&self, e: &Element) -> String {
        self.session_call("GET", &format!("/element/{}/text", e.0), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Whether the element is displayed.
    pub fn displayed(&self, e: &Element) -> bool {
        self.session_call("GET", &format!("/element/{}/displayed", e.0), None) == true
    }

    /// The value of a computed CSS property of the element.
    pub fn css(&self, e: &Element, property: &str) -> String {
        self.session_call("GET", &format!("/element/{}/css/{property}", e.0), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The page's title.
    pub fn title(&self) -> String {
        self.session_call("GET", "/title", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The current DOM serialized.
    pub fn source(&self) -> String {
        self.session_call("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A PNG screenshot of the viewport, written to `path`; returns the bytes.
    pub fn screenshot(&self, path: &Path) -> Vec<u8> {
        let b64 = self.session_call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 screenshot"))
            .expect("screenshot is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, &png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        png
    }

    /// Ends the session (Chromium quits) and the driver.
    pub fn quit(mut self) {
        if let Some(sid) = self.session.take() {
            if let Err(e) = self.call("DELETE", &format!("/session/{sid}"), None) {
                panic!("delete session: {e:?}");
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(sid) = self.session.take() {
            let _ = self.call_within(10, "DELETE", &format!("/session/{sid}"), None);
        }
        // whatever chromedriver started and is still there (the browser after a
        // failed delete), then chromedriver itself: by pid
        let pid = self.driver.id();
        for p in descendants(pid) {
            let _ = Command::new("kill")
                .args(["-KILL", &p.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.driver.kill();
        let until = Instant::now() + STOP_WAIT;
        while Instant::now() < until {
            if !matches!(self.driver.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(POLL);
        }
    }
}

/// A reference to an element on the current page.
#[derive(Debug, Clone)]
pub struct Element(pub String);
