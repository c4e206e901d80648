//! The web pages in a real browser: headless Chromium driven by chromedriver
//! over WebDriver (logging in, Call Feature, Dial Plan, the other pages, the
//! Open button, the session's time-out), against the real config, relay and media services, with a
//! screenshot of every page it visits under `target/web-screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use doorphone_interfaces::relay::Relay1Proxy;
use doorphone_system_tests::sip::free_port;
use doorphone_system_tests::web::{ADMIN, WebRig};
use doorphone_system_tests::{PATIENCE, bin_dir, eventually};
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::StreamExt;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;

/// chromedriver on a loopback port, ended with the test.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (the chromium-driver package)");
        let driver = Driver { child, port };
        eventually(PATIENCE, Duration::from_millis(50), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .await
        .expect("chromedriver listens");
        driver
    }

    /// A headless Chromium that takes the door phone's self-signed
    /// certificate (and runs as root, so without its sandbox).
    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert("acceptInsecureCerts".into(), true.into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--ignore-certificate-errors",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--window-size=1280,1024",
                ],
            }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a browser session")
    }
}

/// The browser and where its screenshots go.
struct Tab<'r> {
    client: Client,
    rig: &'r WebRig,
    shots: PathBuf,
    count: usize,
}

impl Tab<'_> {
    fn url(&self, path: &str) -> String {
        self.rig.api.url(path)
    }

    /// The path of the page the browser shows.
    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Saves what the browser shows as `NN-name.png`.
    async fn shot(&mut self, name: &str) {
        self.count += 1;
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let file = self.shots.join(format!("{:02}-{name}.png", self.count));
        std::fs::write(&file, png).unwrap();
    }

    async fn visit(&mut self, path: &str, name: &str) {
        self.client.goto(&self.url(path)).await.unwrap();
        self.shot(name).await;
    }

    /// Waits until the element `css` holds `text` (the page the browser
    /// navigates to after a click), and returns the element's text.
    async fn until_text(&self, css: &str, text: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && let Ok(shown) = element.text().await
                && shown.contains(text)
            {
                return shown;
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} in {css} on {}: {}",
                self.path().await,
                self.client.source().await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `value` into the field named `name`, replacing what it held.
    async fn fill(&self, name: &str, value: &str) {
        let field = self
            .client
            .find(Locator::Css(&format!("[name=\"{name}\"]")))
            .await
            .unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn field_value(&self, name: &str) -> String {
        self.client
            .find(Locator::Css(&format!("[name=\"{name}\"]")))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }
}

fn config_get(rig: &WebRig, key: &str) -> String {
    let out = rig.doorctl(&["config", "get", key], None).unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_configures_opens_the_door_and_loses_its_session() {
    let rig = WebRig::start(true).await.unwrap();
    let out = rig
        .doorctl(&["config", "set", "web.session_timeout", "60"], None)
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let shots = bin_dir()
        .parent()
        .expect("target/<profile> sits in target")
        .join("web-screenshots");
    // Only this run's screenshots.
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let driver = Driver::start().await;
    let mut tab = Tab {
        client: driver.browser().await,
        rig: &rig,
        shots,
        count: 0,
    };

    // Logging in.
    tab.visit("/status", "login").await;
    assert_eq!(tab.path().await, "/login");
    tab.fill("name", ADMIN.0).await;
    tab.fill("password", ADMIN.1).await;
    tab.click("main form button[type=submit]").await;
    tab.until_text("main h1", "Status").await;
    tab.until_text("ul.services", "relay: up").await;
    tab.shot("status").await;

    // Intercom > Call Feature: a value the service takes, then one it refuses.
    tab.click("nav a[href=\"/intercom/call-feature\"]").await;
    tab.until_text("main h1", "Call Feature").await;
    assert_eq!(tab.field_value("max_call_time").await, "300");
    tab.shot("call-feature").await;
    tab.fill("max_call_time", "240").await;
    tab.click("main form button[type=submit]").await;
    tab.until_text("p.message", "Saved").await;
    tab.shot("call-feature-saved").await;
    assert_eq!(config_get(&rig, "calls.max_call_time"), "240");

    tab.fill("max_call_time", "4").await;
    tab.click("main form button[type=submit]").await;
    let refusal = tab
        .until_text(
            "#error-max_call_time",
            "calls.max_call_time: 4 is out of range",
        )
        .await;
    tab.shot("call-feature-refused").await;
    // Beside its field: the refusal follows the field in the same paragraph.
    let beside = tab
        .client
        .find(Locator::Css(
            "p:has(> label > input[name=\"max_call_time\"]) > #error-max_call_time",
        ))
        .await
        .unwrap();
    assert_eq!(beside.text().await.unwrap(), refusal);
    assert_eq!(
        tab.field_value("max_call_time").await,
        "4",
        "typed value kept"
    );
    assert_eq!(
        config_get(&rig, "calls.max_call_time"),
        "240",
        "nothing changed"
    );

    // Intercom > Dial Plan: a rule added.
    tab.click("nav a[href=\"/intercom/dial-plan\"]").await;
    tab.until_text("p.count", "0 of 0 rules").await;
    tab.shot("dial-plan").await;
    tab.fill("name", "Concierge").await;
    tab.fill("prefix", "9").await;
    tab.fill("targets", "sip:concierge@example.com 192.0.2.7")
        .await;
    tab.click("#rule-new button[type=submit]").await;
    tab.until_text("p.message", "Rule 1 added").await;
    tab.until_text("p.count", "1 of 1 rules").await;
    tab.shot("dial-plan-added").await;
    let out = rig.doorctl(&["dialplan", "list"], None).unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    let row = listed
        .lines()
        .find(|l| l.contains("Concierge"))
        .unwrap_or_else(|| panic!("no rule listed: {listed}"));
    for part in ["1", "9", "auto", "sip:concierge@example.com", "192.0.2.7"] {
        assert!(
            row.split(|c: char| c.is_whitespace() || c == ',')
                .any(|w| w == part),
            "{part}: {row}"
        );
    }

    // The other pages, through the menu: each shows its heading.
    for (link, heading, name) in [
        ("/intercom/basic", "Intercom > Basic", "basic"),
        ("/intercom/multicast", "Intercom > Multicast", "multicast"),
        ("/account/basic", "Account > Basic", "account-basic"),
        (
            "/account/advanced",
            "Account > Advanced",
            "account-advanced",
        ),
        ("/relays", "Relays and inputs", "relays"),
        ("/contacts", "Contacts", "contacts"),
        ("/media", "Media", "media"),
        ("/history", "Call history", "history"),
        ("/system/config", "System > Configuration", "configuration"),
    ] {
        tab.click(&format!("nav a[href=\"{link}\"]")).await;
        tab.until_text("main h1", heading).await;
        tab.shot(name).await;
    }

    // The status page's Open button.
    let relay = Relay1Proxy::new(&rig.conn).await.unwrap();
    let mut opened = relay.receive_door_opened().await.unwrap();
    tab.click("nav a[href=\"/status\"]").await;
    tab.until_text("main h1", "Status").await;
    tab.click("form[action=\"/doors/A/open\"] button").await;
    tab.until_text("p.message", "Door A opened").await;
    tab.shot("door-opened").await;
    let signal = tokio::time::timeout(PATIENCE, opened.next())
        .await
        .expect("DoorOpened in time")
        .unwrap();
    let args = signal.args().unwrap();
    assert_eq!((args.relay, args.source), ("A", "api"));

    // The session outlives a pause shorter than its time-out (a page that
    // does not refresh itself: the status page would keep it alive)...
    tab.visit("/intercom/call-feature", "idle-page").await;
    let last = Instant::now();
    tokio::time::sleep_until(last + Duration::from_secs(45)).await;
    tab.visit("/intercom/call-feature", "still-logged-in").await;
    assert_eq!(tab.path().await, "/intercom/call-feature");
    let last = Instant::now();
    // ...and ends 60 s after the last request: the next one goes to the form.
    tokio::time::sleep_until(last + Duration::from_secs(61)).await;
    tab.client
        .goto(&tab.url("/intercom/call-feature"))
        .await
        .unwrap();
    tab.until_text("main h1", "Log in").await;
    assert_eq!(tab.path().await, "/login");
    tab.shot("session-ended").await;
    tab.client.close().await.unwrap();
}
