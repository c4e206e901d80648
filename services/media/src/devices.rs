//! The door phone's audio hardware as the options name it, and the speaker: one
//! long-lived pipeline that owns the output and mixes whatever plays into it.

use std::path::PathBuf;
use std::str::FromStr;

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

/// The speaker: silence mixed with every input attached to it, into the sink.
pub struct Speaker {
    pipeline: gst::Pipeline,
    mixer: gst::Element,
}

impl Speaker {
    pub fn new(sink: &AudioSink) -> Result<Speaker, gst::glib::BoolError> {
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
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| gst::glib::bool_error!("the speaker does not start: {e}"))?;
        Ok(Speaker { pipeline, mixer })
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

/// One input of the speaker; detached when dropped.
pub struct SpeakerInput {
    pub src: gst_app::AppSrc,
    queue: gst::Element,
    pad: gst::Pad,
    pipeline: gst::Pipeline,
    mixer: gst::Element,
}

impl Drop for SpeakerInput {
    fn drop(&mut self) {
        let _ = self.src.set_state(gst::State::Null);
        let _ = self.queue.set_state(gst::State::Null);
        let _ = self
            .pipeline
            .remove_many([self.src.upcast_ref(), &self.queue]);
        self.mixer.release_request_pad(&self.pad);
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
