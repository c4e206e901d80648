//! The door phone's camera: one long-lived pipeline that always runs, keeps the
//! latest frame for snapshots and feeds the video of every call.
//!
//! `source ! videoconvert ! videoscale ! video/x-raw,… ! tee`: a pad probe on the
//! tee keeps the latest frame (a snapshot converts it to JPEG on request, a few
//! milliseconds, without waiting for the next frame), and each call gets its own
//! branch: an `appsink` on the tee hands the frames to an `appsrc` in the call's
//! pipeline, which encodes them with its own encoder. The camera and the calls thus
//! have separate clocks and states: a call starting, pausing or failing never stops
//! the camera, and each call's encoder starts with a keyframe.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

/// How long a snapshot waits for the camera's first frame.
const FIRST_FRAME_WAIT: Duration = Duration::from_secs(1);
/// How long the JPEG conversion of a snapshot may take.
const CONVERT_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(2);
/// The H.264 bitrate of a call's video, in bit/s.
const H264_BITRATE: u32 = 512_000;
/// Seconds between keyframes of a call's video.
const KEYFRAME_INTERVAL_S: u32 = 2;

/// Where the camera's pictures come from (`--video-source`).
#[derive(Debug, Clone, PartialEq)]
pub enum VideoSource {
    /// A moving test pattern, for development and tests.
    Test,
    /// A Video4Linux2 device such as `/dev/video0`.
    V4l2(PathBuf),
    /// No camera: calls are audio only and there are no snapshots.
    None,
}

impl FromStr for VideoSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "test" => Ok(VideoSource::Test),
            "none" => Ok(VideoSource::None),
            _ => match s.strip_prefix("v4l2:") {
                Some(dev) if !dev.is_empty() => Ok(VideoSource::V4l2(PathBuf::from(dev))),
                _ => Err(format!("{s:?}: expected test, v4l2:/dev/videoN or none")),
            },
        }
    }
}

/// The latest frame, and a way to wait for the first one.
#[derive(Default)]
struct Latest {
    sample: Mutex<Option<gst::Sample>>,
    arrived: Condvar,
}

/// The camera: one long-lived pipeline (source ! videoconvert ! videoscale !
/// video/x-raw,width=W,height=H,framerate=F ! tee) that keeps the latest frame for
/// snapshots and feeds any number of call branches.
pub struct Camera {
    pipeline: gst::Pipeline,
    tee: gst::Element,
    /// The raw caps every branch receives.
    caps: gst::Caps,
    fps: u32,
    latest: Arc<Latest>,
    /// The pipeline's error, once it has failed.
    failure: Arc<Mutex<Option<String>>>,
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|e| format!("cannot create {factory}: {e}"))
}

impl Camera {
    /// Starts the camera, or `None` for [`VideoSource::None`].
    pub fn new(
        source: &VideoSource,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<Option<Camera>, String> {
        if width == 0 || height == 0 || fps == 0 {
            return Err(format!(
                "invalid camera format {width}x{height} at {fps} fps"
            ));
        }
        let src = match source {
            VideoSource::None => return Ok(None),
            VideoSource::Test => gst::ElementFactory::make("videotestsrc")
                .property("is-live", true)
                .property_from_str("pattern", "ball")
                .build()
                .map_err(|e| format!("cannot create videotestsrc: {e}"))?,
            VideoSource::V4l2(device) => gst::ElementFactory::make("v4l2src")
                .property("device", device.to_string_lossy().as_ref())
                .build()
                .map_err(|e| format!("cannot create v4l2src: {e}"))?,
        };
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field(
                "width",
                i32::try_from(width).map_err(|_| "width too large")?,
            )
            .field(
                "height",
                i32::try_from(height).map_err(|_| "height too large")?,
            )
            .field(
                "framerate",
                gst::Fraction::new(i32::try_from(fps).map_err(|_| "fps too large")?, 1),
            )
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build();

        let pipeline = gst::Pipeline::with_name("camera");
        let mut chain = vec![src];
        if matches!(source, VideoSource::V4l2(_)) {
            // A real camera may run at another rate than the one asked for.
            chain.push(make("videorate")?);
        }
        chain.push(make("videoconvert")?);
        chain.push(make("videoscale")?);
        chain.push(
            gst::ElementFactory::make("capsfilter")
                .property("caps", &caps)
                .build()
                .map_err(|e| format!("cannot create capsfilter: {e}"))?,
        );
        let tee = gst::ElementFactory::make("tee")
            .property("allow-not-linked", true)
            .build()
            .map_err(|e| format!("cannot create tee: {e}"))?;
        chain.push(tee.clone());
        // An always-present branch, so that the camera runs the same with or without calls.
        let idle_sink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
            .map_err(|e| format!("cannot create fakesink: {e}"))?;
        chain.push(idle_sink);
        pipeline
            .add_many(&chain)
            .map_err(|e| format!("cannot build the camera pipeline: {e}"))?;
        gst::Element::link_many(&chain)
            .map_err(|e| format!("cannot link the camera pipeline: {e}"))?;

        let failure = Arc::new(Mutex::new(None::<String>));
        let bus = pipeline.bus().ok_or("the camera pipeline has no bus")?;
        {
            let failure = failure.clone();
            // Nobody reads this bus: record errors and drop every message.
            bus.set_sync_handler(move |_, msg| {
                match msg.view() {
                    gst::MessageView::Error(err) => {
                        let text = match err.debug() {
                            Some(debug) => format!("{} ({debug})", err.error()),
                            None => err.error().to_string(),
                        };
                        tracing::warn!("camera failed: {text}");
                        failure
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(text);
                    }
                    gst::MessageView::Warning(w) => tracing::warn!("camera: {}", w.error()),
                    _ => {}
                }
                gst::BusSyncReply::Drop
            });
        }

        let latest = Arc::new(Latest::default());
        {
            let latest = latest.clone();
            let sink_pad = tee.static_pad("sink").ok_or("the tee has no sink pad")?;
            sink_pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                if let Some(buffer) = info.buffer() {
                    let mut sample = gst::Sample::builder().buffer(buffer);
                    let caps = pad.current_caps();
                    if let Some(caps) = caps.as_ref() {
                        sample = sample.caps(caps);
                    }
                    *latest.sample.lock().unwrap_or_else(|p| p.into_inner()) = Some(sample.build());
                    latest.arrived.notify_all();
                }
                gst::PadProbeReturn::Ok
            });
        }

        let camera = Camera {
            pipeline,
            tee,
            caps,
            fps,
            latest,
            failure,
        };
        if camera.pipeline.set_state(gst::State::Playing).is_err() {
            let reason = camera
                .failure()
                .unwrap_or_else(|| "unknown error".to_owned());
            return Err(format!("the camera does not start: {reason}"));
        }
        Ok(Some(camera))
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The latest frame as a JPEG (gstreamer_video::convert_sample to image/jpeg);
    /// error when no frame has come yet (waits up to 1 s for the first one).
    pub fn snapshot(&self) -> Result<Vec<u8>, String> {
        if let Some(reason) = self.failure() {
            return Err(format!("the camera has failed: {reason}"));
        }
        let sample = {
            let guard = self.latest.sample.lock().unwrap_or_else(|p| p.into_inner());
            let (guard, _) = self
                .latest
                .arrived
                .wait_timeout_while(guard, FIRST_FRAME_WAIT, |s| s.is_none())
                .unwrap_or_else(|p| p.into_inner());
            guard.clone()
        };
        let Some(sample) = sample else {
            return Err(match self.failure() {
                Some(reason) => format!("the camera has failed: {reason}"),
                None => "the camera has given no frame yet".to_owned(),
            });
        };
        let jpeg = gst_video::convert_sample(
            &sample,
            &gst::Caps::builder("image/jpeg").build(),
            Some(CONVERT_TIMEOUT),
        )
        .map_err(|e| format!("cannot convert the frame to JPEG: {e}"))?;
        let buffer = jpeg.buffer().ok_or("the JPEG conversion gave no data")?;
        let map = buffer
            .map_readable()
            .map_err(|e| format!("cannot read the JPEG: {e}"))?;
        Ok(map.as_slice().to_vec())
    }

    /// A new H.264 feed for a call: an element chain the caller adds to its own call
    /// pipeline and links to `rtpbin`: an `appsrc` fed from an `appsink` on the camera
    /// tee, `openh264enc` (constrained baseline, ~512 kbit/s, a keyframe every 2 s),
    /// and `rtph264pay pt=PT config-interval=-1 aggregate-mode=zero-latency`.
    /// Dropping the returned handle detaches it from the tee.
    pub fn h264_feed(&self, pt: u8) -> Result<VideoFeed, String> {
        if pt > 127 {
            return Err(format!("payload type {pt} is not in 0..=127"));
        }
        // The call's side.
        let appsrc = gst_app::AppSrc::builder()
            .caps(&self.caps)
            .is_live(true)
            .format(gst::Format::Time)
            .do_timestamp(true)
            // An encoder that falls behind gets only the newest frames.
            .leaky_type(gst_app::AppLeakyType::Downstream)
            .max_buffers(2)
            .max_bytes(0)
            .build();
        let encoder = gst::ElementFactory::make("openh264enc")
            .property("bitrate", H264_BITRATE)
            .property_from_str("rate-control", "bitrate")
            .property("gop-size", self.fps * KEYFRAME_INTERVAL_S)
            .property_from_str("complexity", "low")
            .property_from_str("usage-type", "camera")
            .build()
            .map_err(|e| format!("cannot create openh264enc: {e}"))?;
        let profile = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst::Caps::builder("video/x-h264")
                    .field("profile", "constrained-baseline")
                    .build(),
            )
            .build()
            .map_err(|e| format!("cannot create capsfilter: {e}"))?;
        let payloader = gst::ElementFactory::make("rtph264pay")
            .property("pt", u32::from(pt))
            .property("config-interval", -1i32)
            .property_from_str("aggregate-mode", "zero-latency")
            .build()
            .map_err(|e| format!("cannot create rtph264pay: {e}"))?;

        // The camera's side.
        let appsink = {
            let appsrc = appsrc.clone();
            gst_app::AppSink::builder()
                .sync(false)
                .async_(false)
                .max_buffers(1)
                .drop(true)
                .callbacks(
                    gst_app::AppSinkCallbacks::builder()
                        .new_sample(move |sink| {
                            let sample =
                                sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                            if let Some(buffer) = sample.buffer() {
                                // Timestamps are the call pipeline's own (do-timestamp).
                                let mut buffer = buffer.copy();
                                {
                                    let b = buffer.make_mut();
                                    b.set_pts(None);
                                    b.set_dts(None);
                                    b.set_duration(None);
                                }
                                // A call pipeline that is not playing refuses frames:
                                // not the camera's error.
                                let _ = appsrc.push_buffer(buffer);
                            }
                            Ok(gst::FlowSuccess::Ok)
                        })
                        .build(),
                )
                .build()
        };
        self.pipeline
            .add(&appsink)
            .map_err(|e| format!("cannot add a branch to the camera: {e}"))?;
        let tee_pad = match self.tee.request_pad_simple("src_%u") {
            Some(pad) => pad,
            None => {
                let _ = self.pipeline.remove(&appsink);
                return Err("the camera tee gives no pad".to_owned());
            }
        };
        let sink_pad = appsink.static_pad("sink").expect("appsink has a sink pad");
        let attached = tee_pad
            .link(&sink_pad)
            .map_err(|e| format!("cannot link to the camera tee: {e:?}"))
            .and_then(|_| {
                appsink
                    .sync_state_with_parent()
                    .map_err(|e| format!("cannot start a camera branch: {e}"))
            });
        if let Err(e) = attached {
            let _ = appsink.set_state(gst::State::Null);
            let _ = self.pipeline.remove(&appsink);
            self.tee.release_request_pad(&tee_pad);
            return Err(e);
        }

        Ok(VideoFeed {
            elements: vec![appsrc.upcast(), encoder, profile, payloader],
            pipeline: self.pipeline.clone(),
            tee: self.tee.clone(),
            tee_pad,
            appsink,
        })
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Some(bus) = self.pipeline.bus() {
            bus.unset_sync_handler();
        }
    }
}

/// A call's H.264 video from the camera; detached from the camera when dropped.
pub struct VideoFeed {
    /// `appsrc`, `openh264enc`, a caps filter and `rtph264pay`, in link order: the
    /// caller adds them to its call pipeline, links them, and takes RTP from the last
    /// one's `src` pad.
    pub elements: Vec<gst::Element>,
    pipeline: gst::Pipeline,
    tee: gst::Element,
    tee_pad: gst::Pad,
    appsink: gst_app::AppSink,
}

impl Drop for VideoFeed {
    fn drop(&mut self) {
        // Unlink between two frames, so that the tee never pushes into a removed branch.
        let (tx, rx) = mpsc::channel();
        self.tee_pad
            .add_probe(gst::PadProbeType::IDLE, move |pad, _| {
                if let Some(peer) = pad.peer() {
                    let _ = pad.unlink(&peer);
                }
                let _ = tx.send(());
                gst::PadProbeReturn::Remove
            });
        let _ = rx.recv_timeout(Duration::from_secs(1));
        let _ = self.appsink.set_state(gst::State::Null);
        let _ = self.pipeline.remove(&self.appsink);
        self.tee.release_request_pad(&self.tee_pad);
    }
}

#[cfg(test)]
mod tests {
    /// How long a pipeline's first output may take on a busy 2-core machine:
    /// the wait ends with the sample, this only bounds it.
    const PATIENCE: gst::ClockTime = gst::ClockTime::from_seconds(20);

    use super::*;
    use std::time::Instant;

    const W: u32 = 640;
    const H: u32 = 480;

    fn test_camera() -> Camera {
        gst::init().unwrap();
        Camera::new(&VideoSource::Test, W, H, 15)
            .unwrap()
            .expect("a camera")
    }

    /// Width and height from a JPEG's SOF0 or SOF2 marker.
    fn jpeg_size(jpeg: &[u8]) -> Option<(u32, u32)> {
        let mut i = 2;
        while i + 4 <= jpeg.len() {
            if jpeg[i] != 0xFF {
                return None;
            }
            let marker = jpeg[i + 1];
            let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
            if marker == 0xC0 || marker == 0xC2 {
                let sof = jpeg.get(i + 4..i + 9)?;
                let height = u32::from(u16::from_be_bytes([sof[1], sof[2]]));
                let width = u32::from(u16::from_be_bytes([sof[3], sof[4]]));
                return Some((width, height));
            }
            i += 2 + len;
        }
        None
    }

    fn video_size(caps: &gst::CapsRef) -> (u32, u32) {
        let info = gst_video::VideoInfo::from_caps(caps).unwrap();
        (info.width(), info.height())
    }

    fn decode_jpeg(jpeg: &[u8]) -> (u32, u32) {
        let pipeline = gst::parse::launch("appsrc name=src caps=image/jpeg ! jpegdec ! videoconvert ! appsink name=out sync=false")
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let src = pipeline
            .by_name("src")
            .unwrap()
            .downcast::<gst_app::AppSrc>()
            .unwrap();
        let out = pipeline
            .by_name("out")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        src.push_buffer(gst::Buffer::from_slice(jpeg.to_vec()))
            .unwrap();
        src.end_of_stream().unwrap();
        let sample = out.try_pull_sample(PATIENCE).expect("a decoded frame");
        pipeline.set_state(gst::State::Null).unwrap();
        video_size(sample.caps().unwrap())
    }

    fn check_snapshot(camera: &Camera) -> Vec<u8> {
        let jpeg = camera.snapshot().unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "starts with SOI");
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xFF, 0xD9], "ends with EOI");
        assert_eq!(
            jpeg_size(&jpeg),
            Some((W, H)),
            "SOF gives the camera's size"
        );
        assert_eq!(decode_jpeg(&jpeg), (W, H), "decodes to the camera's size");
        jpeg
    }

    /// A call pipeline of `feed ! tee`, one branch keeping the RTP, the other decoding it.
    struct Call {
        pipeline: gst::Pipeline,
        rtp: gst_app::AppSink,
        frames: gst_app::AppSink,
    }

    impl Call {
        fn new(feed: &VideoFeed) -> Call {
            let pipeline = gst::Pipeline::new();
            let tail = gst::parse::bin_from_description(
                "tee name=t ! queue ! appsink name=rtp sync=false \
                 t. ! queue ! rtph264depay ! h264parse ! openh264dec ! appsink name=frames sync=false",
                true,
            )
            .unwrap();
            pipeline.add_many(&feed.elements).unwrap();
            pipeline.add(&tail).unwrap();
            gst::Element::link_many(&feed.elements).unwrap();
            feed.elements.last().unwrap().link(&tail).unwrap();
            let rtp = tail
                .by_name("rtp")
                .unwrap()
                .downcast::<gst_app::AppSink>()
                .unwrap();
            let frames = tail
                .by_name("frames")
                .unwrap()
                .downcast::<gst_app::AppSink>()
                .unwrap();
            pipeline.set_state(gst::State::Playing).unwrap();
            Call {
                pipeline,
                rtp,
                frames,
            }
        }

        /// The first RTP packets carry `pt`, and the stream starts with a constrained
        /// baseline SPS (alone or in a STAP-A).
        fn check_rtp(&self, pt: u8) {
            let mut sps = None;
            for _ in 0..5 {
                let sample = self
                    .rtp
                    .try_pull_sample(PATIENCE)
                    .expect("RTP from the feed");
                let map = sample.buffer().unwrap().map_readable().unwrap();
                assert!(map.len() > 12, "an RTP packet");
                assert_eq!(map[0] >> 6, 2, "RTP version 2");
                assert_eq!(map[1] & 0x7F, pt, "payload type");
                let payload = &map[12 + 4 * usize::from(map[0] & 0x0F)..];
                let mut nals = Vec::new();
                if payload[0] & 0x1F == 24 {
                    let mut rest = &payload[1..];
                    while rest.len() > 2 {
                        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                        nals.push(&rest[2..2 + len]);
                        rest = &rest[2 + len..];
                    }
                } else {
                    nals.push(payload);
                }
                if let Some(nal) = nals.into_iter().find(|n| n[0] & 0x1F == 7) {
                    sps.get_or_insert((nal[1], nal[2]));
                }
            }
            let (profile_idc, constraints) = sps.expect("an SPS at the start");
            assert_eq!(profile_idc, 66, "baseline");
            assert_ne!(constraints & 0x40, 0, "constrained baseline");
        }

        fn check_frame(&self) {
            let sample = self
                .frames
                .try_pull_sample(PATIENCE)
                .expect("a decoded frame");
            assert_eq!(video_size(sample.caps().unwrap()), (W, H));
        }
    }

    impl Drop for Call {
        fn drop(&mut self) {
            let _ = self.pipeline.set_state(gst::State::Null);
        }
    }

    #[test]
    fn video_source_from_str() {
        assert_eq!("test".parse(), Ok(VideoSource::Test));
        assert_eq!("none".parse(), Ok(VideoSource::None));
        assert_eq!(
            "v4l2:/dev/video0".parse(),
            Ok(VideoSource::V4l2(PathBuf::from("/dev/video0")))
        );
        for bad in ["", "v4l2:", "camera", "TEST", "/dev/video0"] {
            let err = bad.parse::<VideoSource>().unwrap_err();
            assert!(err.contains("test, v4l2:/dev/videoN or none"), "{err}");
        }
    }

    #[test]
    fn shareable_between_threads() {
        fn check<T: Send + Sync>() {}
        check::<Camera>();
        check::<VideoFeed>();
    }

    #[test]
    fn no_camera() {
        gst::init().unwrap();
        assert!(Camera::new(&VideoSource::None, W, H, 15).unwrap().is_none());
    }

    #[test]
    fn missing_device_is_an_error() {
        gst::init().unwrap();
        let err = Camera::new(&VideoSource::V4l2("/nonexistent/video9".into()), W, H, 15)
            .err()
            .expect("no camera");
        assert!(err.contains("does not start"), "{err}");
    }

    #[test]
    fn snapshot_is_a_jpeg_of_the_camera_size() {
        let camera = test_camera();
        let first = check_snapshot(&camera);
        std::thread::sleep(Duration::from_millis(300));
        let second = check_snapshot(&camera);
        assert_ne!(first, second, "the picture moves");
    }

    #[test]
    fn snapshot_is_fast() {
        let camera = test_camera();
        camera.snapshot().unwrap();
        let start = Instant::now();
        for _ in 0..10 {
            camera.snapshot().unwrap();
        }
        let each = start.elapsed() / 10;
        assert!(
            each < Duration::from_millis(200),
            "a snapshot takes {each:?}"
        );
    }

    #[test]
    fn two_feeds_then_one_dropped() {
        let camera = test_camera();
        let pads_before = camera.tee.src_pads().len();

        let feed_a = camera.h264_feed(96).unwrap();
        let feed_b = camera.h264_feed(102).unwrap();
        assert_eq!(camera.tee.src_pads().len(), pads_before + 2);
        let call_a = Call::new(&feed_a);
        let call_b = Call::new(&feed_b);
        call_a.check_rtp(96);
        call_b.check_rtp(102);
        call_a.check_frame();
        call_b.check_frame();

        // A call that ends: its pipeline stops, its feed goes.
        drop(call_a);
        drop(feed_a);
        assert_eq!(camera.tee.src_pads().len(), pads_before + 1);
        // The other call goes on.
        for _ in 0..3 {
            call_b.check_frame();
        }
        let first = check_snapshot(&camera);

        // Dropped while its call still plays: the camera is not disturbed.
        drop(feed_b);
        assert_eq!(camera.tee.src_pads().len(), pads_before);
        std::thread::sleep(Duration::from_millis(300));
        let second = check_snapshot(&camera);
        assert_ne!(first, second, "the camera still runs");
        drop(call_b);

        // And a new call gets video again.
        let feed_c = camera.h264_feed(96).unwrap();
        let call_c = Call::new(&feed_c);
        call_c.check_rtp(96);
        call_c.check_frame();
    }

    #[test]
    fn feed_outliving_the_camera() {
        let camera = test_camera();
        let feed = camera.h264_feed(96).unwrap();
        drop(camera);
        drop(feed);
    }

    #[test]
    fn bad_payload_type() {
        let camera = test_camera();
        assert!(camera.h264_feed(128).is_err());
    }
}
