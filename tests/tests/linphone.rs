//! linphonec (Debian's `linphone-cli`), a second real phone besides baresip:
//! it calls the door phone and is called by it, and each side hears the
//! other's tone (a Goertzel filter on what linphonec recorded and on what the
//! door phone's speaker played).

use std::path::Path;
use std::time::Duration;

use doorphone_interfaces::sip::{self, end_reason};
use doorphone_system_tests::audio::{dominant, read_wav};
use doorphone_system_tests::linphone::Linphone;
use doorphone_system_tests::rig::{Rig, next_end, until_state};
use doorphone_system_tests::{PATIENCE, chown_to, eventually};

/// The door phone's test tone and linphonec's.
const DOOR_TONE: f64 = 440.0;
const LINPHONE_TONE: f64 = 1000.0;

/// The door phone, answering direct calls at once, its speaker written to a
/// WAV file in `speaker_dir`.
async fn door(speaker_dir: &tempfile::TempDir) -> Rig {
    chown_to(speaker_dir.path(), "doorphone-media").unwrap();
    Rig::start_with_sink(30, Some(&speaker_dir.path().join("speaker.wav")), |_| {}).await
}

/// The tone that stands out in the last second of `audio`, if one does.
fn last_second(audio: Option<(u32, Vec<i16>)>) -> Option<f64> {
    let (rate, samples) = audio?;
    let second = rate as usize;
    if samples.len() < 2 * second {
        return None;
    }
    dominant(
        &samples[samples.len() - second..],
        rate,
        &[DOOR_TONE, LINPHONE_TONE],
    )
}

/// Waits until the door phone's speaker plays linphonec's tone (its last
/// second) and linphonec has recorded three seconds of what it hears; the
/// files grow as the call goes and are read every 100 ms.
async fn until_both_hear(phone: &Linphone, speaker: &Path) {
    let door_heard = || last_second(std::fs::read(speaker).ok().and_then(|b| read_wav(&b)));
    // 16-bit samples at 8 kHz or more, after a 44-byte header.
    eventually(PATIENCE, Duration::from_millis(100), || {
        (door_heard() == Some(LINPHONE_TONE) && phone.recorded() >= 44 + 3 * 16_000).then_some(())
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the door phone heard {:?}, linphonec recorded {} bytes\n{}",
            door_heard(),
            phone.recorded(),
            phone.output()
        )
    });
}

/// What linphonec heard in the call that just ended, once its record file
/// is closed (read every 100 ms until then).
async fn phone_heard(phone: &Linphone) -> Option<f64> {
    let audio = eventually(PATIENCE, Duration::from_millis(100), || phone.heard())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "linphonec did not close its record file\n{}",
                phone.output()
            )
        });
    last_second(Some(audio))
}

#[tokio::test(flavor = "multi_thread")]
async fn linphonec_calls_the_door_and_both_hear_each_other() {
    doorphone_system_tests::require_root();
    let speaker_dir = tempfile::Builder::new()
        .prefix("speaker")
        .tempdir()
        .unwrap();
    let rig = door(&speaker_dir).await;
    let mut states = rig.states().await;
    let mut phone = Linphone::start(LINPHONE_TONE).await.unwrap();
    phone
        .send(&format!("call sip:door@{}", rig.agent()))
        .await
        .unwrap();
    phone
        .printed("connected", PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.sip_log()));
    until_state(&mut states, sip::call_state::ANSWERED).await;
    let call = rig.active_call().await;
    assert_eq!(call.account().await.unwrap(), "ip");
    until_both_hear(&phone, &speaker_dir.path().join("speaker.wav")).await;
    // linphonec hangs up; the door phone frees the call's media.
    phone.send("terminate").await.unwrap();
    phone.printed("ended", PATIENCE).await.unwrap();
    assert_eq!(phone_heard(&phone).await, Some(DOOR_TONE));
    assert_eq!(next_end(&mut states).await, end_reason::REMOTE_HANGUP);
    assert_eq!(rig.media_sessions().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_door_calls_linphonec_which_answers_and_both_hear_each_other() {
    doorphone_system_tests::require_root();
    let speaker_dir = tempfile::Builder::new()
        .prefix("speaker")
        .tempdir()
        .unwrap();
    let rig = door(&speaker_dir).await;
    let mut states = rig.states().await;
    let mut phone = Linphone::start(LINPHONE_TONE).await.unwrap();
    phone.send("autoanswer enable").await.unwrap();
    phone
        .printed("Auto answer enabled", PATIENCE)
        .await
        .unwrap();
    rig.proxy()
        .await
        .dial(&phone.addr().to_string(), Default::default())
        .await
        .unwrap();
    phone
        .printed("connected", PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.sip_log()));
    until_state(&mut states, sip::call_state::ANSWERED).await;
    until_both_hear(&phone, &speaker_dir.path().join("speaker.wav")).await;
    // The door phone hangs up; linphonec sees the call end.
    rig.active_call().await.hangup().await.unwrap();
    phone.printed("ended", PATIENCE).await.unwrap();
    assert_eq!(phone_heard(&phone).await, Some(DOOR_TONE));
    assert_eq!(next_end(&mut states).await, end_reason::LOCAL_HANGUP);
    assert_eq!(rig.media_sessions().await, 0);
}
