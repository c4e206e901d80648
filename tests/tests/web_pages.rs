//! System tests of the web pages of `doorphone-web`, with curl as the
//! browser (a cookie jar, forms posted as a browser posts them), against the
//! real config, relay and media services.

use doorphone_interfaces::config::Config1Proxy;
use doorphone_interfaces::relay::Relay1Proxy;
use doorphone_interfaces::sip;
use doorphone_system_tests::PATIENCE;
use doorphone_system_tests::rig::{Rig, until_state};
use doorphone_system_tests::sip::{Callee, Caller};
use doorphone_system_tests::web::{ADMIN, Api, Browser, USER, WebRig};
use futures_util::StreamExt;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_in_takes_the_forms_token_and_gives_a_strict_cookie() {
    let rig = WebRig::start(true).await.unwrap();
    let browser = Browser::new(&rig, "admin");
    let form = browser.get("/login").await;
    assert_eq!(form.status, 200);
    for header in [
        "content-security-policy: default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
    ] {
        assert!(form.head.contains(header), "{header}\n{}", form.head);
    }
    assert!(!form.body.contains("<script"), "no script on a page");
    let csrf = form.csrf();

    // Without the form's token, with a wrong password, then right.
    let page = browser
        .post("/login", &[("name", ADMIN.0), ("password", ADMIN.1)])
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    let page = browser
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("name", ADMIN.0),
                ("password", "wrong password"),
            ],
        )
        .await;
    assert_eq!(page.status, 401);
    assert!(
        page.body.contains("wrong name or password"),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    let page = browser
        .post(
            "/login",
            &[("csrf", &csrf), ("name", ADMIN.0), ("password", ADMIN.1)],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(page.head.contains("location: /status"), "{}", page.head);
    let cookie = page
        .head
        .lines()
        .find(|l| l.starts_with("set-cookie: __host-doorphone-session="))
        .unwrap_or_else(|| panic!("no session cookie: {}", page.head))
        .to_owned();
    for part in ["; secure", "; httponly", "; samesite=strict", "; path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }

    let status = browser.get("/status").await;
    assert_eq!(status.status, 200);
    assert!(status.body.contains("relay: up"), "{}", status.body);
    assert!(
        status.body.contains("action=\"/doors/A/open\""),
        "{}",
        status.body
    );

    // Logging out ends the session: the pages send back to the form.
    let csrf = status.csrf();
    let page = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(page.status, 303);
    let page = browser.get("/status").await;
    assert_eq!(page.status, 303);
    assert!(page.head.contains("location: /login"), "{}", page.head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_button_opens_the_door_and_a_form_without_its_token_does_not() {
    let rig = WebRig::start(true).await.unwrap();
    let relay = Relay1Proxy::new(&rig.conn).await.unwrap();
    let mut opened = relay.receive_door_opened().await.unwrap();
    let browser = Browser::new(&rig, "tenant");
    let status = browser.log_in(USER).await;
    let page = browser.post("/doors/A/open", &[("csrf", "forged")]).await;
    assert_eq!(page.status, 403, "{}", page.body);
    let page = browser
        .post("/doors/A/open", &[("csrf", &status.csrf())])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Door A opened"), "{}", page.body);
    let signal = tokio::time::timeout(PATIENCE, opened.next())
        .await
        .expect("DoorOpened in time")
        .unwrap();
    let args = signal.args().unwrap();
    // The first opening seen is the button's: the forged form opened nothing.
    assert_eq!((args.relay, args.source), ("A", "api"));

    // A user's session sees no configuration page.
    let page = browser.get("/intercom/call-feature").await;
    assert_eq!(page.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_feature_shows_the_refusal_beside_the_field_keeps_the_typing_and_changes_nothing() {
    let rig = WebRig::start(true).await.unwrap();
    let browser = Browser::new(&rig, "admin");
    browser.log_in(ADMIN).await;
    let form = browser.get("/intercom/call-feature").await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(
        form.body
            .contains("name=\"max_call_time\" value=\"300\" min=\"0\" max=\"7200\""),
        "{}",
        form.body
    );
    let csrf = form.csrf();
    let submit = |max_call_time: &'static str| {
        let csrf = csrf.clone();
        let browser = &browser;
        async move {
            browser
                .post(
                    "/intercom/call-feature",
                    &[
                        ("csrf", &csrf),
                        ("max_call_time", max_call_time),
                        ("max_dial_in_time", "60"),
                        ("max_dial_out_time", "60"),
                        ("auto_answer.delay", "0"),
                        ("auto_answer.ip", "on"),
                        ("auto_answer.mode", "video"),
                        ("hang_up_after_open.timeout", "5"),
                        ("hang_up_after_open.types", "api"),
                    ],
                )
                .await
        }
    };
    let config_get = || {
        let out = rig
            .doorctl(&["config", "get", "calls.max_call_time"], None)
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };

    let page = submit("4").await;
    assert_eq!(page.status, 422, "{}", page.body);
    let field = page
        .body
        .find("name=\"max_call_time\" value=\"4\"")
        .unwrap_or_else(|| panic!("the typed 4 is gone: {}", page.body));
    let refusal = page
        .body
        .find("<span class=\"error\" id=\"error-max_call_time\">calls.max_call_time: 4 is out of range")
        .unwrap_or_else(|| panic!("no refusal beside the field: {}", page.body));
    assert!(
        refusal > field && !page.body[field..refusal].contains("<input"),
        "the refusal is beside its field"
    );
    assert_eq!(config_get(), "300", "nothing changed");

    let page = submit("240").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Saved"), "{}", page.body);
    assert_eq!(config_get(), "240");
    let out = rig
        .doorctl(&["config", "get", "calls.hang_up_after_open.types"], None)
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "[\n  \"api\"\n]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_users_the_pages_show_only_the_notice() {
    let rig = WebRig::start(false).await.unwrap();
    let browser = Browser::new(&rig, "nobody");
    for path in ["/login", "/status"] {
        let page = browser.get(path).await;
        assert_eq!(page.status, 503, "{path}");
        assert!(page.body.contains("doorctl web passwd"), "{}", page.body);
        assert!(!page.body.contains("<form"), "{}", page.body);
    }
}

/// Through the SIP agent, with SIPp calling: the status page's Answer and Hang
/// up buttons act on the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_answers_and_hangs_up_a_ringing_call() {
    let rig = Rig::start(10, |doc| {
        doc["calls"]["auto_answer"]["ip"] = serde_json::json!(false)
    })
    .await;
    let dir = tempfile::Builder::new()
        .prefix("doorphone-web")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let api = Api::start(&rig.bus, dir.path(), true).await.unwrap();
    let browser = Browser::at(&api, dir.path(), "admin");
    browser.log_in(ADMIN).await;
    let mut states = rig.states().await;

    let mut caller = rig.call("caller", "door", "visitor", false, Caller::AnsweredUntilBye);
    until_state(&mut states, sip::call_state::RINGING).await;
    let status = browser.get("/status").await;
    let marker = "action=\"/calls/";
    let start = status.body.find(marker).expect("an Answer button") + marker.len();
    let id = status.body[start..start + status.body[start..].find('/').unwrap()].to_owned();
    assert!(
        status
            .body
            .contains(&format!("action=\"/calls/{id}/answer\"")),
        "{}",
        status.body
    );
    let page = browser
        .post(&format!("/calls/{id}/answer"), &[("csrf", &status.csrf())])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(&format!("Call {id} answered")),
        "{}",
        page.body
    );
    until_state(&mut states, sip::call_state::ANSWERED).await;

    let page = browser
        .post(&format!("/calls/{id}/hangup"), &[("csrf", &status.csrf())])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(&format!("Call {id} ended")),
        "{}",
        page.body
    );
    caller.succeeds(PATIENCE).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dial_plan_page_lists_searches_pages_adds_edits_and_removes_rules() {
    let rig = WebRig::start(true).await.unwrap();
    let config = Config1Proxy::new(&rig.conn).await.unwrap();
    for n in 1..=60 {
        config
            .add_dial_rule(
                &format!("Flat {n}"),
                &format!("{}", 100 + n),
                "auto",
                &["sip:concierge@example.com"],
            )
            .await
            .unwrap();
    }
    let browser = Browser::new(&rig, "admin");
    browser.log_in(ADMIN).await;
    let list = || {
        let out = rig.doorctl(&["dialplan", "list", "--json"], None).unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };

    // 50 a page, the next page has the rest.
    let page = browser.get("/intercom/dial-plan").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains("60 of 60 rules (at most 500), page 1 of 2"),
        "{}",
        page.body
    );
    assert_eq!(
        page.body.matches("<div class=\"rule\" id=\"rule-").count(),
        51,
        "50 and the new one"
    );
    assert!(page.body.contains("value=\"150\""), "{}", page.body);
    assert!(!page.body.contains("value=\"151\""), "{}", page.body);
    let page = browser.get("/intercom/dial-plan?q=&page=2").await;
    assert!(page.body.contains("page 2 of 2"), "{}", page.body);
    assert!(page.body.contains("value=\"160\""), "{}", page.body);
    assert!(!page.body.contains("value=\"150\""), "{}", page.body);

    // Search by prefix and by name.
    let page = browser.get("/intercom/dial-plan?q=15").await;
    assert!(page.body.contains("11 of 60 rules"), "{}", page.body);
    let page = browser.get("/intercom/dial-plan?q=flat+7").await;
    assert!(page.body.contains("1 of 60 rules"), "{}", page.body);
    assert!(page.body.contains("value=\"Flat 7\""), "{}", page.body);
    let csrf = page.csrf();

    // A refused rule: beside its field, typed values kept, nothing changed.
    let page = browser
        .post(
            "/intercom/dial-plan",
            &[
                ("csrf", &csrf),
                ("name", "Lobby"),
                ("prefix", "10 1"),
                ("account", "1"),
                ("targets", "sip:lobby@example.com"),
            ],
        )
        .await;
    assert_eq!(page.status, 422, "{}", page.body);
    let new = &page.body[page.body.find("id=\"rule-new\"").unwrap()..];
    let field = new
        .find("name=\"prefix\" value=\"10 1\"")
        .expect("the typed prefix");
    let refusal = new
        .find("<span class=\"error\">dial_plan[61].prefix: &#34;10 1&#34; must be")
        .or_else(|| {
            new.find("<span class=\"error\">dial_plan[61].prefix: &quot;10 1&quot; must be")
        })
        .unwrap_or_else(|| panic!("no refusal beside the prefix: {new}"));
    assert!(
        refusal > field && !new[field..refusal].contains("<input"),
        "{new}"
    );
    assert!(
        new.contains("value=\"Lobby\"") && new.contains("value=\"1\" selected"),
        "{new}"
    );
    assert_eq!(list().as_array().unwrap().len(), 60, "nothing changed");

    // Added, edited, removed.
    let page = browser
        .post(
            "/intercom/dial-plan",
            &[
                ("csrf", &csrf),
                ("name", "Lobby"),
                ("prefix", "9"),
                ("account", "1"),
                ("targets", "sip:lobby@example.com 192.0.2.7"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Rule 61 added"), "{}", page.body);
    let rule = list()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == 61)
        .cloned()
        .unwrap();
    assert_eq!(
        (
            &rule["name"],
            &rule["prefix"],
            &rule["account"],
            &rule["replace"]
        ),
        (
            &json!("Lobby"),
            &json!("9"),
            &json!("1"),
            &json!(["sip:lobby@example.com", "192.0.2.7"])
        )
    );
    let page = browser
        .post(
            "/intercom/dial-plan/61",
            &[
                ("csrf", &csrf),
                ("name", "Lobby desk"),
                ("prefix", "101"),
                ("account", "auto"),
                ("targets", "192.0.2.8"),
            ],
        )
        .await;
    assert_eq!(page.status, 422, "a prefix already used: {}", page.body);
    assert!(
        page.body.contains("prefix &#34;101&#34; is already used")
            || page.body.contains("prefix &quot;101&quot; is already used"),
        "{}",
        page.body
    );
    let page = browser
        .post(
            "/intercom/dial-plan/61",
            &[
                ("csrf", &csrf),
                ("name", "Lobby desk"),
                ("prefix", "9"),
                ("account", "auto"),
                ("targets", "192.0.2.8"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Rule 61 saved"), "{}", page.body);
    let rule = list()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == 61)
        .cloned()
        .unwrap();
    assert_eq!(
        (&rule["name"], &rule["replace"]),
        (&json!("Lobby desk"), &json!(["192.0.2.8"]))
    );
    let page = browser
        .post("/intercom/dial-plan/61/remove", &[("csrf", "forged")])
        .await;
    assert_eq!(page.status, 403);
    let page = browser
        .post("/intercom/dial-plan/61/remove", &[("csrf", &csrf)])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Rule 61 removed"), "{}", page.body);
    assert!(list().as_array().unwrap().iter().all(|r| r["id"] != 61));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_multicast_page_saves_the_groups_in_order_and_shows_a_refusal_beside_its_field() {
    let rig = WebRig::start(true).await.unwrap();
    let browser = Browser::new(&rig, "admin");
    browser.log_in(ADMIN).await;
    let form = browser.get("/intercom/multicast").await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert_eq!(form.body.matches("<tr id=\"group-").count(), 10);
    let csrf = form.csrf();
    let section = || {
        let out = rig.doorctl(&["config", "get", "multicast"], None).unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let before = section();
    // Rows 2 and 4 filled: the second one is no multicast address.
    let submit = |address: &'static str| {
        let csrf = csrf.clone();
        let browser = &browser;
        async move {
            browser
                .post(
                    "/intercom/multicast",
                    &[
                        ("csrf", &csrf),
                        ("paging_barge", "2"),
                        ("listen.2.address", "239.1.1.1"),
                        ("listen.2.port", "5004"),
                        ("listen.2.label", "All call"),
                        ("listen.4.address", address),
                        ("listen.4.port", "5006"),
                        ("listen.4.label", "Lobby"),
                    ],
                )
                .await
        }
    };
    let page = submit("192.0.2.1").await;
    assert_eq!(page.status, 422, "{}", page.body);
    let row = &page.body[page.body.find("<tr id=\"group-4\">").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    let field = row
        .find("name=\"listen.4.address\" value=\"192.0.2.1\"")
        .unwrap_or_else(|| panic!("the typed address is gone: {row}"));
    let refusal = row
        .find("<span class=\"error\">multicast.listen[2].address: 192.0.2.1 is not a multicast address")
        .unwrap_or_else(|| panic!("no refusal beside row 4's address: {row}"));
    assert!(
        refusal > field && !row[field..refusal].contains("<input"),
        "{row}"
    );
    assert!(row.contains("value=\"Lobby\""), "{row}");
    assert_eq!(section(), before, "nothing changed");

    let page = submit("239.1.1.2").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Saved"), "{}", page.body);
    assert_eq!(
        section(),
        json!({
            "paging_barge": 2,
            "paging_priority": false,
            "listen": [
                {"address": "239.1.1.1", "port": 5004, "label": "All call"},
                {"address": "239.1.1.2", "port": 5006, "label": "Lobby"},
            ],
        })
    );
    let form = browser.get("/intercom/multicast").await;
    let first = &form.body[form.body.find("<tr id=\"group-1\">").unwrap()..];
    assert!(first.find("239.1.1.1").unwrap() < first.find("239.1.1.2").unwrap());
}

/// Through the SIP agent, with SIPp calling and called: the history page
/// lists the ended calls, newest first, and filters them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_page_lists_the_ended_calls_and_filters_them() {
    let rig = Rig::start(10, |doc| {
        doc["calls"]["auto_answer"]["ip"] = serde_json::json!(false)
    })
    .await;
    let dir = tempfile::Builder::new()
        .prefix("doorphone-web")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let api = Api::start(&rig.bus, dir.path(), true).await.unwrap();
    let mut states = rig.states().await;

    // A call in, answered and ended by the door; then a call out, refused.
    let mut caller = rig.call("caller", "door", "visitor", false, Caller::AnsweredUntilBye);
    until_state(&mut states, sip::call_state::RINGING).await;
    let calls = api
        .curl_as(ADMIN, &[&api.url("/api/v1/calls")])
        .await
        .unwrap()
        .json();
    let id = calls[0]["id"].as_str().unwrap().to_owned();
    let one = api.url(&format!("/api/v1/calls/{id}"));
    let answer = format!("{one}/answer");
    assert_eq!(
        api.curl_as(ADMIN, &["-X", "POST", &answer])
            .await
            .unwrap()
            .status,
        204
    );
    until_state(&mut states, sip::call_state::ANSWERED).await;
    assert_eq!(
        api.curl_as(ADMIN, &["-X", "DELETE", &one])
            .await
            .unwrap()
            .status,
        204
    );
    caller.succeeds(PATIENCE).await.unwrap();
    let mut callee = rig.callee("callee", Callee::Refuse("486 Busy Here"));
    let number = serde_json::json!({"number": format!("127.0.0.1:{}", callee.port)}).to_string();
    let calls = api.url("/api/v1/calls");
    let reply = api
        .curl_as(ADMIN, &["-X", "POST", "--data-binary", &number, &calls])
        .await
        .unwrap();
    assert_eq!(reply.status, 201, "{reply:?}");
    callee.succeeds(PATIENCE).await.unwrap();

    // A user's page; the agent records a call just after its end.
    let browser = Browser::at(&api, dir.path(), "tenant");
    browser.log_in(USER).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let page = loop {
        let page = browser.get("/history").await;
        assert_eq!(page.status, 200, "{}", page.body);
        if page.body.contains("2 of 2 calls") || tokio::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        page.body.contains("2 of 2 calls, page 1 of 1"),
        "{}",
        page.body
    );
    let out = page.body.find("<td>out</td>").expect("the call out");
    let inward = page.body.find("<td>in</td>").expect("the call in");
    assert!(out < inward, "newest first: {}", page.body);
    assert!(page.body.contains("<td>486</td>"), "{}", page.body);

    for (query, shown, hidden) in [
        ("direction=in", "<td>in</td>", "<td>out</td>"),
        ("direction=out", "<td>out</td>", "<td>in</td>"),
        ("answered=yes", "<td>in</td>", "<td>out</td>"),
        ("answered=no", "<td>out</td>", "<td>in</td>"),
    ] {
        let page = browser.get(&format!("/history?{query}")).await;
        assert!(page.body.contains("1 of 2 calls"), "{query}: {}", page.body);
        assert!(
            page.body.contains(shown) && !page.body.contains(hidden),
            "{query}: {}",
            page.body
        );
    }
    let page = browser
        .get(&format!("/history?q=127.0.0.1%3A{}", callee.port))
        .await;
    assert!(page.body.contains("1 of 2 calls"), "{}", page.body);
    assert!(page.body.contains("<td>out</td>"), "{}", page.body);
}
