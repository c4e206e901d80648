//! The door phone's audio hardware as the options name it, and the speaker: one
//! long-lived pipeline that owns the output and mixes whatever plays into it.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// The rate and layout of everything that reaches the speaker.
pub const SPEAKER_CAPS: &str = "audio/x-raw,format=S16LE,layout=interleaved,rate=16000,channels=1";

#[derive(Debug, Clone, PartialEq)]
pub enum AudioSource {
    /// A sine tone (`--test-tone HZ`), for development and tests.
    Test,
    /// A short burst of the test tone each second, in 20 ms blocks at 8 kHz
    /// (`--test-wave ticks`): a click that times the audio path.
    TestTicks,
    Alsa(String),
    Pulse,
}

impl FromStr for AudioSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "test" => Ok(AudioSource::Test),
            "pulse" => Ok(AudioSource::Pulse),
            _ => match s.strip_prefix("alsa:") {
                Some(dev) if !dev.is_empty() => Ok(AudioSource::Alsa(dev.to_owned())),
                _ => Err(format!("{s:?}: expected test, alsa:DEVICE or pulse")),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum AudioSink {
    Fake,
    /// A WAV file, finished when the service stops.
    File(PathBuf),
    Alsa(String),
    Auto,
}

impl FromStr for AudioSink {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fake" => Ok(AudioSink::Fake),
            "auto" => Ok(AudioSink::Auto),
            _ => {
                if let Some(path) = s.strip_prefix("file:").filter(|p| !p.is_empty()) {
                    Ok(AudioSink::File(PathBuf::from(path)))
                } else if let Some(dev) = s.strip_prefix("alsa:").filter(|d| !d.is_empty()) {
                    Ok(AudioSink::Alsa(dev.to_owned()))
                } else {
                    Err(format!(
                        "{s:?}: expected fake, file:PATH.wav, alsa:DEVICE or auto"
                    ))
                }
            }
        }
    }
}

/// How much audio the microphone delivers at a time: one packet's worth, so
/// packets leave at their 20 ms pace instead of in bursts (a source's default
/// block, 1024 samples, is 128 ms at 8 kHz).
const BLOCK_US: i64 = 20_000;

/// The microphone's element, live, delivering 20 ms blocks at `rate`.
pub fn microphone(
    source: &AudioSource,
    tone: f64,
    rate: i32,
) -> Result<gst::Element, gst::glib::BoolError> {
    let block = (i64::from(rate) * BLOCK_US / 1_000_000) as i32;
    match source {
        AudioSource::Test => gst::ElementFactory::make("audiotestsrc")
            .property("is-live", true)
            .property_from_str("wave", "sine")
            .property("freq", tone)
            .property("volume", 0.5f64)
            .property("samplesperbuffer", block)
            .build(),
        AudioSource::TestTicks => gst::ElementFactory::make("audiotestsrc")
            .property("is-live", true)
            .property_from_str("wave", "ticks")
            .property("freq", tone)
            .property("volume", 0.5f64)
            .property("samplesperbuffer", 160i32)
            .build(),
        AudioSource::Alsa(dev) => gst::ElementFactory::make("alsasrc")
            .property("device", dev)
            .property("latency-time", BLOCK_US)
            .build(),
        AudioSource::Pulse => gst::ElementFactory::make("pulsesrc")
            .property("latency-time", BLOCK_US)
            .build(),
    }
}

/// The state of a speaker nobody hears: its devices open, no streaming thread
/// running. (Paused, its threads would wait inside the mixer and the sink, and
/// an input leaving then could wait for them for ever.)
const IDLE: gst::State = gst::State::Ready;

/// How long the speaker runs on after its last input stops being heard. Calls
/// and pages that follow one another (a visitor calling again, a page after a
/// call) find it running: starting and resting it took about a tenth of the
/// media service's CPU per call, about 0.3 ms. The rest has its own price:
/// mixing silence costs about 10 ms of CPU per second, so after a call that
/// nothing follows the rest costs more than it saves. A door waiting for its
/// next visitor rests the speaker after this.
pub const SPEAKER_REST_AFTER: Duration = Duration::from_secs(2);

/// The speaker: silence mixed with every input attached to it, into the sink.
///
/// It runs only while an input is heard (a call or a page plays) and for
/// [`SPEAKER_REST_AFTER`] after: a door waiting for its next visitor spends no
/// CPU mixing silence. A WAV file is the exception: it records the speaker's
/// time, silence included, and so runs on.
pub struct Speaker {
    pipeline: gst::Pipeline,
    mixer: gst::Element,
    /// How many inputs are heard, when the speaker stops without them.
    heard: Option<Arc<Heard>>,
}

/// The inputs heard, and the speaker's rest once none is.
struct Heard {
    state: Mutex<HeardState>,
    /// Wakes the thread that rests the speaker.
    changed: Condvar,
    pipeline: gst::Pipeline,
    rest_after: Duration,
}

#[derive(Default)]
struct HeardState {
    count: usize,
    /// When the speaker rests, if no input is heard by then.
    rest_at: Option<Instant>,
    /// Whether the resting thread runs.
    resting_thread: bool,
    /// The speaker is gone: the resting thread ends.
    closed: bool,
}

impl Heard {
    fn lock(&self) -> std::sync::MutexGuard<'_, HeardState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts an input in or out of those heard: the first starts the
    /// speaker; after the last it rests once `rest_after` has passed.
    fn count(self: &Arc<Self>, change: isize) {
        let mut state = self.lock();
        state.count = state.count.saturating_add_signed(change);
        if state.count > 0 {
            state.rest_at = None;
            self.go(gst::State::Playing);
        } else if self.rest_after.is_zero() {
            self.go(IDLE);
        } else {
            state.rest_at = Some(Instant::now() + self.rest_after);
            if !std::mem::replace(&mut state.resting_thread, true) {
                let this = self.clone();
                let spawned = std::thread::Builder::new()
                    .name("speaker-rest".into())
                    .stack_size(64 * 1024)
                    .spawn(move || this.rest());
                if let Err(e) = spawned {
                    tracing::warn!("no thread to rest the speaker ({e}): it rests now");
                    state.resting_thread = false;
                    state.rest_at = None;
                    self.go(IDLE);
                }
            } else {
                self.changed.notify_all();
            }
        }
    }

    /// Rests the speaker when its time comes, until the speaker is gone.
    fn rest(&self) {
        let mut state = self.lock();
        while !state.closed {
            match state.rest_at {
                None => {
                    state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                Some(at) => {
                    let now = Instant::now();
                    if now < at {
                        state = self
                            .changed
                            .wait_timeout(state, at - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    } else {
                        state.rest_at = None;
                        if state.count == 0 {
                            self.go(IDLE);
                        }
                        self.changed.notify_all();
                    }
                }
            }
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    fn go(&self, state: gst::State) {
        if self.pipeline.current_state() != state
            && let Err(e) = self.pipeline.set_state(state)
        {
            tracing::error!("the speaker does not go to {state:?}: {e}");
        }
    }
}

impl Speaker {
    /// The speaker on `sink`, resting [`SPEAKER_REST_AFTER`] after its last
    /// input.
    pub fn new(sink: &AudioSink) -> Result<Speaker, gst::glib::BoolError> {
        Speaker::resting_after(sink, SPEAKER_REST_AFTER)
    }

    /// The speaker on `sink`, resting `rest_after` after its last input (at
    /// once for zero).
    pub fn resting_after(
        sink: &AudioSink,
        rest_after: Duration,
    ) -> Result<Speaker, gst::glib::BoolError> {
        let sink_desc = match sink {
            AudioSink::Fake => "fakesink sync=false async=false".to_owned(),
            AudioSink::File(path) => format!(
                "wavenc ! filesink async=false location=\"{}\"",
                path.display().to_string().replace('"', "")
            ),
            AudioSink::Alsa(dev) => {
                format!("alsasink async=false device=\"{}\"", dev.replace('"', ""))
            }
            AudioSink::Auto => "autoaudiosink async-handling=true".to_owned(),
        };
        let pipeline = gst::parse::launch(&format!(
            "audiotestsrc is-live=true wave=silence samplesperbuffer=320 ! {SPEAKER_CAPS} ! \
             audiomixer name=mix latency=40000000 ! {SPEAKER_CAPS} ! {sink_desc}"
        ))
        .map_err(|e| gst::glib::bool_error!("speaker: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| gst::glib::bool_error!("the speaker is not a pipeline"))?;
        let mixer = pipeline
            .by_name("mix")
            .ok_or_else(|| gst::glib::bool_error!("no mixer"))?;
        // Nobody reads this bus while the service runs: every message is dropped
        // (errors logged) but the end of stream and errors that `shutdown` waits for,
        // so none pile up and hold on to the inputs of finished calls.
        if let Some(bus) = pipeline.bus() {
            bus.set_sync_handler(|_, message| match message.view() {
                gst::MessageView::Eos(_) => gst::BusSyncReply::Pass,
                gst::MessageView::Error(err) => {
                    tracing::error!("speaker: {}", err.error());
                    gst::BusSyncReply::Pass
                }
                _ => gst::BusSyncReply::Drop,
            });
        }
        let heard = match sink {
            AudioSink::File(_) => None,
            _ => Some(Arc::new(Heard {
                state: Mutex::default(),
                changed: Condvar::new(),
                pipeline: pipeline.clone(),
                rest_after,
            })),
        };
        let state = match heard {
            None => gst::State::Playing,
            Some(_) => IDLE,
        };
        pipeline
            .set_state(state)
            .map_err(|e| gst::glib::bool_error!("the speaker does not start: {e}"))?;
        Ok(Speaker {
            pipeline,
            mixer,
            heard,
        })
    }

    /// Waits until the speaker rests (no input heard, its rest taken), for at
    /// most `patience`; returns whether it did.
    #[cfg(test)]
    pub(crate) fn rests_within(&self, patience: Duration) -> bool {
        let Some(heard) = &self.heard else {
            return false;
        };
        let deadline = Instant::now() + patience;
        let mut state = heard.lock();
        while state.count > 0 || state.rest_at.is_some() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = heard
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(state);
        !self.running()
    }

    /// Whether the speaker's pipeline is running.
    #[cfg(test)]
    pub(crate) fn running(&self) -> bool {
        self.pipeline.current_state() == gst::State::Playing
    }

    /// A new input: push audio in [`SPEAKER_CAPS`] into the returned `appsrc`.
    pub fn attach(&self) -> Result<SpeakerInput, gst::glib::BoolError> {
        let src = gst_app::AppSrc::builder()
            .caps(&gst::Caps::from_str(SPEAKER_CAPS).expect("valid caps"))
            .is_live(true)
            .format(gst::Format::Time)
            .do_timestamp(true)
            .build();
        let queue = gst::ElementFactory::make("queue").build()?;
        self.pipeline.add_many([src.upcast_ref(), &queue])?;
        src.link(&queue)?;
        let pad = self
            .mixer
            .request_pad_simple("sink_%u")
            .ok_or_else(|| gst::glib::bool_error!("the mixer gives no pad"))?;
        queue
            .static_pad("src")
            .expect("queue has a src pad")
            .link(&pad)
            .map_err(|e| gst::glib::bool_error!("cannot link to the mixer: {e:?}"))?;
        src.sync_state_with_parent()?;
        queue.sync_state_with_parent()?;
        Ok(SpeakerInput {
            src,
            queue,
            pad,
            pipeline: self.pipeline.clone(),
            mixer: self.mixer.clone(),
            heard: self.heard.clone(),
            playing: false,
        })
    }

    /// Lets only `solo` be heard (the silence input keeps the clock going), or,
    /// with `None`, every input again.
    pub fn solo(&self, solo: Option<&SpeakerInput>) {
        let silence = self.mixer.sink_pads().into_iter().next();
        for pad in self.mixer.sink_pads() {
            let heard = match solo {
                None => true,
                Some(input) => pad == input.pad || Some(&pad) == silence.as_ref(),
            };
            pad.set_property("mute", !heard);
        }
    }

    /// Finishes the output (a WAV file gets its final header) and stops.
    pub fn shutdown(&self) {
        if let Some(heard) = &self.heard {
            heard.close();
            // Nothing to finish, and a stopped pipeline takes no end of stream.
            let _ = self.pipeline.set_state(gst::State::Null);
            return;
        }
        self.pipeline.send_event(gst::event::Eos::new());
        if let Some(bus) = self.pipeline.bus() {
            let _ = bus.timed_pop_filtered(
                gst::ClockTime::from_seconds(3),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            );
        }
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        if let Some(heard) = &self.heard {
            heard.close();
        }
    }
}

/// One input of the speaker, heard from [`SpeakerInput::play`] on (a
/// prepared call attaches ahead of its call); detached when dropped.
pub struct SpeakerInput {
    pub src: gst_app::AppSrc,
    queue: gst::Element,
    pad: gst::Pad,
    pipeline: gst::Pipeline,
    mixer: gst::Element,
    heard: Option<Arc<Heard>>,
    playing: bool,
}

impl SpeakerInput {
    /// The input is heard: the speaker runs while any input is.
    pub fn play(&mut self) {
        if std::mem::replace(&mut self.playing, true) {
            return;
        }
        self.count(1);
    }

    /// The input is no longer heard (it stays attached).
    pub fn stop(&mut self) {
        if std::mem::replace(&mut self.playing, false) {
            self.count(-1);
        }
    }

    /// Counts this input in or out of those heard, starting the speaker with
    /// the first and resting it after the last.
    fn count(&self, change: isize) {
        if let Some(heard) = &self.heard {
            heard.count(change);
        }
    }
}

impl Drop for SpeakerInput {
    fn drop(&mut self) {
        let _ = self.src.set_state(gst::State::Null);
        let _ = self.queue.set_state(gst::State::Null);
        let _ = self
            .pipeline
            .remove_many([self.src.upcast_ref(), &self.queue]);
        self.mixer.release_request_pad(&self.pad);
        if self.playing {
            self.count(-1);
        }
    }
}

/// RTP of one stream decoded into `target`, a speaker input: depayloader,
/// decoder, conversion to [`SPEAKER_CAPS`], and an `appsink` handing each buffer
/// over without its timestamps (the speaker stamps it with its own clock). The
/// elements come in link order, not yet in a pipeline.
pub fn decode_to_speaker(
    depayloader: &str,
    decoder: &str,
    target: &gst_app::AppSrc,
) -> Result<Vec<gst::Element>, String> {
    let make = |f: &str| {
        gst::ElementFactory::make(f)
            .build()
            .map_err(|e| format!("{f}: {e}"))
    };
    let caps = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::from_str(SPEAKER_CAPS).expect("valid caps"),
        )
        .build()
        .map_err(|e| e.to_string())?;
    let sink = gst_app::AppSink::builder().sync(false).build();
    sink.set_property("async", false);
    let target = target.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(mut buffer) = sample.buffer_owned() {
                    let b = buffer.make_mut();
                    b.set_pts(gst::ClockTime::NONE);
                    b.set_dts(gst::ClockTime::NONE);
                    let _ = target.push_buffer(buffer);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(vec![
        make(depayloader)?,
        make(decoder)?,
        make("audioconvert")?,
        make("audioresample")?,
        caps,
        sink.upcast(),
    ])
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// A channel that gets a message for every buffer the speaker's sink takes.
    fn output(speaker: &Speaker) -> mpsc::Receiver<()> {
        let sink = speaker
            .pipeline
            .iterate_sinks()
            .next()
            .unwrap()
            .expect("the speaker has a sink");
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        sink.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                let _ = tx.lock().unwrap().send(());
                gst::PadProbeReturn::Ok
            });
        rx
    }

    /// Waits for the sink's next buffer after everything it took so far.
    fn plays(rx: &mpsc::Receiver<()>) -> bool {
        while rx.try_recv().is_ok() {}
        rx.recv_timeout(Duration::from_secs(20)).is_ok()
    }

    #[test]
    fn the_speaker_runs_only_while_an_input_is_heard() {
        gst::init().unwrap();
        let speaker = Speaker::resting_after(&AudioSink::Fake, Duration::ZERO).unwrap();
        let out = output(&speaker);
        assert!(!speaker.running(), "a speaker nobody hears runs");
        // A prepared call is attached ahead of its call, and not heard yet.
        let mut prepared = speaker.attach().unwrap();
        assert!(!speaker.running(), "a prepared call starts the speaker");
        let mut call = speaker.attach().unwrap();
        call.play();
        assert!(speaker.running());
        assert!(plays(&out), "the running speaker plays nothing");
        prepared.play();
        drop(call);
        assert!(speaker.running(), "one input is still heard");
        drop(prepared);
        assert!(
            !speaker.running(),
            "the speaker runs on after its last input"
        );
        // And it starts again for the next call.
        let mut next = speaker.attach().unwrap();
        next.play();
        assert!(speaker.running());
        assert!(plays(&out), "the speaker plays nothing after a rest");
        drop(next);
        assert!(!speaker.running());
        speaker.shutdown();
    }

    #[test]
    fn the_speaker_runs_on_for_its_rest_time_after_the_last_input() {
        gst::init().unwrap();
        let rest_after = Duration::from_secs(2);
        let speaker = Speaker::resting_after(&AudioSink::Fake, rest_after).unwrap();
        let out = output(&speaker);
        let mut call = speaker.attach().unwrap();
        call.play();
        assert!(plays(&out));
        call.stop();
        // The next call comes before the rest: it finds the speaker running.
        assert!(speaker.running(), "the speaker rests before its time");
        let mut next = speaker.attach().unwrap();
        next.play();
        assert!(speaker.running());
        assert!(plays(&out), "the speaker plays nothing for the next call");
        // Nothing heard any more: it rests, and not before its time.
        let last = std::time::Instant::now();
        drop(next);
        drop(call);
        assert!(
            speaker.rests_within(Duration::from_secs(30)),
            "the speaker runs on after its rest time"
        );
        assert!(
            last.elapsed() >= rest_after,
            "rested after {:?}",
            last.elapsed()
        );
        // And starts again for the next call.
        let mut again = speaker.attach().unwrap();
        again.play();
        assert!(speaker.running());
        assert!(plays(&out), "the speaker plays nothing after a rest");
        drop(again);
        speaker.shutdown();
    }

    #[test]
    fn a_recording_of_the_speaker_runs_all_the_time() {
        gst::init().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("speaker.wav");
        let speaker = Speaker::new(&AudioSink::File(wav.clone())).unwrap();
        let out = output(&speaker);
        assert!(speaker.running());
        assert!(plays(&out), "the recording takes no silence");
        let mut input = speaker.attach().unwrap();
        input.play();
        drop(input);
        assert!(speaker.running());
        speaker.shutdown();
        assert!(std::fs::metadata(&wav).unwrap().len() > 44, "no samples");
    }
}
