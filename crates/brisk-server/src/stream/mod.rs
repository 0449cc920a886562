//! `GET /v1/audio/transcriptions/stream`: live transcription over a
//! WebSocket.
//!
//! The client sends 16 kHz mono PCM16 little-endian audio as binary
//! messages, and JSON control messages as text:
//! `{"type": "start", "model": "whisper-tiny-en", "language": "en"}` (the
//! model may also be given as `?model=` in the URL) and `{"type": "stop"}`
//! (transcribe what is left, then close normally).
//!
//! Utterances are found by the silero VAD model when one is configured
//! (`[stream] vad`, [`silero`]), else by an energy detector; `started` says
//! which (`"vad"`).
//!
//! The server answers with JSON text messages: `started`, `partial` (the
//! utterance so far, while it is being spoken), `final` (once voice activity
//! detection ends the utterance), `error`, and `stopped`. Times are seconds
//! from the start of the session's audio.
//!
//! Every session shares the registry's loaded model: its requests queue and
//! batch like any other client's. Memory per session is bounded: the
//! utterance being spoken is cut at `max_utterance_s`, finished utterances
//! wait in a queue of `max_pending_utterances` (when transcription falls
//! that far behind the audio the session is closed with 1013 "try again
//! later" and a reason), partials are skipped while the model is busy with
//! this session, and events to a client that does not read are bounded by a
//! small queue and a send timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use brisk_core::{Request, TranscribeRequest};
use brisk_engine::CacheMode;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::error::AppError;
use crate::AppState;
use brisk_engine::speech::energy_vad::{
    EnergySettings, EnergyVad, SegmentSettings, Segmenter, Utterance, VoiceDetector, SAMPLE_RATE,
};

#[cfg(feature = "onnx")]
pub mod silero;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// A transcription model (default: the first one configured).
    model: Option<String>,
    /// ISO-639-1 code; detected per utterance when absent.
    language: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Control {
    Start {
        model: Option<String>,
        language: Option<String>,
        prompt: Option<String>,
    },
    Stop,
}

/// What the model workers hand back to the session loop.
enum Event {
    Partial {
        utterance: u64,
        start: f64,
        end: f64,
        text: String,
    },
    Final {
        utterance: u64,
        start: f64,
        end: f64,
        text: String,
        forced: bool,
    },
    Error {
        utterance: u64,
        error: Value,
    },
    /// The final-transcription worker is done (after a stop).
    Drained,
}

/// The model and options of a session.
#[derive(Clone)]
struct Target {
    model: String,
    language: Option<String>,
    prompt: Option<String>,
}

#[utoipa::path(get, path = "/v1/audio/transcriptions/stream", tag = "audio",
    params(StreamQuery),
    responses((status = 101, description = "Switching Protocols: a WebSocket. The client sends 16 kHz mono 16-bit PCM as binary messages (or `{\"type\":\"stop\"}`); the server sends JSON events: `started`, `partial`, `final` per utterance, `error`, `stopped`."),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn handler(
    State(state): State<AppState>,
    Query(q): Query<StreamQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let max = state.config.stream.max_message_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            metrics::gauge!("brisk_stream_sessions").increment(1.0);
            let span = tracing::info_span!("stream", model = q.model.as_deref().unwrap_or(""));
            // Loading silero for the session is blocking work (an ONNX
            // Runtime session): off the async runtime's threads.
            let session = match tokio::task::spawn_blocking(move || Session::new(state, q)).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "stream session setup failed");
                    metrics::gauge!("brisk_stream_sessions").decrement(1.0);
                    return;
                }
            };
            session.run(socket).instrument(span).await;
            metrics::gauge!("brisk_stream_sessions").decrement(1.0);
        })
}

struct Session {
    state: AppState,
    target: Option<Target>,
    segmenter: Segmenter,
    /// An odd trailing byte of the last binary message.
    carry: Option<u8>,
    finals: Option<mpsc::Sender<Utterance>>,
    events_tx: mpsc::Sender<Event>,
    events_rx: mpsc::Receiver<Event>,
    partial_busy: Arc<AtomicBool>,
    /// Length of the current utterance when its last partial was started.
    partial_at: usize,
    /// Highest utterance whose final was sent: later partials are stale.
    last_final: Option<u64>,
    /// The voice detector in use: a silero model's name, or "energy".
    vad_name: String,
}

/// Why the session ends, sent in the close frame.
struct Close {
    code: u16,
    reason: String,
}

impl Close {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

impl Session {
    fn new(state: AppState, q: StreamQuery) -> Self {
        let c = &state.config.stream;
        let (detector, vad_name) = detector(&state);
        let segmenter = Segmenter::new(
            detector,
            SegmentSettings {
                hangover_ms: c.hangover_ms,
                max_utterance_ms: (c.max_utterance_s * 1000.0) as usize,
                ..Default::default()
            },
        );
        let (events_tx, events_rx) = mpsc::channel(c.max_pending_events.max(2));
        let model = q.model.or_else(|| c.default_model.clone());
        Self {
            target: model.map(|model| Target {
                model,
                language: q.language,
                prompt: None,
            }),
            segmenter,
            carry: None,
            finals: None,
            events_tx,
            events_rx,
            partial_busy: Arc::new(AtomicBool::new(false)),
            partial_at: 0,
            last_final: None,
            vad_name,
            state,
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        let close = self.serve(&mut socket).await;
        if let Some(Close { code, reason }) = close {
            tracing::info!(code, %reason, "stream session closed");
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = tokio::time::timeout(
                self.send_timeout(),
                socket.send(Message::Close(Some(frame))),
            )
            .await;
            // Finish the closing handshake: read (and drop) what the client
            // sent meanwhile until its close reply. Closing with unread data
            // would reset the connection and lose our close frame and reason.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, socket.recv()).await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        }
    }

    fn send_timeout(&self) -> Duration {
        Duration::from_millis(self.state.config.stream.send_timeout_ms.max(1))
    }

    /// The session loop; `None` when the client went away.
    async fn serve(&mut self, socket: &mut WebSocket) -> Option<Close> {
        if let Some(t) = self.target.clone() {
            if let Err(close) = self.begin(socket, t).await {
                return Some(close);
            }
        }
        let idle = Duration::from_secs(self.state.config.stream.idle_timeout_s.max(1));
        let mut stopping = false;
        loop {
            tokio::select! {
                ev = self.events_rx.recv() => {
                    let Some(ev) = ev else { continue };
                    if matches!(ev, Event::Drained) {
                        if stopping {
                            let end = self.segmenter.position_s();
                            if let Err(c) = self.send_json(socket, json!({"type": "stopped", "end": end})).await {
                                return c;
                            }
                            return Some(Close::new(close_code::NORMAL, "stopped"));
                        }
                        continue;
                    }
                    if let Err(c) = self.deliver(socket, ev).await {
                        return c;
                    }
                }
                msg = tokio::time::timeout(idle, socket.recv()), if !stopping => {
                    let msg = match msg {
                        Err(_) => return Some(Close::new(close_code::NORMAL, "idle timeout")),
                        Ok(None) | Ok(Some(Err(_))) => return None,
                        Ok(Some(Ok(m))) => m,
                    };
                    match msg {
                        Message::Binary(bytes) => {
                            if let Err(close) = self.audio(&bytes) {
                                return Some(close);
                            }
                        }
                        Message::Text(text) => match serde_json::from_str::<Control>(&text) {
                            Ok(Control::Start { model, language, prompt }) => {
                                let Some(model) = model
                                    .or_else(|| self.target.as_ref().map(|t| t.model.clone()))
                                else {
                                    return Some(Close::new(close_code::POLICY, "start needs a model"));
                                };
                                if self.finals.is_some() {
                                    let err = AppError::bad("the session has already started", "type");
                                    if let Err(c) = self.send_json(socket, json!({"type": "error", "error": err.error_object()["error"]})).await {
                                        return c;
                                    }
                                    continue;
                                }
                                let t = Target { model, language, prompt };
                                if let Err(close) = self.begin(socket, t).await {
                                    return Some(close);
                                }
                            }
                            Ok(Control::Stop) => {
                                if self.finals.is_none() {
                                    return Some(Close::new(close_code::NORMAL, "stopped"));
                                }
                                if let Err(close) = self.stop() {
                                    return Some(close);
                                }
                                stopping = true;
                            }
                            Err(e) => {
                                let err = AppError::BadRequest {
                                    message: format!("invalid control message: {e}"),
                                    param: None,
                                };
                                if let Err(c) = self.send_json(socket, json!({"type": "error", "error": err.error_object()["error"]})).await {
                                    return c;
                                }
                            }
                        },
                        Message::Close(_) => return None,
                        // Pings are answered by the WebSocket layer.
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
            }
        }
    }

    /// Validates the model, starts the final-transcription worker and
    /// acknowledges.
    async fn begin(&mut self, socket: &mut WebSocket, t: Target) -> Result<(), Close> {
        match self.state.registry.task_of(&t.model) {
            Ok(brisk_core::Task::Transcription) => {}
            Ok(task) => {
                return Err(Close::new(
                    close_code::POLICY,
                    format!("model '{}' serves {task}, not transcription", t.model),
                ))
            }
            Err(e) => return Err(Close::new(close_code::POLICY, e.to_string())),
        }
        let (tx, rx) = mpsc::channel(self.state.config.stream.max_pending_utterances.max(1));
        self.finals = Some(tx);
        tokio::spawn(finals_worker(
            self.state.clone(),
            t.clone(),
            rx,
            self.events_tx.clone(),
        ));
        self.send_json(
            socket,
            json!({"type": "started", "model": t.model, "sample_rate": SAMPLE_RATE,
                   "encoding": "pcm_s16le", "channels": 1, "vad": self.vad_name}),
        )
        .await
        .map_err(|c| c.unwrap_or_else(|| Close::new(close_code::AWAY, "client gone")))?;
        self.target = Some(t);
        Ok(())
    }

    /// Feeds audio to the VAD; queues finished utterances, maybe a partial.
    fn audio(&mut self, bytes: &[u8]) -> Result<(), Close> {
        if self.finals.is_none() {
            return Err(Close::new(
                close_code::POLICY,
                "send {\"type\": \"start\", \"model\": ...} before audio",
            ));
        }
        let mut samples = Vec::with_capacity(bytes.len() / 2 + 1);
        let mut rest = bytes;
        if let Some(b0) = self.carry.take() {
            if let Some((&b1, tail)) = rest.split_first() {
                samples.push(i16::from_le_bytes([b0, b1]) as f32 / 32768.0);
                rest = tail;
            } else {
                self.carry = Some(b0);
            }
        }
        let mut pairs = rest.chunks_exact(2);
        samples.extend(
            pairs
                .by_ref()
                .map(|p| i16::from_le_bytes([p[0], p[1]]) as f32 / 32768.0),
        );
        if let [b] = pairs.remainder() {
            self.carry = Some(*b);
        }
        for u in self.segmenter.push(&samples) {
            self.partial_at = 0;
            self.queue_final(u)?;
        }
        self.maybe_partial();
        Ok(())
    }

    fn queue_final(&mut self, u: Utterance) -> Result<(), Close> {
        let Some(tx) = &self.finals else {
            return Ok(());
        };
        match tx.try_send(u) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("brisk_stream_overloaded_total").increment(1);
                Err(Close::new(
                    close_code::AGAIN,
                    format!(
                        "transcription is falling behind the audio: {} utterances already wait for the model",
                        self.state.config.stream.max_pending_utterances
                    ),
                ))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Close::new(
                close_code::ERROR,
                "transcription worker stopped",
            )),
        }
    }

    /// Starts a partial transcript of the ongoing utterance when enough new
    /// audio has arrived, unless the model is still busy with this session
    /// (a partial in flight, or finals waiting): partials are best effort.
    fn maybe_partial(&mut self) {
        let interval = self.state.config.stream.partial_interval_ms as usize * SAMPLE_RATE / 1000;
        let (Some(u), Some(t), Some(finals)) =
            (self.segmenter.current(), &self.target, &self.finals)
        else {
            return;
        };
        if interval == 0 || u.samples.len() < self.partial_at + interval {
            return;
        }
        if finals.capacity() < finals.max_capacity() {
            return;
        }
        if self.partial_busy.swap(true, Ordering::AcqRel) {
            return;
        }
        self.partial_at = u.samples.len();
        let (utterance, start, end) = (u.id, u.start_s(), u.end_s());
        let audio = u.samples.clone();
        let (state, t, busy, events) = (
            self.state.clone(),
            t.clone(),
            self.partial_busy.clone(),
            self.events_tx.clone(),
        );
        tokio::spawn(async move {
            let result = transcribe(&state, &t, audio).await;
            busy.store(false, Ordering::Release);
            if let Ok(text) = result {
                // Dropped when the client is behind: a later one supersedes it.
                let _ = events.try_send(Event::Partial {
                    utterance,
                    start,
                    end,
                    text,
                });
            }
        });
    }

    /// The client asked to stop: flush the utterance in progress and let
    /// the worker finish the queue.
    fn stop(&mut self) -> Result<(), Close> {
        if let Some(u) = self.segmenter.flush() {
            self.queue_final(u)?;
        }
        // Closing the queue makes the worker send `Drained` when empty.
        self.finals = None;
        Ok(())
    }

    async fn deliver(&mut self, socket: &mut WebSocket, ev: Event) -> Result<(), Option<Close>> {
        let msg = match ev {
            Event::Partial {
                utterance,
                start,
                end,
                text,
            } => {
                if self.last_final.is_some_and(|f| utterance <= f) || text.trim().is_empty() {
                    return Ok(());
                }
                json!({"type": "partial", "utterance": utterance, "start": start, "end": end, "text": text})
            }
            Event::Final {
                utterance,
                start,
                end,
                text,
                forced,
            } => {
                self.last_final = Some(utterance);
                json!({"type": "final", "utterance": utterance, "start": start, "end": end,
                       "text": text, "cut": if forced { "max_length" } else { "silence" }})
            }
            Event::Error { utterance, error } => {
                json!({"type": "error", "utterance": utterance, "error": error})
            }
            Event::Drained => return Ok(()),
        };
        self.send_json(socket, msg).await
    }

    async fn send_json(&self, socket: &mut WebSocket, v: Value) -> Result<(), Option<Close>> {
        match tokio::time::timeout(
            self.send_timeout(),
            socket.send(Message::Text(v.to_string().into())),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(None),
            Err(_) => {
                metrics::counter!("brisk_stream_slow_client_total").increment(1);
                Err(Some(Close::new(
                    close_code::POLICY,
                    "client is not reading transcript events",
                )))
            }
        }
    }
}

/// Transcribes finished utterances in order, one at a time per session.
async fn finals_worker(
    state: AppState,
    t: Target,
    mut rx: mpsc::Receiver<Utterance>,
    events: mpsc::Sender<Event>,
) {
    while let Some(u) = rx.recv().await {
        let (utterance, start, end, forced) = (u.id, u.start_s(), u.end_s(), u.forced);
        let began = std::time::Instant::now();
        let result = transcribe(&state, &t, u.samples).await;
        // The registry's time for a final (its queue and the model), which
        // is what grows when many sessions share one model.
        metrics::histogram!("brisk_stream_final_seconds").record(began.elapsed().as_secs_f64());
        let ev = match result {
            Ok(text) => Event::Final {
                utterance,
                start,
                end,
                text,
                forced,
            },
            Err(e) => Event::Error {
                utterance,
                error: e.error_object()["error"].clone(),
            },
        };
        // Waits while the client is slow to read; the session loop's send
        // timeout bounds how long.
        if events.send(ev).await.is_err() {
            return;
        }
    }
    let _ = events.send(Event::Drained).await;
}

/// The session's voice detector and its name: silero (see [`silero`]) as
/// `[stream] vad` asks, else the energy detector, which needs no model.
fn detector(state: &AppState) -> (Box<dyn VoiceDetector>, String) {
    let c = &state.config.stream;
    #[cfg(feature = "onnx")]
    if c.vad != "energy" {
        if let Some((d, name)) = silero::detector(state, &c.vad) {
            return (d, name);
        }
    }
    let energy = EnergyVad::new(EnergySettings {
        ratio: c.vad_ratio,
        min_rms: c.vad_min_rms,
        ..Default::default()
    });
    (Box::new(energy), "energy".into())
}

async fn transcribe(state: &AppState, t: &Target, audio: Vec<f32>) -> Result<String, AppError> {
    let request = Request::Transcribe(TranscribeRequest {
        audio,
        language: t.language.clone(),
        prompt: t.prompt.clone(),
        temperature: 0.0,
        translate: false,
        word_timestamps: false,
        beam_size: None,
    });
    // Live audio never repeats: caching it would only evict useful entries.
    match state
        .registry
        .infer_with(&t.model, request, CacheMode::Skip)
        .await?
    {
        (brisk_core::Response::Transcribe(tr), _) => Ok(tr.text.trim().to_string()),
        (other, _) => Err(AppError::Engine(brisk_engine::EngineError::Backend(
            brisk_core::BackendError::Inference(format!("unexpected reply {other:?}")),
        ))),
    }
}
