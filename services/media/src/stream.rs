//! Page playback: an RTP stream received from a multicast group (or a unicast
//! port) and played on the speaker, for the multicast pager.

use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::devices::{Speaker, SpeakerInput};

/// A page's codec and the elements that decode it.
fn decoder(codec: &str) -> Result<(&'static str, &'static str, &'static str, i32), String> {
    Ok(match codec {
        "PCMU" => ("PCMU", "rtppcmudepay", "mulawdec", 8000),
        "PCMA" => ("PCMA", "rtppcmadepay", "alawdec", 8000),
        "G722" => ("G722", "rtpg722depay", crate::g722::DECODER_NAME, 8000),
        other => return Err(format!("{other:?}: pages are PCMU, PCMA or G722")),
    })
}

pub struct PageStream {
    pipeline: gst::Pipeline,
    input: Arc<Mutex<Option<SpeakerInput>>>,
}

impl PageStream {
    /// Joins `address` (multicast groups on `iface`) at `port` and plays what
    /// arrives in `codec`.
    pub fn start(
        address: std::net::IpAddr,
        port: u16,
        codec: &str,
        iface: Option<&str>,
        speaker: &Speaker,
    ) -> Result<PageStream, String> {
        let (name, depay, dec, clock_rate) = decoder(codec)?;
        let mut src = gst::ElementFactory::make("udpsrc")
            .property("address", address.to_string())
            .property("port", i32::from(port))
            .property("auto-multicast", address.is_multicast())
            // The pager listens on the same group and port to notice pages.
            .property("reuse", true)
            .property(
                "caps",
                gst::Caps::builder("application/x-rtp")
                    .field("media", "audio")
                    .field("clock-rate", clock_rate)
                    .field("encoding-name", name)
                    .build(),
            );
        if let Some(iface) = iface {
            src = src.property("multicast-iface", iface);
        }
        let src = src.build().map_err(|e| format!("udpsrc: {e}"))?;
        let jitter = gst::ElementFactory::make("rtpjitterbuffer")
            .property("latency", 60u32)
            .build()
            .map_err(|e| format!("rtpjitterbuffer: {e}"))?;
        let mut input = speaker.attach().map_err(|e| format!("speaker: {e}"))?;
        input.play();
        let input = Arc::new(Mutex::new(Some(input)));
        let target = input
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|i| i.src.clone())
            .expect("attached");
        let decode = crate::devices::decode_to_speaker(depay, dec, &target)?;
        let pipeline = gst::Pipeline::with_name("page");
        let mut chain = vec![src, jitter];
        chain.extend(decode);
        pipeline.add_many(&chain).map_err(|e| e.to_string())?;
        gst::Element::link_many(&chain).map_err(|e| format!("page chain: {e}"))?;
        // Nothing reads the bus: messages are dropped so they do not pile up.
        if let Some(bus) = pipeline.bus() {
            bus.set_sync_handler(|_, message| {
                if let gst::MessageView::Error(err) = message.view() {
                    tracing::warn!("page: {}", err.error());
                }
                gst::BusSyncReply::Drop
            });
        }
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("the page does not start: {e}"))?;
        Ok(PageStream { pipeline, input })
    }

    /// The speaker input this page plays through.
    pub fn with_input<T>(&self, f: impl FnOnce(&SpeakerInput) -> T) -> Option<T> {
        self.input
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(f)
    }
}

impl Drop for PageStream {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        self.input.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
