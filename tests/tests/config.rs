//! System tests of `doorphone-config`: the real binary as its own user on a private
//! bus that loads the project's policy files, driven through `org.doorphone.Config1`.

use doorphone_interfaces::config::{self, Config1Proxy};
use doorphone_interfaces::json;
use doorphone_system_tests::{
    Bus, ConfigDb, PATIENCE, check_released_interface, repo_root, run_config_to_exit, start_config,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

struct Rig {
    bus: Bus,
    db: ConfigDb,
    service: doorphone_system_tests::Service,
    conn: zbus::Connection,
}

impl Rig {
    async fn start() -> Rig {
        let bus = Bus::start().expect("private bus");
        let db = ConfigDb::new().expect("database folder");
        let service = start_config(&bus, &db).await.expect("config service");
        let conn = bus.connect().await.expect("client connection");
        Rig {
            bus,
            db,
            service,
            conn,
        }
    }

    async fn proxy(&self) -> Config1Proxy<'static> {
        Config1Proxy::new(&self.conn).await.expect("proxy")
    }

    async fn restart(&mut self) {
        self.service.stop();
        self.service = start_config(&self.bus, &self.db).await.expect("restart");
        self.conn = self.bus.connect().await.expect("reconnect");
    }
}

async fn set(proxy: &Config1Proxy<'_>, key: &str, value: Value) -> Result<(), config::Error> {
    let variant = json::to_variant(&value).expect("a D-Bus value");
    proxy.set(key, &variant).await
}

async fn get(proxy: &Config1Proxy<'_>, key: &str) -> Value {
    let value = proxy.get(key).await.expect("get");
    json::from_variant(&value).expect("JSON")
}

async fn revision(proxy: &Config1Proxy<'_>) -> u64 {
    // The property cache would hide a missed change; ask the service.
    let props = zbus::fdo::PropertiesProxy::builder(proxy.inner().connection())
        .destination(config::BUS_NAME)
        .path(config::OBJECT_PATH)
        .build()
        .await
        .unwrap();
    let value = props
        .get(config::INTERFACE.try_into().unwrap(), "Revision")
        .await
        .unwrap();
    u64::try_from(value).unwrap()
}

fn account(id: u32) -> Value {
    json!({
        "id": id, "enabled": true, "label": format!("Account {id}"),
        "display_name": "Front door", "user": format!("100{id}"), "auth_user": format!("100{id}"),
        "password": format!("secret-{id}"), "server": "pbx.example.com:5060",
        "transport": "udp", "register_expires": 1800, "dtmf_mode": "rfc4733",
        "prevent_sip_hacking": false,
        "dnd": {"enabled": false, "return_code": 486, "on_code": "78", "off_code": "79"}
    })
}

fn contacts(n: u32) -> Value {
    Value::Array(
        (1..=n)
            .map(|i| json!({"id": i, "name": format!("Flat {i}"), "number": format!("{}", 1000 + i), "account": "auto", "whitelist": i % 2 == 0}))
            .collect(),
    )
}

fn dial_rules(n: u32) -> Value {
    Value::Array(
        (1..=n)
            .map(|i| json!({"id": i, "name": format!("Rule {i}"), "prefix": format!("9{i}"), "account": "auto", "replace": [format!("sip:{i}@pbx.example.com")]}))
            .collect(),
    )
}

fn listen(n: u16) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"address": format!("239.1.1.{}", i + 1), "port": 5000 + 2 * i, "label": format!("Zone {i}")}))
            .collect(),
    )
}

fn button(b: u32, numbers: usize) -> Value {
    json!({
        "button": b, "call_type": "group",
        "numbers": (0..numbers).map(|i| format!("{}", 200 + i)).collect::<Vec<_>>(),
        "group_number": "", "when_refused": "end_this_call", "timeout": 30,
        "no_answer": {"relays": ["A"], "actions": [], "http_url": ""}
    })
}

/// (key, a value just inside the rule, a value just outside, what the refusal says)
fn rules() -> Vec<(&'static str, Value, Value, &'static str)> {
    let long = |n: usize| Value::String("x".repeat(n));
    vec![
        (
            "device.name",
            long(64),
            long(65),
            "device.name: at most 64 characters",
        ),
        (
            "device.name",
            json!("Gate"),
            json!(""),
            "device.name: must not be empty",
        ),
        (
            "device.ip_call.port",
            json!(1),
            json!(0),
            "device.ip_call.port: 0 is out of range (1-65535)",
        ),
        (
            "device.ip_call.port",
            json!(65535),
            json!(65536),
            "device.ip_call.port: 65536 is out of range (1-65535)",
        ),
        (
            "accounts",
            json!([account(2)]),
            json!([account(3)]),
            "accounts[3].id: account ids are 1 and 2 only",
        ),
        (
            "accounts",
            json!([account(1), account(2)]),
            json!([account(1), account(1)]),
            "accounts: duplicate account id 1",
        ),
        (
            "accounts.1.register_expires",
            json!(30),
            json!(29),
            "accounts[1].register_expires: 29 is out of range (30-86400)",
        ),
        (
            "accounts.1.register_expires",
            json!(86400),
            json!(86401),
            "accounts[1].register_expires: 86401 is out of range (30-86400)",
        ),
        (
            "accounts.1.transport",
            json!("tls"),
            json!("sctp"),
            "accounts[1].transport: unknown variant `sctp`",
        ),
        (
            "accounts.1.dtmf_mode",
            json!("both"),
            json!("dtmf"),
            "accounts[1].dtmf_mode: unknown variant `dtmf`",
        ),
        (
            "accounts.1.dnd.return_code",
            json!(404),
            json!(487),
            "accounts[1].dnd.return_code: 487 is not one of 404, 480, 486, 603",
        ),
        (
            "accounts.1.dnd.return_code",
            json!(603),
            json!(600),
            "accounts[1].dnd.return_code: 600 is not one of",
        ),
        (
            "accounts.1.dnd.on_code",
            json!("*78#123456789012"),
            json!("*78#1234567890123"),
            "accounts[1].dnd.on_code: \"*78#1234567890123\" must be at most 16 of 0-9, * and #",
        ),
        (
            "accounts.1.dnd.off_code",
            json!(""),
            json!("7a"),
            "accounts[1].dnd.off_code: \"7a\" must be at most 16 of 0-9, * and #",
        ),
        (
            "accounts.1.trusted_proxies",
            json!([
                "192.0.2.10",
                "198.51.100.0/24",
                "2001:db8::/32",
                "10.0.0.1",
                "10.0.0.2",
                "10.0.0.3",
                "10.0.0.4",
                "10.0.0.5"
            ]),
            json!([
                "192.0.2.10",
                "198.51.100.0/24",
                "2001:db8::/32",
                "10.0.0.1",
                "10.0.0.2",
                "10.0.0.3",
                "10.0.0.4",
                "10.0.0.5",
                "10.0.0.6"
            ]),
            "accounts[1].trusted_proxies: at most 8 entries",
        ),
        (
            "accounts.1.trusted_proxies",
            json!(["192.0.2.0/32"]),
            json!(["192.0.2.0/33"]),
            "accounts[1].trusted_proxies[1]: \"192.0.2.0/33\" is not an IP address or CIDR prefix",
        ),
        (
            "accounts.1.trusted_proxies",
            json!([]),
            json!(["pbx.example.com"]),
            "accounts[1].trusted_proxies[1]: \"pbx.example.com\" is not an IP address",
        ),
        (
            "accounts.1.media_encryption",
            json!("mandatory"),
            json!("srtp"),
            "accounts[1].media_encryption: unknown variant `srtp`",
        ),
        (
            "device.ip_call.media_encryption",
            json!("optional"),
            json!("on"),
            "device.ip_call.media_encryption: unknown variant `on`",
        ),
        (
            "device.ip_call.prevent_sip_hacking",
            json!(true),
            json!("yes"),
            "device.ip_call.prevent_sip_hacking: invalid type",
        ),
        (
            "accounts.1.user",
            json!("door-1"),
            json!(""),
            "accounts[1].user: required when the account is enabled",
        ),
        (
            "accounts.1.server",
            json!("10.0.0.1:5080"),
            json!("pbx:"),
            "accounts[1].server: \"pbx:\" is not host or host:port",
        ),
        (
            "calls.max_call_time",
            json!(0),
            json!(4),
            "calls.max_call_time: 4 is out of range (0 or 5-7200)",
        ),
        (
            "calls.max_call_time",
            json!(7200),
            json!(7201),
            "calls.max_call_time: 7201 is out of range (0 or 5-7200)",
        ),
        (
            "calls.max_call_time",
            json!(5),
            json!(-1),
            "calls.max_call_time: invalid value: integer `-1`",
        ),
        (
            "calls.max_dial_in_time",
            json!(5),
            json!(4),
            "calls.max_dial_in_time: 4 is out of range (5-300)",
        ),
        (
            "calls.max_dial_in_time",
            json!(300),
            json!(301),
            "calls.max_dial_in_time: 301 is out of range (5-300)",
        ),
        (
            "calls.max_dial_out_time",
            json!(5),
            json!(4),
            "calls.max_dial_out_time: 4 is out of range (5-300)",
        ),
        (
            "calls.max_dial_out_time",
            json!(300),
            json!(301),
            "calls.max_dial_out_time: 301 is out of range (5-300)",
        ),
        (
            "calls.auto_answer.delay",
            json!(30),
            json!(31),
            "calls.auto_answer.delay: 31 is out of range (0-30)",
        ),
        (
            "calls.auto_answer.mode",
            json!("audio"),
            json!("hd"),
            "calls.auto_answer.mode: unknown variant `hd`",
        ),
        (
            "calls.auto_answer.ip",
            json!(false),
            json!("yes"),
            "calls.auto_answer.ip: invalid type",
        ),
        (
            "calls.hang_up_after_open.types",
            json!(["dtmf", "api", "input"]),
            json!(["no_answer"]),
            "calls.hang_up_after_open.types[1]: unknown variant `no_answer`",
        ),
        (
            "calls.hang_up_after_open.types",
            json!([]),
            json!(["dtmf", "dtmf"]),
            "calls.hang_up_after_open.types: duplicate type Dtmf",
        ),
        (
            "calls.hang_up_after_open.timeout",
            json!(1),
            json!(0),
            "calls.hang_up_after_open.timeout: 0 is out of range (1-15)",
        ),
        (
            "calls.hang_up_after_open.timeout",
            json!(15),
            json!(16),
            "calls.hang_up_after_open.timeout: 16 is out of range (1-15)",
        ),
        (
            "contacts",
            contacts(1000),
            contacts(1001),
            "contacts: at most 1000 contacts",
        ),
        (
            "contacts",
            json!([{"id": 1, "name": "A", "number": "sip:200@pbx.example.com"}]),
            json!([{"id": 1, "name": "A", "number": "2 00"}]),
            "contacts[1].number: \"2 00\" is not a SIP user, SIP URI or IP address",
        ),
        (
            "contacts",
            json!([{"id": 1, "name": "A", "number": "192.168.1.20:5062"}]),
            json!([{"id": 1, "name": "A", "number": "192.168.1.256"}]),
            "contacts[1].number: \"192.168.1.256\" is not a SIP user",
        ),
        (
            "contacts",
            json!([{"id": 1, "number": "200", "account": 2}]),
            json!([{"id": 1, "number": "200", "account": 3}]),
            "contacts[1].account: invalid value: integer `3`, expected \"auto\", 1 or 2",
        ),
        (
            "contacts",
            contacts(2),
            json!([{"id": 1, "number": "200"}, {"id": 1, "number": "201"}]),
            "contacts: duplicate contact id 1",
        ),
        (
            "buttons",
            json!([button(16, 1)]),
            json!([button(17, 1)]),
            "buttons[17].button: 17 is out of range (1-16)",
        ),
        (
            "buttons",
            json!([button(1, 1)]),
            json!([button(0, 1)]),
            "buttons[0].button: 0 is out of range (1-16)",
        ),
        (
            "buttons",
            json!([button(1, 16)]),
            json!([button(1, 17)]),
            "buttons[1].numbers: at most 16 numbers",
        ),
        (
            "buttons",
            json!([button(1, 1)]),
            json!([button(1, 0)]),
            "buttons[1].numbers: at least 1 number (or a group_number)",
        ),
        (
            "buttons",
            json!([button(1, 1), button(2, 1)]),
            json!([button(1, 1), button(1, 1)]),
            "buttons: duplicate button 1",
        ),
        (
            "buttons.1.timeout",
            json!(5),
            json!(4),
            "buttons[1].timeout: 4 is out of range (5-120)",
        ),
        (
            "buttons.1.timeout",
            json!(120),
            json!(121),
            "buttons[1].timeout: 121 is out of range (5-120)",
        ),
        (
            "buttons.1.when_refused",
            json!("end_all_calls"),
            json!("call_next"),
            "buttons[1].when_refused: a group call takes end_this_call or end_all_calls",
        ),
        (
            "buttons.1.no_answer.relays",
            json!(["A"]),
            json!(["Z"]),
            "buttons[1].no_answer.relays: no relay \"Z\" is configured",
        ),
        (
            "buttons.1.no_answer",
            json!({"actions": ["http"], "http_url": "http://127.0.0.1/missed"}),
            json!({"actions": ["http"]}),
            "buttons[1].no_answer.http_url: required when the http action is chosen",
        ),
        (
            "buttons.1.numbers.1",
            json!("sip:200@10.0.0.1"),
            json!("sip:@10.0.0.1"),
            "buttons[1].numbers[1]: \"sip:@10.0.0.1\" is not a SIP user, SIP URI or IP address",
        ),
        (
            "dial_plan",
            dial_rules(500),
            dial_rules(501),
            "dial_plan: at most 500 rules",
        ),
        (
            "dial_plan.1.replace",
            json!(["1", "2", "3", "4", "5"]),
            json!(["1", "2", "3", "4", "5", "6"]),
            "dial_plan[1].replace: 1-5 targets",
        ),
        (
            "dial_plan.1.replace",
            json!(["1"]),
            json!([]),
            "dial_plan[1].replace: 1-5 targets",
        ),
        (
            "dial_plan.2.prefix",
            json!("8"),
            json!("91"),
            "dial_plan[2].prefix: prefix \"91\" is already used by another rule",
        ),
        (
            "multicast.paging_barge",
            json!(10),
            json!(11),
            "multicast.paging_barge: 11 is out of range (0-10)",
        ),
        (
            "multicast.listen",
            listen(10),
            listen(11),
            "multicast.listen: at most 10 addresses",
        ),
        (
            "multicast.listen.1.address",
            json!("239.255.255.255"),
            json!("240.0.0.0"),
            "multicast.listen[1].address: 240.0.0.0 is not a multicast address (224.0.0.0-239.255.255.255)",
        ),
        (
            "multicast.listen.1.address",
            json!("224.0.0.0"),
            json!("223.255.255.255"),
            "multicast.listen[1].address: 223.255.255.255 is not a multicast address",
        ),
        (
            "multicast.listen.2.port",
            json!(6000),
            json!(5000),
            "multicast.listen[2].port: port 5000 is already used by another address",
        ),
        (
            "multicast.listen.1.port",
            json!(65535),
            json!(0),
            "multicast.listen[1].port: 0 is out of range (1-65535)",
        ),
        (
            "relays.A.hold",
            json!(1),
            json!(0),
            "relays[A].hold: 0 is out of range (1-10)",
        ),
        (
            "relays.A.hold",
            json!(10),
            json!(11),
            "relays[A].hold: 11 is out of range (1-10)",
        ),
        (
            "relays.A.trigger_delay",
            json!(10),
            json!(11),
            "relays[A].trigger_delay: 11 is out of range (0-10)",
        ),
        (
            "relays.A.dtmf_code",
            json!("*#09"),
            json!("12345"),
            "relays[A].dtmf_code: \"12345\" must be at most 4 of 0-9, * and #",
        ),
        (
            "relays.A.dtmf_code",
            json!("1"),
            json!("12a"),
            "relays[A].dtmf_code: \"12a\" must be at most 4 of 0-9, * and #",
        ),
        (
            "dtmf_authority",
            json!("contacts"),
            json!("guests"),
            "dtmf_authority: unknown variant `guests`",
        ),
        (
            "actions.email.tls",
            json!("starttls"),
            json!("ssl"),
            "actions.email.tls: unknown variant `ssl`",
        ),
        (
            "actions.ftp.url",
            json!("ftp://127.0.0.1:2121/snapshots/"),
            json!("http://127.0.0.1/"),
            "actions.ftp.url: \"http://127.0.0.1/\" is not a ftp:// URL with a host",
        ),
        (
            "actions.email.to",
            json!(["guard@example.com"]),
            json!(["guard"]),
            "actions.email.to[1]: \"guard\" is not an e-mail address",
        ),
        (
            "media.rtp_ports",
            json!([10000, 10003]),
            json!([10000, 10002]),
            "media.rtp_ports: the range must hold at least 2 RTP/RTCP port pairs",
        ),
        (
            "media.rtp_ports",
            json!([1024, 65535]),
            json!([1023, 2000]),
            "media.rtp_ports[1]: 1023 is out of range (1024-65535)",
        ),
        (
            "media.rtp_ports",
            json!([10000, 20000]),
            json!([10001, 20000]),
            "media.rtp_ports[1]: 10001 must be even",
        ),
        (
            "media.rtp_latching",
            json!(true),
            json!("yes"),
            "media.rtp_latching: invalid type",
        ),
        (
            "media.audio_codecs",
            json!(["opus"]),
            json!([]),
            "media.audio_codecs: at least 1 codec",
        ),
        (
            "media.audio_codecs",
            json!(["PCMA", "PCMU"]),
            json!(["PCMU", "PCMU"]),
            "media.audio_codecs: duplicate codec Pcmu",
        ),
        (
            "media.audio_codecs",
            json!(["G722"]),
            json!(["speex"]),
            "media.audio_codecs[1]: unknown variant `speex`",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_takes_a_value_just_inside_and_refuses_one_just_outside() {
    let rig = Rig::start().await;
    let proxy = rig.proxy().await;
    // Objects the rules address by id.
    set(&proxy, "accounts", json!([account(1)])).await.unwrap();
    set(&proxy, "buttons", json!([button(1, 1)])).await.unwrap();
    set(&proxy, "dial_plan", dial_rules(2)).await.unwrap();
    set(&proxy, "multicast.listen", listen(2)).await.unwrap();
    set(
        &proxy,
        "actions.email",
        json!({"smtp": "127.0.0.1:2525", "from": "door@example.com", "to": ["guard@example.com"]}),
    )
    .await
    .unwrap();

    for (key, inside, outside, says) in rules() {
        set(&proxy, key, inside.clone())
            .await
            .unwrap_or_else(|e| panic!("{key} = {inside} was refused: {e}"));
        let before = revision(&proxy).await;
        let kept = get(&proxy, key).await;
        match set(&proxy, key, outside.clone()).await {
            Err(config::Error::Invalid(message)) => assert!(
                message.contains(says),
                "{key} = {outside}: the refusal {message:?} does not say {says:?}"
            ),
            other => panic!("{key} = {outside} was not refused as Invalid: {other:?}"),
        }
        assert_eq!(
            revision(&proxy).await,
            before,
            "{key}: a refusal bumped the revision"
        );
        assert_eq!(
            get(&proxy, key).await,
            kept,
            "{key}: a refusal changed the value"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_value_is_a_typed_error_and_unknown_keys_are_not_found() {
    let rig = Rig::start().await;
    let proxy = rig.proxy().await;
    let err = set(&proxy, "calls.max_call_time", json!(4))
        .await
        .unwrap_err();
    assert!(matches!(err, config::Error::Invalid(_)), "{err:?}");
    // The error name on the wire is the one clients match on.
    let reply = rig
        .conn
        .call_method(
            Some(config::BUS_NAME),
            config::OBJECT_PATH,
            Some(config::INTERFACE),
            "Set",
            &("calls.max_call_time", zbus::Variant::from(4i64)),
        )
        .await;
    match reply {
        Err(zbus::Error::MethodError(name, Some(message), _)) => {
            assert_eq!(name.as_str(), "org.doorphone.Config1.Error.Invalid");
            assert_eq!(
                message,
                "calls.max_call_time: 4 is out of range (0 or 5-7200)"
            );
        }
        other => panic!("unexpected reply {other:?}"),
    }
    for key in ["calls.nothing", "accounts.2.user", "relays.B.hold", ""] {
        assert!(
            matches!(proxy.get(key).await, Err(config::Error::NotFound(_))),
            "{key}"
        );
        assert!(
            matches!(
                set(&proxy, key, json!(1)).await,
                Err(config::Error::NotFound(_))
            ),
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_export_is_stable_and_a_bad_import_changes_nothing() {
    let rig = Rig::start().await;
    let proxy = rig.proxy().await;
    let mut doc: Value = serde_json::from_str(&proxy.export().await.unwrap()).unwrap();
    doc["accounts"] = json!([account(1), account(2)]);
    doc["contacts"] = contacts(3);
    doc["dial_plan"] = dial_rules(3);
    doc["multicast"]["listen"] = listen(3);
    doc["buttons"] = json!([button(1, 3)]);
    doc["actions"]["ftp"] =
        json!({"url": "ftp://127.0.0.1:2121/snapshots/", "user": "door", "password": "ftp-secret"});
    proxy.import(&doc.to_string()).await.unwrap();

    let first = proxy.export().await.unwrap();
    let exported: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(exported["accounts"][0]["password"], "********");
    assert_eq!(exported["actions"]["ftp"]["password"], "********");
    assert_eq!(exported["actions"]["email"]["password"], "");
    let revision_after_import = revision(&proxy).await;

    // Importing what was exported changes nothing, masked passwords included.
    proxy.import(&first).await.unwrap();
    assert_eq!(proxy.export().await.unwrap(), first);
    assert_eq!(revision(&proxy).await, revision_after_import);

    // The stored passwords survived the masked import: the same document with the
    // clear password is no change at all.
    let mut same = exported.clone();
    same["accounts"][0]["password"] = json!("secret-1");
    same["actions"]["ftp"]["password"] = json!("ftp-secret");
    proxy.import(&same.to_string()).await.unwrap();
    assert_eq!(revision(&proxy).await, revision_after_import);

    // One bad field: nothing changes.
    let mut bad = exported.clone();
    bad["calls"]["max_dial_in_time"] = json!(301);
    bad["device"]["name"] = json!("Changed");
    match proxy.import(&bad.to_string()).await {
        Err(config::Error::Invalid(m)) => {
            assert_eq!(m, "calls.max_dial_in_time: 301 is out of range (5-300)")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(proxy.export().await.unwrap(), first);
    assert_eq!(revision(&proxy).await, revision_after_import);

    // Not JSON, or a field nobody knows: refused with the place named.
    match proxy.import("{\"calls\": ").await {
        Err(config::Error::Invalid(m)) => assert!(m.starts_with("document: "), "{m}"),
        other => panic!("{other:?}"),
    }
    match proxy.import("{\"calls\": {\"max_call_tme\": 5}}").await {
        Err(config::Error::Invalid(m)) => {
            assert!(m.starts_with("calls.max_call_tme: unknown field"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(revision(&proxy).await, revision_after_import);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_commit_bumps_the_revision_and_names_the_changed_sections() {
    let rig = Rig::start().await;
    let proxy = rig.proxy().await;
    let mut changed = proxy.receive_changed().await.unwrap();
    let mut revisions = proxy.receive_revision_changed().await;
    let start = revision(&proxy).await;

    set(&proxy, "calls.max_call_time", json!(120))
        .await
        .unwrap();
    let signal = tokio::time::timeout(PATIENCE, changed.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(signal.args().unwrap().sections, vec!["calls".to_owned()]);
    let value = tokio::time::timeout(PATIENCE, async {
        loop {
            let change = revisions.next().await.unwrap();
            let v = change.get().await.unwrap();
            if v != start {
                return v;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(value, start + 1);

    let mut doc: Value = serde_json::from_str(&proxy.export().await.unwrap()).unwrap();
    doc["dtmf_authority"] = json!("none");
    doc["contacts"] = contacts(1);
    proxy.import(&doc.to_string()).await.unwrap();
    let signal = tokio::time::timeout(PATIENCE, changed.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        signal.args().unwrap().sections,
        vec!["contacts".to_owned(), "dtmf_authority".to_owned()]
    );
    assert_eq!(revision(&proxy).await, start + 2);

    // Setting what is already there is no commit.
    set(&proxy, "dtmf_authority", json!("none")).await.unwrap();
    assert_eq!(revision(&proxy).await, start + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_methods_add_update_remove_and_resolve() {
    let rig = Rig::start().await;
    let proxy = rig.proxy().await;
    let id = proxy
        .add_contact("Concierge", "200", "auto", true)
        .await
        .unwrap();
    assert_eq!(id, 1);
    proxy
        .update_contact(id, "Concierge", "sip:200@pbx.example.com", "2", true)
        .await
        .unwrap();
    let list = proxy.list_contacts().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].number, "sip:200@pbx.example.com");
    assert_eq!(list[0].account, "2");
    assert!(matches!(
        proxy.add_contact("X", "not a number", "auto", false).await,
        Err(config::Error::Invalid(_))
    ));
    assert!(matches!(
        proxy.remove_contact(9).await,
        Err(config::Error::NotFound(_))
    ));
    proxy.remove_contact(id).await.unwrap();
    assert!(proxy.list_contacts().await.unwrap().is_empty());

    let rule = proxy
        .add_dial_rule(
            "Reception",
            "0",
            "1",
            &["192.168.1.10", "sip:200@pbx.example.com"],
        )
        .await
        .unwrap();
    assert_eq!(
        proxy.resolve("0").await.unwrap(),
        (
            "1".to_owned(),
            vec![
                "192.168.1.10".to_owned(),
                "sip:200@pbx.example.com".to_owned()
            ]
        )
    );
    assert_eq!(
        proxy.resolve("05").await.unwrap(),
        ("auto".to_owned(), vec!["05".to_owned()])
    );
    assert!(matches!(
        proxy.add_dial_rule("Dup", "0", "auto", &["1"]).await,
        Err(config::Error::Invalid(_))
    ));
    proxy
        .update_dial_rule(rule, "Reception", "00", "auto", &["201"])
        .await
        .unwrap();
    assert_eq!(proxy.resolve("00").await.unwrap().1, vec!["201".to_owned()]);
    proxy.remove_dial_rule(rule).await.unwrap();
    assert!(proxy.list_dial_plan().await.unwrap().is_empty());

    let entry = config::ButtonEntry {
        button: 3,
        call_type: "sequence".into(),
        numbers: vec!["200".into(), "201".into()],
        group_number: String::new(),
        when_refused: String::new(),
        timeout: 20,
        no_answer_relays: vec!["A".into()],
        no_answer_actions: vec![],
        no_answer_http_url: String::new(),
    };
    proxy.set_button(&entry).await.unwrap();
    let buttons = proxy.list_buttons().await.unwrap();
    assert_eq!(buttons.len(), 1);
    assert_eq!(buttons[0].when_refused, "call_next", "the sequence default");
    let bad = config::ButtonEntry {
        when_refused: "end_all_calls".into(),
        ..entry.clone()
    };
    match proxy.set_button(&bad).await {
        Err(config::Error::Invalid(m)) => assert!(m.starts_with("buttons[3].when_refused"), "{m}"),
        other => panic!("{other:?}"),
    }
    proxy.remove_button(3).await.unwrap();
    assert!(matches!(
        proxy.remove_button(3).await,
        Err(config::Error::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_survive_a_restart() {
    let mut rig = Rig::start().await;
    let proxy = rig.proxy().await;
    set(&proxy, "accounts", json!([account(1)])).await.unwrap();
    set(&proxy, "accounts.1.dnd.enabled", json!(true))
        .await
        .unwrap();
    set(&proxy, "multicast.listen", listen(3)).await.unwrap();
    proxy
        .add_contact("Concierge", "200", "auto", true)
        .await
        .unwrap();
    let before = proxy.export().await.unwrap();
    let revision_before = revision(&proxy).await;
    drop(proxy);

    rig.restart().await;
    let proxy = rig.proxy().await;
    assert_eq!(proxy.export().await.unwrap(), before);
    assert_eq!(revision(&proxy).await, revision_before);
    assert_eq!(get(&proxy, "accounts.1.dnd.enabled").await, json!(true));
    assert_eq!(get(&proxy, "accounts.1.password").await, json!("********"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_set_survives_a_kill_9() {
    let mut rig = Rig::start().await;
    let proxy = rig.proxy().await;
    // A point between the 20th and the 180th write, different at every run.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let kill_after = 20 + nanos % 160;
    for i in 0..kill_after {
        set(&proxy, "device.name", json!(format!("write {i}")))
            .await
            .unwrap();
    }
    // The kill lands while the next write is on its way.
    let writer = proxy.clone();
    let in_flight = tokio::spawn(async move {
        set(&writer, "device.name", json!(format!("write {kill_after}"))).await
    });
    tokio::task::yield_now().await;
    rig.service.kill();
    let acknowledged = match in_flight.await.unwrap() {
        Ok(()) => kill_after,
        Err(_) => kill_after - 1,
    };
    drop(proxy);

    rig.restart().await;
    let proxy = rig.proxy().await;
    let name = get(&proxy, "device.name").await;
    let n: u32 = name
        .as_str()
        .unwrap()
        .trim_start_matches("write ")
        .parse()
        .unwrap();
    assert!(
        n == acknowledged || n == kill_after,
        "acknowledged write {acknowledged}, found {name}"
    );
    let db = rusqlite::Connection::open_with_flags(
        rig.db.path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_1_database_opens_with_every_value() {
    let bus = Bus::start().unwrap();
    let db = ConfigDb::new().unwrap();
    let fixtures = repo_root().join("services/config/tests/fixtures");
    let sql = std::fs::read_to_string(fixtures.join("schema-v1.sql")).unwrap();
    rusqlite::Connection::open(db.path())
        .unwrap()
        .execute_batch(&sql)
        .unwrap();
    db.hand_over().unwrap();
    let _service = start_config(&bus, &db).await.unwrap();
    let conn = bus.connect().await.unwrap();
    let proxy = Config1Proxy::new(&conn).await.unwrap();
    let exported: Value = serde_json::from_str(&proxy.export().await.unwrap()).unwrap();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("schema-v1.json")).unwrap())
            .unwrap();
    assert_eq!(exported, expected);
    assert_eq!(revision(&proxy).await, 7, "the revision is kept");
    // Passwords came through too, though export masks them.
    assert_eq!(get(&proxy, "accounts.1.password").await, json!("********"));
    let doc = rusqlite::Connection::open_with_flags(
        db.path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let password: String = doc
        .query_row("SELECT password FROM accounts WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(password, "v1-secret");
    let version: u32 = doc
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3, "migrated to the current schema");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_version_is_refused() {
    let bus = Bus::start().unwrap();
    let db = ConfigDb::new().unwrap();
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    conn.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;")
        .unwrap();
    drop(conn);
    db.hand_over().unwrap();
    let (status, log) = run_config_to_exit(&bus, &db).unwrap();
    assert!(!status.success());
    assert!(
        log.contains("has schema version 99, newer than this doorphone-config understands (3)"),
        "{log}"
    );
    // Refused, not touched.
    let version: u32 = rusqlite::Connection::open(db.path())
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_lets_anyone_read_and_only_root_and_admins_write() {
    let rig = Rig::start().await;
    let proxy = rig.proxy().await;
    set(&proxy, "accounts", json!([account(1)])).await.unwrap();
    let dest = [config::BUS_NAME, config::OBJECT_PATH, config::INTERFACE];
    let call = |user: &str, member: &str, args: &[&str]| {
        let mut argv = vec!["call", dest[0], dest[1], dest[2], member];
        argv.extend_from_slice(args);
        rig.bus.busctl_as(user, &argv)
    };

    let export = call("nobody", "Export", &[]);
    assert!(export.status.success(), "{export:?}");
    let text = String::from_utf8_lossy(&export.stdout);
    assert!(
        text.contains("********") && !text.contains("secret-1"),
        "{text}"
    );
    let introspect = rig
        .bus
        .busctl_as("nobody", &["introspect", dest[0], dest[1]]);
    assert!(introspect.status.success(), "{introspect:?}");
    let revision = rig.bus.busctl_as(
        "nobody",
        &["get-property", dest[0], dest[1], dest[2], "Revision"],
    );
    assert!(revision.status.success(), "{revision:?}");
    for (member, args) in [
        ("Get", vec!["s", "calls.max_call_time"]),
        ("Resolve", vec!["s", "200"]),
        ("ListContacts", vec![]),
        ("ListDialPlan", vec![]),
        ("ListButtons", vec![]),
    ] {
        let out = call("nobody", member, &args);
        assert!(out.status.success(), "{member}: {out:?}");
    }

    for (member, args) in [
        ("Set", vec!["sv", "calls.max_call_time", "x", "60"]),
        ("Import", vec!["s", "{}"]),
        ("AddContact", vec!["sssb", "x", "200", "auto", "true"]),
        ("RemoveButton", vec!["u", "1"]),
    ] {
        let out = call("nobody", member, &args);
        assert!(!out.status.success(), "{member} was allowed");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Access denied"), "{member}: {err}");
    }
    let out = call("root", "Set", &["sv", "calls.max_call_time", "x", "60"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(get(&proxy, "calls.max_call_time").await, json!(60));

    // Only the service's own user may own the name.
    let own = rig.bus.busctl_as(
        "nobody",
        &[
            "call",
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "RequestName",
            "su",
            "org.doorphone.Config1",
            "0",
        ],
    );
    assert!(!own.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busctl_introspects_and_the_golden_xml_matches_the_code() {
    let rig = Rig::start().await;
    let out = rig.bus.busctl_as(
        "root",
        &["introspect", config::BUS_NAME, config::OBJECT_PATH],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for member in [".Export", ".Import", ".Resolve", ".Revision", ".Changed"] {
        assert!(text.contains(member), "{member} missing from\n{text}");
    }

    check_released_interface(
        &rig.conn,
        config::BUS_NAME,
        config::OBJECT_PATH,
        config::INTERFACE,
        &repo_root().join("dbus/interfaces/org.doorphone.Config1.xml"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}
