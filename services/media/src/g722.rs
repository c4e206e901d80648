//! G.722 (ITU-T, 64 kbit/s, 16 kHz wideband) for calls, without gst-libav.
//!
//! Two in-process GStreamer elements wrap spandsp's bit-exact codec on GStreamer's
//! audio codec base classes, which negotiate the caps, gather the input into frames
//! and time the output:
//!
//! - `doorphoneg722enc` (an `AudioEncoder`): `audio/x-raw,format=S16LE,layout=interleaved,
//!   rate=16000,channels=1` in, `audio/G722,rate=16000,channels=1` out (what `rtpg722pay`
//!   takes), in frames of 20 ms: 320 samples to 160 bytes.
//! - `doorphoneg722dec` (an `AudioDecoder`): `audio/G722,rate=16000,channels=1` in (what
//!   `rtpg722depay` gives), raw S16LE 16 kHz mono out, two samples per input byte.
//!
//! Call [`register`] once after `gstreamer::init()`; the elements are then available to
//! `ElementFactory` and `parse::launch` by name.

use std::sync::{Mutex, MutexGuard, PoisonError};

use gstreamer::glib;
use gstreamer::prelude::*;

/// Factory name of the encoder element.
pub const ENCODER_NAME: &str = "doorphoneg722enc";
/// Factory name of the decoder element.
pub const DECODER_NAME: &str = "doorphoneg722dec";

/// Caps of raw audio on the encoder's sink pad and the decoder's source pad.
pub const RAW_CAPS: &str = "audio/x-raw,format=S16LE,layout=interleaved,rate=16000,channels=1";
/// Caps of G.722 data on the encoder's source pad and the decoder's sink pad.
pub const G722_CAPS: &str = "audio/G722,rate=16000,channels=1";

/// Sample rate of the linear audio on either side of the codec.
const SAMPLE_RATE: u32 = 16_000;
/// Samples in one encoder frame: 20 ms, the packet time of every call.
const FRAME_SAMPLES: i32 = 320;

/// Registers `doorphoneg722enc` and `doorphoneg722dec` with the GStreamer registry of this
/// process. Calling it again is harmless.
pub fn register() -> Result<(), glib::BoolError> {
    gstreamer::Element::register(
        None,
        ENCODER_NAME,
        gstreamer::Rank::MARGINAL,
        G722Enc::static_type(),
    )?;
    gstreamer::Element::register(
        None,
        DECODER_NAME,
        gstreamer::Rank::MARGINAL,
        G722Dec::static_type(),
    )
}

glib::wrapper! {
    struct G722Enc(ObjectSubclass<enc_imp::G722Enc>)
        @extends gstreamer_audio::AudioEncoder, gstreamer::Element, gstreamer::Object;
}

glib::wrapper! {
    struct G722Dec(ObjectSubclass<dec_imp::G722Dec>)
        @extends gstreamer_audio::AudioDecoder, gstreamer::Element, gstreamer::Object;
}

/// Locks a mutex, carrying on with the data if another streaming thread panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Builds the always-present sink and source pad templates of an element.
fn pad_templates(sink_caps: &str, src_caps: &str) -> Vec<gstreamer::PadTemplate> {
    let template = |name, direction, caps: &str| {
        let caps: gstreamer::Caps = caps.parse().expect("static caps string parses");
        gstreamer::PadTemplate::new(name, direction, gstreamer::PadPresence::Always, &caps)
            .expect("static pad template is valid")
    };
    vec![
        template("sink", gstreamer::PadDirection::Sink, sink_caps),
        template("src", gstreamer::PadDirection::Src, src_caps),
    ]
}

/// The error a streaming thread posts when spandsp cannot be loaded or cannot
/// allocate a codec state.
fn no_codec(what: &str, why: &str) -> gstreamer::ErrorMessage {
    gstreamer::error_msg!(
        gstreamer::LibraryError::Init,
        ["Cannot make a G.722 {}: {}", what, why]
    )
}

/// The debug category of both elements.
static CAT: std::sync::LazyLock<gstreamer::DebugCategory> = std::sync::LazyLock::new(|| {
    gstreamer::DebugCategory::new(
        "doorphoneg722",
        gstreamer::DebugColorFlags::empty(),
        Some("G.722 with spandsp"),
    )
});

/// Safe owners of spandsp's G.722 codec states.
mod spandsp {
    use std::ffi::{CStr, CString, c_int, c_void};
    use std::marker::{PhantomData, PhantomPinned};
    use std::ptr::{self, NonNull};
    use std::sync::OnceLock;

    /// 64 kbit/s: eight bits per code, one code per two 16 kHz samples.
    const BIT_RATE: c_int = 64_000;
    /// Unpacked codes, 16 kHz linear audio (neither `G722_PACKED` nor `G722_SAMPLE_RATE_8000`).
    const OPTIONS: c_int = 0;
    /// The library's file name (`libspandsp.so.N`), found by the build.
    const SONAME: &str = env!("DOORPHONE_SPANDSP_SONAME");
    /// Largest number of samples or codes handed to spandsp in one call.
    const CHUNK: usize = 1 << 16;

    /// spandsp's `g722_encode_state_t`, only ever handled by pointer.
    #[repr(C)]
    struct EncodeState {
        _opaque: [u8; 0],
        _marker: PhantomData<(*mut u8, PhantomPinned)>,
    }

    /// spandsp's `g722_decode_state_t`, only ever handled by pointer.
    #[repr(C)]
    struct DecodeState {
        _opaque: [u8; 0],
        _marker: PhantomData<(*mut u8, PhantomPinned)>,
    }

    type EncodeInit = unsafe extern "C" fn(*mut EncodeState, c_int, c_int) -> *mut EncodeState;
    type EncodeFree = unsafe extern "C" fn(*mut EncodeState) -> c_int;
    type Encode = unsafe extern "C" fn(*mut EncodeState, *mut u8, *const i16, c_int) -> c_int;
    type DecodeInit = unsafe extern "C" fn(*mut DecodeState, c_int, c_int) -> *mut DecodeState;
    type DecodeFree = unsafe extern "C" fn(*mut DecodeState) -> c_int;
    type Decode = unsafe extern "C" fn(*mut DecodeState, *mut i16, *const u8, c_int) -> c_int;

    /// spandsp's G.722 functions (`g722_encode_init` and the rest, as
    /// `spandsp/g722.h` declares them).
    struct Api {
        encode_init: EncodeInit,
        encode_free: EncodeFree,
        encode: Encode,
        decode_init: DecodeInit,
        decode_free: DecodeFree,
        decode: Decode,
    }

    /// The library, loaded the first time a codec is made and kept: spandsp
    /// brings libtiff and what that links (on Debian WebP, Lerc and the C++
    /// runtime, 1.4 MB resident), which a door carries only once a call uses
    /// G.722.
    static API: OnceLock<Result<Api, String>> = OnceLock::new();

    fn api() -> Result<&'static Api, String> {
        API.get_or_init(load).as_ref().map_err(Clone::clone)
    }

    fn load() -> Result<Api, String> {
        let soname = CString::new(SONAME).expect("the soname has no NUL");
        // SAFETY: dlopen takes a NUL-terminated name; spandsp's initialisers
        // are those of an ordinary shared library. The handle is never closed,
        // so the functions below stay valid for the life of the process.
        let handle = unsafe { libc::dlopen(soname.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(format!("cannot load {SONAME}: {}", dl_error()));
        }
        let symbol = |name: &CStr| {
            // SAFETY: `handle` is a live dlopen handle and `name` is NUL-terminated.
            let address = unsafe { libc::dlsym(handle, name.as_ptr()) };
            if address.is_null() {
                Err(format!("{SONAME} has no {}", name.to_string_lossy()))
            } else {
                Ok(address)
            }
        };
        // SAFETY: each symbol is the function of that name in spandsp, whose
        // C signature is the type it is transmuted to (spandsp/g722.h).
        unsafe {
            Ok(Api {
                encode_init: std::mem::transmute::<*mut c_void, EncodeInit>(symbol(
                    c"g722_encode_init",
                )?),
                encode_free: std::mem::transmute::<*mut c_void, EncodeFree>(symbol(
                    c"g722_encode_free",
                )?),
                encode: std::mem::transmute::<*mut c_void, Encode>(symbol(c"g722_encode")?),
                decode_init: std::mem::transmute::<*mut c_void, DecodeInit>(symbol(
                    c"g722_decode_init",
                )?),
                decode_free: std::mem::transmute::<*mut c_void, DecodeFree>(symbol(
                    c"g722_decode_free",
                )?),
                decode: std::mem::transmute::<*mut c_void, Decode>(symbol(c"g722_decode")?),
            })
        }
    }

    fn dl_error() -> String {
        // SAFETY: dlerror returns null or a NUL-terminated message owned by the
        // C library, read at once.
        let message = unsafe { libc::dlerror() };
        if message.is_null() {
            "unknown error".to_owned()
        } else {
            // SAFETY: non-null, NUL-terminated (above).
            unsafe { CStr::from_ptr(message) }
                .to_string_lossy()
                .into_owned()
        }
    }

    /// A G.722 encoder at 64 kbit/s from 16 kHz audio.
    pub struct Encoder(NonNull<EncodeState>, &'static Api);

    // SAFETY: the state is heap memory owned solely by this value and spandsp keeps no other
    // reference to it, so moving it to another thread is sound. It is not `Sync`: every use
    // goes through `&mut self`.
    unsafe impl Send for Encoder {}

    impl Encoder {
        /// Allocates a fresh encoder (loading spandsp the first time); why not
        /// when spandsp cannot be loaded or cannot allocate one.
        pub fn new() -> Result<Self, String> {
            let api = api()?;
            // SAFETY: a null state makes spandsp allocate and initialise its own; the rate and
            // options are ones the header documents as valid.
            let state = unsafe { (api.encode_init)(ptr::null_mut(), BIT_RATE, OPTIONS) };
            NonNull::new(state)
                .map(|state| Self(state, api))
                .ok_or_else(|| "spandsp cannot allocate it".to_owned())
        }

        /// Appends the codes for `pcm` to `out`: one byte per two samples.
        ///
        /// # Panics
        /// If `pcm` holds an odd number of samples (spandsp consumes them in pairs).
        pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
            assert!(pcm.len().is_multiple_of(2), "G.722 encodes sample pairs");
            for chunk in pcm.chunks(CHUNK) {
                let start = out.len();
                out.resize(start + chunk.len() / 2, 0);
                let len = c_int::try_from(chunk.len()).expect("chunk fits in c_int");
                // SAFETY: the state is live and exclusively borrowed; `chunk` holds `len`
                // samples (an even count, read in pairs) and `out[start..]` has room for the
                // `len / 2` bytes spandsp writes at 64 kbit/s unpacked.
                let written = unsafe {
                    (self.1.encode)(
                        self.0.as_ptr(),
                        out[start..].as_mut_ptr(),
                        chunk.as_ptr(),
                        len,
                    )
                };
                out.truncate(start + usize::try_from(written).unwrap_or(0));
            }
        }
    }

    impl Drop for Encoder {
        fn drop(&mut self) {
            // SAFETY: the state came from `g722_encode_init` with a null argument, so spandsp
            // owns its allocation, and it is freed exactly once, here.
            unsafe { (self.1.encode_free)(self.0.as_ptr()) };
        }
    }

    /// A G.722 decoder at 64 kbit/s to 16 kHz audio.
    pub struct Decoder(NonNull<DecodeState>, &'static Api);

    // SAFETY: as for `Encoder`: exclusively owned heap memory, used only through `&mut self`.
    unsafe impl Send for Decoder {}

    impl Decoder {
        /// Allocates a fresh decoder (loading spandsp the first time); why not
        /// when spandsp cannot be loaded or cannot allocate one.
        pub fn new() -> Result<Self, String> {
            let api = api()?;
            // SAFETY: a null state makes spandsp allocate and initialise its own; the rate and
            // options are ones the header documents as valid.
            let state = unsafe { (api.decode_init)(ptr::null_mut(), BIT_RATE, OPTIONS) };
            NonNull::new(state)
                .map(|state| Self(state, api))
                .ok_or_else(|| "spandsp cannot allocate it".to_owned())
        }

        /// Appends the samples decoded from `codes` to `out`: two samples per byte.
        pub fn decode(&mut self, codes: &[u8], out: &mut Vec<i16>) {
            for chunk in codes.chunks(CHUNK) {
                let start = out.len();
                out.resize(start + chunk.len() * 2, 0);
                let len = c_int::try_from(chunk.len()).expect("chunk fits in c_int");
                // SAFETY: the state is live and exclusively borrowed; `chunk` holds `len`
                // bytes and `out[start..]` has room for the `2 * len` samples spandsp writes
                // at 64 kbit/s unpacked to 16 kHz.
                let written = unsafe {
                    (self.1.decode)(
                        self.0.as_ptr(),
                        out[start..].as_mut_ptr(),
                        chunk.as_ptr(),
                        len,
                    )
                };
                out.truncate(start + usize::try_from(written).unwrap_or(0));
            }
        }
    }

    impl Drop for Decoder {
        fn drop(&mut self) {
            // SAFETY: the state came from `g722_decode_init` with a null argument, so spandsp
            // owns its allocation, and it is freed exactly once, here.
            unsafe { (self.1.decode_free)(self.0.as_ptr()) };
        }
    }
}

mod enc_imp {
    use std::sync::{LazyLock, Mutex};

    use gstreamer::glib;
    use gstreamer_audio::prelude::*;
    use gstreamer_audio::subclass::prelude::*;

    use super::spandsp::Encoder;
    use super::{FRAME_SAMPLES, G722_CAPS, RAW_CAPS, lock, no_codec};

    /// The codec state of the running stream: made at start, renewed on flush.
    #[derive(Default)]
    pub(super) struct G722Enc {
        encoder: Mutex<Option<Encoder>>,
    }

    impl G722Enc {
        fn renew(&self) -> Result<(), gstreamer::ErrorMessage> {
            *lock(&self.encoder) = Some(Encoder::new().map_err(|e| no_codec("encoder", &e))?);
            Ok(())
        }
    }

    #[glib::object_subclass]
    impl ObjectSubclass for G722Enc {
        const NAME: &'static str = "DoorphoneG722Enc";
        type Type = super::G722Enc;
        type ParentType = gstreamer_audio::AudioEncoder;
    }

    impl ObjectImpl for G722Enc {}

    impl GstObjectImpl for G722Enc {}

    impl ElementImpl for G722Enc {
        fn metadata() -> Option<&'static gstreamer::subclass::ElementMetadata> {
            static METADATA: LazyLock<gstreamer::subclass::ElementMetadata> = LazyLock::new(|| {
                gstreamer::subclass::ElementMetadata::new(
                    "G.722 encoder",
                    "Codec/Encoder/Audio",
                    "Encodes 16 kHz mono audio to G.722 at 64 kbit/s with spandsp",
                    "Door phone developers",
                )
            });
            Some(&METADATA)
        }

        fn pad_templates() -> &'static [gstreamer::PadTemplate] {
            static TEMPLATES: LazyLock<Vec<gstreamer::PadTemplate>> =
                LazyLock::new(|| super::pad_templates(RAW_CAPS, G722_CAPS));
            &TEMPLATES
        }
    }

    impl AudioEncoderImpl for G722Enc {
        fn start(&self) -> Result<(), gstreamer::ErrorMessage> {
            self.renew()
        }

        fn stop(&self) -> Result<(), gstreamer::ErrorMessage> {
            *lock(&self.encoder) = None;
            Ok(())
        }

        fn flush(&self) {
            if let Err(e) = self.renew() {
                self.post_error_message(e);
            }
        }

        fn set_format(
            &self,
            _info: &gstreamer_audio::AudioInfo,
        ) -> Result<(), gstreamer::LoggableError> {
            let encoder = self.obj();
            // Whole 20 ms frames (an even sample count, as spandsp encodes pairs); the
            // base class keeps the rest for the next buffer.
            encoder.set_frame_samples_min(FRAME_SAMPLES);
            encoder.set_frame_samples_max(FRAME_SAMPLES);
            encoder.set_hard_min(true);
            let caps: gstreamer::Caps = G722_CAPS.parse().expect("static caps string parses");
            encoder
                .set_output_format(&caps)
                .map_err(|_| gstreamer::loggable_error!(super::CAT, "G.722 caps refused"))
        }

        fn handle_frame(
            &self,
            buffer: Option<&gstreamer::Buffer>,
        ) -> Result<gstreamer::FlowSuccess, gstreamer::FlowError> {
            // Draining: a hard minimum leaves no partial frame to encode.
            let Some(buffer) = buffer else {
                return Ok(gstreamer::FlowSuccess::Ok);
            };
            let map = buffer
                .map_readable()
                .map_err(|_| gstreamer::FlowError::Error)?;
            let pcm: Vec<i16> = map
                .chunks_exact(2)
                .map(|bytes| i16::from_le_bytes([bytes[0], bytes[1]]))
                .collect();
            let mut codes = Vec::with_capacity(pcm.len() / 2);
            lock(&self.encoder)
                .as_mut()
                .ok_or(gstreamer::FlowError::Flushing)?
                .encode(&pcm, &mut codes);
            self.obj().finish_frame(
                Some(gstreamer::Buffer::from_mut_slice(codes)),
                pcm.len() as i32,
            )
        }
    }
}

mod dec_imp {
    use std::sync::{LazyLock, Mutex};

    use gstreamer::glib;
    use gstreamer_audio::prelude::*;
    use gstreamer_audio::subclass::prelude::*;

    use super::spandsp::Decoder;
    use super::{G722_CAPS, RAW_CAPS, SAMPLE_RATE, lock, no_codec};

    /// The codec state of the running stream: made at start, renewed on flush.
    #[derive(Default)]
    pub(super) struct G722Dec {
        decoder: Mutex<Option<Decoder>>,
    }

    impl G722Dec {
        fn renew(&self) -> Result<(), gstreamer::ErrorMessage> {
            *lock(&self.decoder) = Some(Decoder::new().map_err(|e| no_codec("decoder", &e))?);
            Ok(())
        }
    }

    #[glib::object_subclass]
    impl ObjectSubclass for G722Dec {
        const NAME: &'static str = "DoorphoneG722Dec";
        type Type = super::G722Dec;
        type ParentType = gstreamer_audio::AudioDecoder;
    }

    impl ObjectImpl for G722Dec {}

    impl GstObjectImpl for G722Dec {}

    impl ElementImpl for G722Dec {
        fn metadata() -> Option<&'static gstreamer::subclass::ElementMetadata> {
            static METADATA: LazyLock<gstreamer::subclass::ElementMetadata> = LazyLock::new(|| {
                gstreamer::subclass::ElementMetadata::new(
                    "G.722 decoder",
                    "Codec/Decoder/Audio",
                    "Decodes G.722 at 64 kbit/s to 16 kHz mono audio with spandsp",
                    "Door phone developers",
                )
            });
            Some(&METADATA)
        }

        fn pad_templates() -> &'static [gstreamer::PadTemplate] {
            static TEMPLATES: LazyLock<Vec<gstreamer::PadTemplate>> =
                LazyLock::new(|| super::pad_templates(G722_CAPS, RAW_CAPS));
            &TEMPLATES
        }
    }

    impl AudioDecoderImpl for G722Dec {
        fn start(&self) -> Result<(), gstreamer::ErrorMessage> {
            self.renew()
        }

        fn stop(&self) -> Result<(), gstreamer::ErrorMessage> {
            *lock(&self.decoder) = None;
            Ok(())
        }

        fn flush(&self, _hard: bool) {
            if let Err(e) = self.renew() {
                self.post_error_message(e);
            }
        }

        fn set_format(&self, _caps: &gstreamer::Caps) -> Result<(), gstreamer::LoggableError> {
            let info = gstreamer_audio::AudioInfo::builder(
                gstreamer_audio::AudioFormat::S16le,
                SAMPLE_RATE,
                1,
            )
            .build()
            .map_err(|_| gstreamer::loggable_error!(super::CAT, "no raw audio format"))?;
            self.obj()
                .set_output_format(&info)
                .map_err(|_| gstreamer::loggable_error!(super::CAT, "raw caps refused"))
        }

        fn handle_frame(
            &self,
            buffer: Option<&gstreamer::Buffer>,
        ) -> Result<gstreamer::FlowSuccess, gstreamer::FlowError> {
            let Some(buffer) = buffer else {
                return Ok(gstreamer::FlowSuccess::Ok);
            };
            let map = buffer
                .map_readable()
                .map_err(|_| gstreamer::FlowError::Error)?;
            let mut pcm = Vec::with_capacity(map.len() * 2);
            lock(&self.decoder)
                .as_mut()
                .ok_or(gstreamer::FlowError::Flushing)?
                .decode(&map, &mut pcm);
            let data: Vec<u8> = pcm.iter().flat_map(|sample| sample.to_le_bytes()).collect();
            self.obj()
                .finish_frame(Some(gstreamer::Buffer::from_mut_slice(data)), 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use gstreamer::prelude::*;
    use gstreamer_app::AppSink;

    use super::*;

    /// Samples per buffer from `audiotestsrc` (its default).
    const SAMPLES_PER_BUFFER: usize = 1024;
    const NUM_BUFFERS: usize = 50;

    fn init() {
        gstreamer::init().expect("GStreamer initialises");
        register().expect("elements register");
    }

    /// What reached the appsink of a test pipeline.
    #[derive(Default)]
    struct Collected {
        data: Vec<u8>,
        buffers: Vec<(
            Option<gstreamer::ClockTime>,
            Option<gstreamer::ClockTime>,
            usize,
        )>,
        caps: Option<gstreamer::Caps>,
    }

    /// Runs `description` (ending in an appsink named `sink`) to EOS and collects its output.
    fn run(description: &str) -> Collected {
        init();
        let pipeline = gstreamer::parse::launch(description)
            .expect("pipeline parses")
            .downcast::<gstreamer::Pipeline>()
            .expect("is a pipeline");
        let sink = pipeline
            .by_name("sink")
            .expect("has a sink")
            .downcast::<AppSink>()
            .expect("sink is an appsink");
        sink.set_sync(false);
        let collected = Arc::new(Mutex::new(Collected::default()));
        let into = Arc::clone(&collected);
        sink.set_callbacks(
            gstreamer_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gstreamer::FlowError::Eos)?;
                    let buffer = sample.buffer().ok_or(gstreamer::FlowError::Error)?;
                    let map = buffer
                        .map_readable()
                        .map_err(|_| gstreamer::FlowError::Error)?;
                    let mut into = into.lock().unwrap();
                    into.data.extend_from_slice(&map);
                    into.buffers
                        .push((buffer.pts(), buffer.duration(), map.len()));
                    if into.caps.is_none() {
                        into.caps = sample.caps_owned();
                    }
                    Ok(gstreamer::FlowSuccess::Ok)
                })
                .build(),
        );

        pipeline
            .set_state(gstreamer::State::Playing)
            .expect("pipeline plays");
        let bus = pipeline.bus().expect("pipeline has a bus");
        let message = bus
            .timed_pop_filtered(
                gstreamer::ClockTime::from_seconds(20),
                &[gstreamer::MessageType::Eos, gstreamer::MessageType::Error],
            )
            .expect("pipeline finishes in time");
        if let gstreamer::MessageView::Error(err) = message.view() {
            panic!("pipeline failed: {} ({:?})", err.error(), err.debug());
        }
        pipeline
            .set_state(gstreamer::State::Null)
            .expect("pipeline stops");
        std::mem::take(&mut *collected.lock().unwrap())
    }

    fn samples(data: &[u8]) -> Vec<i16> {
        data.chunks_exact(2)
            .map(|bytes| i16::from_le_bytes([bytes[0], bytes[1]]))
            .collect()
    }

    /// Magnitude of `freq` in `samples` at 16 kHz (Goertzel filter).
    fn goertzel(samples: &[i16], freq: f64) -> f64 {
        let coefficient = 2.0 * (2.0 * std::f64::consts::PI * freq / SAMPLE_RATE as f64).cos();
        let (mut s1, mut s2) = (0.0_f64, 0.0_f64);
        for &sample in samples {
            let s0 = f64::from(sample) + coefficient * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        (s1 * s1 + s2 * s2 - coefficient * s1 * s2).max(0.0).sqrt()
    }

    fn assert_tone(collected: &Collected) {
        let caps = collected.caps.as_ref().expect("decoder output has caps");
        assert!(
            caps.can_intersect(&RAW_CAPS.parse::<gstreamer::Caps>().unwrap()),
            "unexpected caps {caps}"
        );
        let pcm = samples(&collected.data);
        let expected = SAMPLES_PER_BUFFER * NUM_BUFFERS;
        assert!(
            pcm.len().abs_diff(expected) <= SAMPLES_PER_BUFFER,
            "decoded {} samples, expected {expected}",
            pcm.len()
        );
        // Skip the codec's start-up.
        let steady = &pcm[1600..];
        let tone = goertzel(steady, 1000.0);
        let other = goertzel(steady, 440.0);
        assert!(
            tone > 10.0 * other,
            "1 kHz magnitude {tone} does not dominate 440 Hz magnitude {other}"
        );
        let peak = steady.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak > 8000, "decoded tone is too quiet: peak {peak}");
    }

    #[test]
    fn register_is_idempotent() {
        init();
        register().expect("second registration succeeds");
        for name in [ENCODER_NAME, DECODER_NAME] {
            gstreamer::ElementFactory::make(name)
                .build()
                .expect("element is available");
        }
    }

    #[test]
    fn round_trip_keeps_a_1khz_tone() {
        let collected = run(&format!(
            "audiotestsrc freq=1000 num-buffers={NUM_BUFFERS} \
             ! audio/x-raw,format=S16LE,rate=16000,channels=1 \
             ! {ENCODER_NAME} ! {DECODER_NAME} ! appsink name=sink"
        ));
        assert_tone(&collected);
        // Timestamps follow the source: contiguous from zero.
        let mut next = gstreamer::ClockTime::ZERO;
        for &(pts, duration, _) in &collected.buffers {
            assert_eq!(pts, Some(next));
            next += duration.expect("buffers have durations");
        }
    }

    /// Duration of `samples` 16 kHz samples (62.5 µs each).
    fn samples_duration(samples: usize) -> gstreamer::ClockTime {
        gstreamer::ClockTime::from_nseconds(samples as u64 * 1_000_000_000 / u64::from(SAMPLE_RATE))
    }

    #[test]
    fn encoder_emits_whole_20_ms_frames_of_one_byte_per_two_samples() {
        let collected = run(&format!(
            "audiotestsrc freq=1000 num-buffers={NUM_BUFFERS} \
             ! audio/x-raw,format=S16LE,rate=16000,channels=1 \
             ! {ENCODER_NAME} ! appsink name=sink"
        ));
        let caps = collected.caps.expect("encoder output has caps");
        assert!(
            caps == G722_CAPS.parse::<gstreamer::Caps>().unwrap(),
            "unexpected caps {caps}"
        );
        // Whole frames only: the last partial one is not encoded.
        let frames = SAMPLES_PER_BUFFER * NUM_BUFFERS / FRAME_SAMPLES as usize;
        assert_eq!(collected.data.len(), frames * FRAME_SAMPLES as usize / 2);
        let mut next = gstreamer::ClockTime::ZERO;
        for &(pts, duration, len) in &collected.buffers {
            assert!(
                len.is_multiple_of(FRAME_SAMPLES as usize / 2),
                "{len} bytes"
            );
            assert_eq!(pts, Some(next));
            assert_eq!(duration, Some(samples_duration(2 * len)));
            next += samples_duration(2 * len);
        }
    }

    #[test]
    fn encoder_frames_odd_sized_input() {
        // 161 samples per buffer: frames cut across buffers, timed from the source.
        let collected = run(&format!(
            "audiotestsrc freq=1000 num-buffers={NUM_BUFFERS} samplesperbuffer=161 \
             ! audio/x-raw,format=S16LE,rate=16000,channels=1 \
             ! {ENCODER_NAME} ! appsink name=sink"
        ));
        let frames = 161 * NUM_BUFFERS / FRAME_SAMPLES as usize;
        assert_eq!(collected.data.len(), frames * FRAME_SAMPLES as usize / 2);
        let mut next = gstreamer::ClockTime::ZERO;
        for &(pts, duration, _) in &collected.buffers {
            assert_eq!(pts, Some(next));
            next += duration.expect("buffers have durations");
        }
        assert_eq!(next, samples_duration(frames * FRAME_SAMPLES as usize));
    }

    #[test]
    fn round_trip_through_rtp_keeps_a_1khz_tone() {
        let collected = run(&format!(
            "audiotestsrc freq=1000 num-buffers={NUM_BUFFERS} \
             ! audio/x-raw,format=S16LE,rate=16000,channels=1 \
             ! {ENCODER_NAME} ! rtpg722pay max-ptime=20000000 \
             ! application/x-rtp,encoding-name=G722,clock-rate=8000,payload=9 \
             ! rtpg722depay ! {DECODER_NAME} ! appsink name=sink"
        ));
        assert_tone(&collected);
    }
}
