//! System tests of the web pages Intercom > Basic, Relays and inputs,
//! Contacts and Media, with curl as the browser, against the real config
//! service: each form saves its section, a refusal shows beside the field it
//! names with what was typed kept and nothing changed, and the passwords of
//! the actions never reach the browser.

use doorphone_interfaces::config::Config1Proxy;
use doorphone_system_tests::web::{ADMIN, Browser, Page, USER, WebRig};
use serde_json::{Value, json};

const SECRET: &str = "ftp-s3cret-of-the-door";

fn section(rig: &WebRig, name: &str) -> Value {
    let out = rig.doorctl(&["config", "get", name], None).unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn set(rig: &WebRig, name: &str, value: &Value) {
    let out = rig
        .doorctl(&["config", "set", name, &value.to_string()], None)
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// The element that begins with `start` (`<tr id="button-3">`) up to its
/// `end` (`</tr>`).
fn part<'p>(page: &'p Page, start: &str, end: &str) -> &'p str {
    let from = page
        .body
        .find(start)
        .unwrap_or_else(|| panic!("no {start}: {}", page.body));
    let rest = &page.body[from..];
    &rest[..rest.find(end).map_or(rest.len(), |e| e + end.len())]
}

/// `refusal` stands right after the field `name` holding `value`: no other
/// field between them.
fn beside(html: &str, name: &str, value: &str, refusal: &str) {
    let field = html
        .find(&format!("name=\"{name}\" value=\"{value}\""))
        .unwrap_or_else(|| panic!("the field {name} does not hold {value:?}: {html}"));
    let error = html[field..]
        .find(&format!(">{refusal}"))
        .unwrap_or_else(|| panic!("no refusal {refusal:?} beside {name}: {html}"));
    let between = &html[field..field + error];
    let span = between
        .rfind("<span class=\"error\"")
        .unwrap_or_else(|| panic!("the refusal {refusal:?} is not shown as one: {html}"));
    assert!(
        !between[..span].contains("<input") && !between.contains("<select"),
        "the refusal is not beside {name}: {html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercom_basic_saves_the_buttons_and_the_actions_and_refuses_beside_the_field() {
    let rig = WebRig::start(true).await.unwrap();
    set(
        &rig,
        "actions",
        &json!({"ftp": {"url": "ftp://127.0.0.1/snapshots/", "user": "door", "password": SECRET}}),
    );
    let browser = Browser::new(&rig, "admin");
    browser.log_in(ADMIN).await;
    let form = browser.get("/intercom/basic").await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert_eq!(form.body.matches("<tr id=\"button-").count(), 16);
    assert!(
        !form.body.contains(SECRET),
        "the password reached the browser"
    );
    assert!(
        form.body
            .contains("type=\"password\" name=\"actions.1.ftp.password\" value=\"********\""),
        "{}",
        form.body
    );
    let csrf = form.csrf();
    let before = section(&rig, "buttons");
    assert_eq!(before, json!([]));

    // Button 3, a sequence whose no-answer HTTP action has no URL.
    let buttons = |url: &'static str| {
        let csrf = csrf.clone();
        let browser = &browser;
        async move {
            browser
                .post(
                    "/intercom/basic",
                    &[
                        ("csrf", &csrf),
                        ("button.1.call_type", "group"),
                        ("button.3.call_type", "sequence"),
                        ("button.3.numbers", "200 sip:201@127.0.0.1"),
                        ("button.3.timeout", "20"),
                        ("button.3.no_answer.relays", "A"),
                        ("button.3.no_answer.actions.http", "on"),
                        ("button.3.no_answer.http_url", url),
                    ],
                )
                .await
        }
    };
    let page = buttons("").await;
    assert_eq!(page.status, 422, "{}", page.body);
    let row = part(&page, "<tr id=\"button-3\">", "</tr>");
    beside(
        row,
        "button.3.no_answer.http_url",
        "",
        "buttons[3].no_answer.http_url: required when the http action is chosen",
    );
    assert!(
        row.contains("value=\"200 sip:201@127.0.0.1\""),
        "typed kept: {row}"
    );
    assert!(
        row.contains("name=\"button.3.no_answer.actions.http\" checked"),
        "{row}"
    );
    assert_eq!(section(&rig, "buttons"), before, "nothing changed");

    let page = buttons("http://127.0.0.1:8080/missed").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Saved"), "{}", page.body);
    assert_eq!(
        section(&rig, "buttons"),
        json!([{
            "button": 3,
            "call_type": "sequence",
            "numbers": ["200", "sip:201@127.0.0.1"],
            "group_number": "",
            "when_refused": "call_next",
            "timeout": 20,
            "no_answer": {"relays": ["A"], "actions": ["http"], "http_url": "http://127.0.0.1:8080/missed"},
        }])
    );
    let form = browser.get("/intercom/basic").await;
    let row = part(&form, "<tr id=\"button-3\">", "</tr>");
    assert!(row.contains("<option value=\"sequence\" selected"), "{row}");

    // The actions: a refusal beside the FTP URL, then the mask sent back.
    let actions = |url: &'static str| {
        let csrf = csrf.clone();
        let browser = &browser;
        async move {
            browser
                .post(
                    "/intercom/basic/actions",
                    &[
                        ("csrf", &csrf),
                        ("actions.1.ftp.url", url),
                        ("actions.1.ftp.user", "gate"),
                        ("actions.1.ftp.password", "********"),
                        ("actions.1.email.tls", "none"),
                    ],
                )
                .await
        }
    };
    let stored = section(&rig, "actions");
    let page = actions("http://127.0.0.1/snapshots/").await;
    assert_eq!(page.status, 422, "{}", page.body);
    beside(
        &page.body,
        "actions.1.ftp.url",
        "http://127.0.0.1/snapshots/",
        "actions.ftp.url:",
    );
    assert_eq!(section(&rig, "actions"), stored, "nothing changed");
    let page = actions("ftp://127.0.0.1:2121/door/").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        !page.body.contains(SECRET),
        "the password reached the browser"
    );
    let config = Config1Proxy::new(&rig.conn).await.unwrap();
    let doc: Value = serde_json::from_str(&config.export_secrets().await.unwrap()).unwrap();
    assert_eq!(
        doc["actions"]["ftp"],
        json!({"url": "ftp://127.0.0.1:2121/door/", "user": "gate", "password": SECRET}),
        "the mask kept the password"
    );

    // A user has no such page.
    let user = Browser::new(&rig, "user");
    user.log_in(USER).await;
    assert_eq!(user.get("/intercom/basic").await.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_and_inputs_save_and_a_refusal_shows_in_the_table_it_names() {
    let rig = WebRig::start(true).await.unwrap();
    let browser = Browser::new(&rig, "admin");
    browser.log_in(ADMIN).await;
    let form = browser.get("/relays").await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert_eq!(form.body.matches("<tr id=\"relay-").count(), 8);
    assert_eq!(form.body.matches("<tr id=\"input-").count(), 16);
    let first = part(&form, "<tr id=\"relay-1\">", "</tr>");
    assert!(first.contains("name=\"relay.1.id\" value=\"A\""), "{first}");
    let csrf = form.csrf();

    let relays = |second: &'static str| {
        let csrf = csrf.clone();
        let browser = &browser;
        async move {
            let mut fields = vec![
                ("csrf", csrf.as_str()),
                ("relay.1.id", "A"),
                ("relay.1.name", "Door"),
                ("relay.1.gpio", "17"),
                ("relay.1.trigger_delay", "0"),
                ("relay.1.hold", "3"),
                ("relay.1.dtmf_code", "#"),
                ("dtmf_authority", "contacts"),
            ];
            if !second.is_empty() {
                fields.extend([
                    ("relay.2.id", second),
                    ("relay.2.name", "Gate"),
                    ("relay.2.gpio", "27"),
                    ("relay.2.active_low", "on"),
                    ("relay.2.hold", "5"),
                    ("relay.2.dtmf_code", "*1"),
                ]);
            }
            browser.post("/relays", &fields).await
        }
    };
    let page = relays("B").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Saved"), "{}", page.body);
    assert_eq!(
        section(&rig, "relays")[1],
        json!({"id": "B", "name": "Gate", "gpio": 27, "active_low": true,
               "trigger_delay": 0, "hold": 5, "dtmf_code": "*1"})
    );
    assert_eq!(section(&rig, "dtmf_authority"), json!("contacts"));

    // An input on relay A's line is refused beside its GPIO field.
    let inputs = |gpio: &'static str| {
        let csrf = csrf.clone();
        let browser = &browser;
        async move {
            browser
                .post(
                    "/relays/inputs",
                    &[
                        ("csrf", &csrf),
                        ("input.2.gpio", gpio),
                        ("input.2.debounce_ms", ""),
                        ("input.2.opens", "B"),
                        ("input.4.gpio", "23"),
                        ("input.4.active_low", "on"),
                        ("input.4.debounce_ms", "20"),
                        ("input.4.presses", "3"),
                    ],
                )
                .await
        }
    };
    let page = inputs("17").await;
    assert_eq!(page.status, 422, "{}", page.body);
    let row = part(&page, "<tr id=\"input-2\">", "</tr>");
    beside(
        row,
        "input.2.gpio",
        "17",
        "inputs[1].gpio: gpio 17 is the output of relay A",
    );
    assert_eq!(section(&rig, "inputs"), json!([]), "nothing changed");
    let page = inputs("22").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        section(&rig, "inputs"),
        json!([
            {"gpio": 22, "active_low": false, "debounce_ms": 50, "opens": "B"},
            {"gpio": 23, "active_low": true, "debounce_ms": 20, "presses": 3},
        ])
    );

    // Relay B cannot go while an input opens it: the refusal shows beside
    // that input's field, and nothing changed.
    let stored = section(&rig, "relays");
    let page = relays("").await;
    assert_eq!(page.status, 422, "{}", page.body);
    let row = part(&page, "<tr id=\"input-1\">", "</tr>");
    beside(
        row,
        "input.1.opens",
        "B",
        "inputs[1].opens: no relay &#34;B&#34; is configured",
    );
    assert_eq!(section(&rig, "relays"), stored, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contacts_page_adds_edits_searches_and_removes_and_refuses_beside_the_field() {
    let rig = WebRig::start(true).await.unwrap();
    let config = Config1Proxy::new(&rig.conn).await.unwrap();
    for n in 1..=55 {
        config
            .add_contact(&format!("Flat {n}"), &format!("{}", 100 + n), "auto", false)
            .await
            .unwrap();
    }
    let browser = Browser::new(&rig, "admin");
    browser.log_in(ADMIN).await;
    let page = browser.get("/contacts").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains("55 of 55 contacts (at most 1000), page 1 of 2"),
        "{}",
        page.body
    );
    assert_eq!(
        page.body
            .matches("<div class=\"rule\" id=\"contact-")
            .count(),
        51,
        "50 and the new one"
    );
    let page = browser.get("/contacts?q=flat%2055&page=1").await;
    assert!(page.body.contains("1 of 55 contacts"), "{}", page.body);
    let csrf = page.csrf();

    let add = |number: &'static str| {
        let csrf = csrf.clone();
        let browser = &browser;
        async move {
            browser
                .post(
                    "/contacts",
                    &[
                        ("csrf", &csrf),
                        ("name", "Concierge"),
                        ("number", number),
                        ("account", "1"),
                        ("whitelist", "on"),
                    ],
                )
                .await
        }
    };
    let page = add("not a number!").await;
    assert_eq!(page.status, 422, "{}", page.body);
    let form = part(&page, "<div class=\"rule\" id=\"contact-new\">", "</div>");
    beside(
        form,
        "number",
        "not a number!",
        "contacts[56].number: &#34;not a number!&#34; is not a SIP user",
    );
    assert!(form.contains("value=\"Concierge\""), "typed kept: {form}");
    assert_eq!(
        config.list_contacts().await.unwrap().len(),
        55,
        "nothing changed"
    );

    let page = add("sip:200@127.0.0.1").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Contact 56 added"), "{}", page.body);
    let added = config.list_contacts().await.unwrap();
    let c = added.iter().find(|c| c.id == 56).unwrap();
    assert_eq!(
        (
            c.name.as_str(),
            c.number.as_str(),
            c.account.as_str(),
            c.whitelist
        ),
        ("Concierge", "sip:200@127.0.0.1", "1", true)
    );

    let page = browser
        .post(
            "/contacts/56",
            &[
                ("csrf", &csrf),
                ("name", "Guard"),
                ("number", "192.168.1.20:5062"),
                ("account", "auto"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Contact 56 saved"), "{}", page.body);
    let c = config.list_contacts().await.unwrap();
    let c = c.iter().find(|c| c.id == 56).unwrap();
    assert_eq!(
        (c.name.as_str(), c.number.as_str(), c.whitelist),
        ("Guard", "192.168.1.20:5062", false)
    );

    let page = browser
        .post("/contacts/56/remove", &[("csrf", &csrf)])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Contact 56 removed"), "{}", page.body);
    assert!(
        config
            .list_contacts()
            .await
            .unwrap()
            .iter()
            .all(|c| c.id != 56)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_media_page_orders_the_codecs_and_refuses_an_odd_port_beside_it() {
    let rig = WebRig::start(true).await.unwrap();
    let browser = Browser::new(&rig, "admin");
    browser.log_in(ADMIN).await;
    let form = browser.get("/media").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let first = part(&form, "<tr id=\"audio-1\">", "</tr>");
    assert!(first.contains("<option value=\"PCMU\" selected"), "{first}");
    let csrf = form.csrf();
    let before = section(&rig, "media");

    let save = |first_port: &'static str| {
        let csrf = csrf.clone();
        let browser = &browser;
        async move {
            browser
                .post(
                    "/media",
                    &[
                        ("csrf", &csrf),
                        ("audio.1", "opus"),
                        ("audio.2", "PCMU"),
                        ("audio.3", ""),
                        ("audio.4", "PCMA"),
                        ("video.H264", "on"),
                        ("rtp_ports.1", first_port),
                        ("rtp_ports.2", "12999"),
                        ("rtp_latching", "on"),
                    ],
                )
                .await
        }
    };
    let page = save("12001").await;
    assert_eq!(page.status, 422, "{}", page.body);
    beside(
        &page.body,
        "rtp_ports.1",
        "12001",
        "media.rtp_ports[1]: 12001 must be even",
    );
    assert_eq!(section(&rig, "media"), before, "nothing changed");
    let page = save("12000").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        section(&rig, "media"),
        json!({
            "audio_codecs": ["opus", "PCMU", "PCMA"],
            "video_codecs": ["H264"],
            "rtp_ports": [12000, 12999],
            "rtp_latching": true,
        })
    );
    let form = browser.get("/media").await;
    let third = part(&form, "<tr id=\"audio-3\">", "</tr>");
    assert!(third.contains("<option value=\"PCMA\" selected"), "{third}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_feature_sets_dnd_per_account_and_the_direct_ip_calls() {
    let rig = WebRig::start(true).await.unwrap();
    let config = Config1Proxy::new(&rig.conn).await.unwrap();
    let one = json!([{"id": 1, "user": "door", "password": SECRET, "server": "127.0.0.1"}]);
    set(&rig, "accounts", &one);
    let accounts = || async {
        let doc: Value = serde_json::from_str(&config.export_secrets().await.unwrap()).unwrap();
        doc["accounts"].clone()
    };
    let browser = Browser::new(&rig, "admin");
    browser.log_in(ADMIN).await;
    let form = browser.get("/intercom/call-feature").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let first = part(&form, "<tr id=\"account-1\">", "</tr>");
    assert!(first.contains("<option value=\"486\" selected"), "{first}");
    assert!(form.body.contains("<tr id=\"account-2\">"), "both accounts");
    assert!(
        !form.body.contains(SECRET),
        "the password reached the browser"
    );
    let csrf = form.csrf();

    let dnd = |off_code: &'static str| {
        let csrf = csrf.clone();
        let browser = &browser;
        async move {
            browser
                .post(
                    "/intercom/call-feature/dnd",
                    &[
                        ("csrf", &csrf),
                        ("account.1.dnd.enabled", "on"),
                        ("account.1.dnd.return_code", "603"),
                        ("account.1.dnd.on_code", "*78"),
                        ("account.1.dnd.off_code", "*79"),
                        ("account.2.dnd.return_code", "486"),
                        ("account.2.dnd.on_code", "78"),
                        ("account.2.dnd.off_code", off_code),
                    ],
                )
                .await
        }
    };
    let before = accounts().await;
    let page = dnd("off!").await;
    assert_eq!(page.status, 422, "{}", page.body);
    let row = part(&page, "<tr id=\"account-2\">", "</tr>");
    beside(
        row,
        "account.2.dnd.off_code",
        "off!",
        "accounts[2].dnd.off_code:",
    );
    let row = part(&page, "<tr id=\"account-1\">", "</tr>");
    assert!(
        row.contains("<option value=\"603\" selected"),
        "typed kept: {row}"
    );
    assert_eq!(accounts().await, before, "nothing changed");

    let page = dnd("").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Saved"), "{}", page.body);
    let after = accounts().await;
    assert_eq!(
        after[0]["dnd"],
        json!({"enabled": true, "return_code": 603, "on_code": "*78", "off_code": "*79"})
    );
    assert_eq!(
        (&after[0]["user"], &after[0]["password"]),
        (&json!("door"), &json!(SECRET)),
        "the account's other fields as they were"
    );
    assert_eq!(after[1]["dnd"]["off_code"], "");

    // Direct IP calls: a port out of range beside its field, then saved.
    let device = |port: &'static str| {
        let csrf = csrf.clone();
        let browser = &browser;
        async move {
            browser
                .post(
                    "/intercom/call-feature/device",
                    &[
                        ("csrf", &csrf),
                        ("device.1.name", "Front door"),
                        ("device.1.ip_call.enabled", "on"),
                        ("device.1.ip_call.port", port),
                        ("device.1.ip_call.prevent_sip_hacking", "on"),
                        ("device.1.ip_call.media_encryption", "optional"),
                    ],
                )
                .await
        }
    };
    let before = section(&rig, "device");
    let page = device("70000").await;
    assert_eq!(page.status, 422, "{}", page.body);
    beside(
        &page.body,
        "device.1.ip_call.port",
        "70000",
        "device.ip_call.port: 70000 is out of range",
    );
    assert_eq!(section(&rig, "device"), before, "nothing changed");
    let page = device("5062").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        section(&rig, "device"),
        json!({"name": "Front door", "ip_call": {"enabled": true, "port": 5062,
               "prevent_sip_hacking": true, "media_encryption": "optional"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configuration_page_lists_the_web_users_and_sets_the_session_timeout() {
    let rig = WebRig::start(true).await.unwrap();
    let browser = Browser::new(&rig, "admin");
    browser.log_in(ADMIN).await;
    let form = browser.get("/system/config").await;
    assert_eq!(form.status, 200, "{}", form.body);
    for (name, role) in [ADMIN.0, USER.0].into_iter().zip(["admin", "user"]) {
        assert!(
            form.body
                .contains(&format!("<tr><td>{name}</td><td>{role}</td></tr>")),
            "{}",
            form.body
        );
    }
    assert!(!form.body.contains("$argon2"), "a hash reached the browser");
    let csrf = form.csrf();
    let save = |timeout: &'static str| {
        let csrf = csrf.clone();
        let browser = &browser;
        async move {
            browser
                .post(
                    "/system/config/web",
                    &[("csrf", &csrf), ("web.1.session_timeout", timeout)],
                )
                .await
        }
    };
    let page = save("30").await;
    assert_eq!(page.status, 422, "{}", page.body);
    beside(
        &page.body,
        "web.1.session_timeout",
        "30",
        "web.session_timeout: 30 is out of range",
    );
    assert_eq!(section(&rig, "web.session_timeout"), json!(900));
    let page = save("3600").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(section(&rig, "web.session_timeout"), json!(3600));
    assert_eq!(
        section(&rig, "web")["users"].as_array().map(Vec::len),
        Some(2),
        "the users stay"
    );
}

/// The status page refreshes itself as `/status?auto`, which (like its
/// snapshot) is not the user's activity: a page left open still ends its
/// session after the time-out (the sessions' unit tests show the clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_refreshes_itself_as_the_pages_own_request() {
    let rig = WebRig::start(true).await.unwrap();
    let browser = Browser::new(&rig, "admin");
    let status = browser.log_in(ADMIN).await;
    assert!(
        status
            .body
            .contains("<meta http-equiv=\"refresh\" content=\"5; url=/status?auto\">"),
        "{}",
        status.body
    );
    let refreshed = browser.get("/status?auto").await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert!(
        refreshed.body.contains("<h1>Status</h1>"),
        "{}",
        refreshed.body
    );
}
