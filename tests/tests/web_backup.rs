//! System tests of System > Configuration, with curl as the browser, against
//! the real config service: the export (passwords as the mask) imported
//! again, all or nothing, keeps the stored passwords; a refused document
//! changes nothing and shows the refusal beside it.

use doorphone_interfaces::config::Config1Proxy;
use doorphone_system_tests::web::{ADMIN, Browser, USER, WebRig};
use serde_json::{Value, json};

const SECRET: &str = "s3cret-of-the-door";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configuration_is_exported_masked_and_imported_all_or_nothing() {
    let rig = WebRig::start(true).await.unwrap();
    let config = Config1Proxy::new(&rig.conn).await.unwrap();
    let one = json!([{"id": 1, "user": "door", "password": SECRET, "server": "pbx.example.com"}]);
    let out = rig
        .doorctl(&["config", "set", "accounts", &one.to_string()], None)
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let secrets = || async {
        serde_json::from_str::<Value>(&config.export_secrets().await.unwrap()).unwrap()
    };

    let user = Browser::new(&rig, "tenant");
    user.log_in(USER).await;
    assert_eq!(user.get("/system/config/export").await.status, 403);

    let browser = Browser::new(&rig, "admin");
    browser.log_in(ADMIN).await;
    let export = browser.get("/system/config/export").await;
    assert_eq!(export.status, 200, "{}", export.body);
    assert!(
        export
            .head
            .contains("content-disposition: attachment; filename=\"doorphone-config.json\""),
        "{}",
        export.head
    );
    assert!(
        !export.body.contains(SECRET),
        "the password reached the browser"
    );
    let mut document: Value = serde_json::from_str(&export.body).unwrap();
    assert_eq!(document["accounts"][0]["password"], "********");

    let form = browser.get("/system/config").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.csrf();

    // Refused: one bad value, the rest fine; nothing changes.
    let before = secrets().await;
    document["device"]["name"] = json!("Back gate");
    document["calls"]["max_call_time"] = json!(4);
    let text = serde_json::to_string_pretty(&document).unwrap();
    let page = browser
        .post("/system/config", &[("csrf", &csrf), ("document", &text)])
        .await;
    assert_eq!(page.status, 422, "{}", page.body);
    let field = page.body.find("<textarea name=\"document\"").unwrap();
    let refusal = page
        .body
        .find("<span class=\"error\" id=\"error-document\">calls.max_call_time: 4 is out of range")
        .unwrap_or_else(|| panic!("no refusal beside the document: {}", page.body));
    assert!(refusal > field);
    assert!(
        page.body.contains("&#34;Back gate&#34;") || page.body.contains("&quot;Back gate&quot;"),
        "the document kept: {}",
        page.body
    );
    assert_eq!(secrets().await, before, "nothing changed");

    // Imported: the new name, and the masked password keeps the stored one.
    document["calls"]["max_call_time"] = json!(240);
    let text = serde_json::to_string_pretty(&document).unwrap();
    let page = browser
        .post("/system/config", &[("csrf", &csrf), ("document", &text)])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Imported"), "{}", page.body);
    let after = secrets().await;
    assert_eq!(after["device"]["name"], "Back gate");
    assert_eq!(after["calls"]["max_call_time"], 240);
    assert_eq!(after["accounts"][0]["password"], SECRET);
}
