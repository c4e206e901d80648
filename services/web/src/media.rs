//! Media: the audio codecs offered and accepted, in order of preference,
//! the video codec, the UDP port range for RTP and RTCP, and RTP latching
//! for peers behind NAT. The form saves the `media` section through the
//! config service; a refusal shows beside the field it names, with what was
//! typed kept.

use askama::Template;
use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use crate::api::App;
use crate::form;
use crate::pages::{Menu, render};
use crate::section::{self, SectionForm};
use crate::sessions::Session;

/// The audio codecs the door phone has, as the document names them.
pub const AUDIO: [&str; 4] = ["PCMU", "PCMA", "G722", "opus"];
/// The video codecs it has.
pub const VIDEO: [&str; 1] = ["H264"];

#[derive(Default)]
pub struct MediaForm {
    /// The codec chosen at each place of preference (empty: none).
    pub audio: Vec<String>,
    pub audio_error: Option<String>,
    pub video: Vec<String>,
    pub video_error: Option<String>,
    pub first_port: String,
    pub first_port_error: Option<String>,
    pub last_port: String,
    pub last_port_error: Option<String>,
    pub latching: bool,
    pub other_error: Option<String>,
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

impl SectionForm for MediaForm {
    const SECTION: &'static str = "media";

    fn from_section(m: &Value) -> MediaForm {
        let list = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().map(text).collect())
                .unwrap_or_default()
        };
        let mut audio = list(&m["audio_codecs"]);
        audio.resize(AUDIO.len().max(audio.len()), String::new());
        let port = |i: usize| match &m["rtp_ports"][i] {
            Value::Null => String::new(),
            v => text(v),
        };
        MediaForm {
            audio,
            video: list(&m["video_codecs"]),
            first_port: port(0),
            last_port: port(1),
            latching: m["rtp_latching"] == Value::Bool(true),
            ..MediaForm::default()
        }
    }

    fn from_form(pairs: &[(String, String)]) -> MediaForm {
        let field = |name: &str| form::one(pairs, name).unwrap_or_default().trim().to_owned();
        MediaForm {
            audio: (1..=AUDIO.len())
                .map(|i| field(&format!("audio.{i}")))
                .collect(),
            video: VIDEO
                .iter()
                .filter(|v| form::one(pairs, &format!("video.{v}")).is_some())
                .map(|v| (*v).to_owned())
                .collect(),
            first_port: field("rtp_ports.1"),
            last_port: field("rtp_ports.2"),
            latching: form::one(pairs, "rtp_latching").is_some(),
            ..MediaForm::default()
        }
    }

    fn to_section(&self) -> Value {
        let audio: Vec<&String> = self.audio.iter().filter(|c| !c.is_empty()).collect();
        json!({
            "audio_codecs": audio,
            "video_codecs": self.video,
            "rtp_ports": [form::number(&self.first_port), form::number(&self.last_port)],
            "rtp_latching": self.latching,
        })
    }

    fn refused(&mut self, field: Option<&str>, message: String) {
        let slot = match field.and_then(|f| f.strip_prefix("media.")) {
            Some(f) if f.starts_with("audio_codecs") => &mut self.audio_error,
            Some(f) if f.starts_with("video_codecs") => &mut self.video_error,
            Some("rtp_ports[1]") => &mut self.first_port_error,
            Some("rtp_ports[2]") => &mut self.last_port_error,
            _ => &mut self.other_error,
        };
        *slot = Some(message);
    }

    async fn page(
        self,
        _: &App,
        session: &Session,
        code: StatusCode,
        message: Option<String>,
    ) -> Response {
        let page = MediaPage {
            title: "Media",
            menu: Menu::of(session),
            message,
            error: None,
            csrf: session.csrf.clone(),
            form: self,
        };
        render(code, &page)
    }
}

impl MediaForm {
    /// Whether place `i` (from 0) holds `codec`.
    pub fn at(&self, i: &usize, codec: &str) -> bool {
        self.audio.get(*i).is_some_and(|c| c == codec)
    }

    pub fn has_video(&self, codec: &str) -> bool {
        self.video.iter().any(|c| c == codec)
    }
}

#[derive(Template)]
#[template(path = "media.html")]
struct MediaPage {
    title: &'static str,
    menu: Option<Menu>,
    message: Option<String>,
    error: Option<String>,
    csrf: String,
    form: MediaForm,
}

pub fn router() -> Router<App> {
    Router::new().route(
        "/media",
        get(section::show::<MediaForm>).post(section::save::<MediaForm>),
    )
}
