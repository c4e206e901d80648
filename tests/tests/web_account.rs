//! System tests of the web pages Account > Basic and Account > Advanced, with
//! curl as the browser, against the real config service: both accounts on one
//! form, a refusal beside its field, and the passwords never sent to the
//! browser (the mask is, and a mask sent back keeps the stored password).

use doorphone_interfaces::config::Config1Proxy;
use doorphone_system_tests::web::{ADMIN, Browser, WebRig};
use serde_json::{Value, json};

const SECRET: &str = "s3cret-of-the-door";

fn ok(rig: &WebRig, args: &[&str]) {
    let out = rig.doorctl(args, None).unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
}

/// The stored accounts, passwords included (as root).
async fn accounts(config: &Config1Proxy<'_>) -> Value {
    let doc: Value = serde_json::from_str(&config.export_secrets().await.unwrap()).unwrap();
    doc["accounts"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_pages_show_the_mask_keep_the_password_and_refuse_beside_the_field() {
    let rig = WebRig::start(true).await.unwrap();
    let config = Config1Proxy::new(&rig.conn).await.unwrap();
    let one = json!([{"id": 1, "user": "door", "password": SECRET, "server": "pbx.example.com"}]);
    ok(&rig, &["config", "set", "accounts", &one.to_string()]);
    let browser = Browser::new(&rig, "admin");
    browser.log_in(ADMIN).await;

    let basic = browser.get("/account/basic").await;
    assert_eq!(basic.status, 200, "{}", basic.body);
    assert!(
        !basic.body.contains(SECRET),
        "the password reached the browser"
    );
    assert!(
        basic
            .body
            .contains("type=\"password\" name=\"1.password\" value=\"********\""),
        "{}",
        basic.body
    );
    assert!(basic.body.contains("id=\"account-2\""), "both accounts");
    let csrf = basic.csrf();

    // Basic, the mask sent back: the other fields change, the password stays.
    let page = browser
        .post(
            "/account/basic",
            &[
                ("csrf", &csrf),
                ("1.enabled", "on"),
                ("1.label", "Office"),
                ("1.user", "gate"),
                ("1.password", "********"),
                ("1.server", "pbx.example.com:5070"),
                ("1.transport", "tcp"),
                ("2.user", "lobby"),
                ("2.transport", "udp"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Saved"), "{}", page.body);
    assert!(!page.body.contains(SECRET));
    let stored = accounts(&config).await;
    let one = &stored[0];
    assert_eq!(
        (
            &one["enabled"],
            &one["user"],
            &one["password"],
            &one["server"],
            &one["transport"]
        ),
        (
            &json!(true),
            &json!("gate"),
            &json!(SECRET),
            &json!("pbx.example.com:5070"),
            &json!("tcp")
        )
    );
    assert_eq!(stored[1]["user"], "lobby");

    // Advanced: refused beside the field, typed value kept, nothing changed.
    let before = accounts(&config).await;
    let advanced = |expires: &'static str| {
        let csrf = csrf.clone();
        let browser = &browser;
        async move {
            browser
                .post(
                    "/account/advanced",
                    &[
                        ("csrf", &csrf),
                        ("1.register_expires", expires),
                        ("1.dtmf_mode", "info"),
                        ("1.media_encryption", "optional"),
                        ("1.trusted_proxies", "192.0.2.10 198.51.100.0/24"),
                        ("2.register_expires", "1800"),
                        ("2.dtmf_mode", "rfc4733"),
                        ("2.media_encryption", "off"),
                    ],
                )
                .await
        }
    };
    let page = advanced("29").await;
    assert_eq!(page.status, 422, "{}", page.body);
    let field = page
        .body
        .find("name=\"1.register_expires\" value=\"29\"")
        .unwrap_or_else(|| panic!("the typed 29 is gone: {}", page.body));
    let refusal = page
        .body
        .find("<span class=\"error\" id=\"error-1.register_expires\">accounts[1].register_expires: 29 is out of range")
        .unwrap_or_else(|| panic!("no refusal beside the field: {}", page.body));
    assert!(refusal > field && !page.body[field..refusal].contains("<input"));
    assert_eq!(accounts(&config).await, before, "nothing changed");

    let page = advanced("3600").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let one = &accounts(&config).await[0];
    assert_eq!(
        (
            &one["register_expires"],
            &one["dtmf_mode"],
            &one["media_encryption"],
            &one["trusted_proxies"]
        ),
        (
            &json!(3600),
            &json!("info"),
            &json!("optional"),
            &json!(["192.0.2.10", "198.51.100.0/24"])
        )
    );
    assert_eq!(
        (&one["user"], &one["password"]),
        (&json!("gate"), &json!(SECRET)),
        "Basic's fields kept"
    );

    // A new password typed is stored and is not sent back.
    let page = browser
        .post(
            "/account/basic",
            &[
                ("csrf", &csrf),
                ("1.user", "gate"),
                ("1.password", "another-secret"),
                ("1.server", "pbx.example.com"),
                ("1.transport", "udp"),
                ("2.user", "lobby"),
                ("2.transport", "udp"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("another-secret"));
    assert_eq!(accounts(&config).await[0]["password"], "another-secret");
}
