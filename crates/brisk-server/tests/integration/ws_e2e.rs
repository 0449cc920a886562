//! Live transcription over a real WebSocket: a tokio-tungstenite client
//! streams beckett.wav to the real whisper-tiny-en at real time and at 10x
//! speed; with simulated models, utterances are cut at the maximum length,
//! partials arrive before finals, a client sending faster than the model
//! can keep up is closed with 1013, and protocol errors close with 1008.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use brisk_engine::Timeline;
use brisk_server::config::Config;
use brisk_server::{build_state, router, AppState};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const MODEL: &str = "whisper-tiny-en";
const BECKETT: &str = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.";

/// Serves the router on a free local port.
async fn serve(state: AppState) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, router(state)).await.expect("serve");
    });
    addr
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr, query: &str) -> Ws {
    let url = format!("ws://{addr}/v1/audio/transcriptions/stream{query}");
    let (ws, resp) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    ws
}

/// Everything the server sent: JSON events, then the close frame.
#[derive(Debug, Default)]
struct Transcript {
    events: Vec<Value>,
    close: Option<(u16, String)>,
}

impl Transcript {
    fn of(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == kind).collect()
    }
    fn final_text(&self) -> String {
        self.of("final")
            .iter()
            .map(|e| e["text"].as_str().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

async fn read_all<S>(mut rx: S) -> Transcript
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut t = Transcript::default();
    while let Some(msg) = rx.next().await {
        match msg {
            Ok(Message::Text(s)) => t.events.push(serde_json::from_str(&s).expect("json event")),
            Ok(Message::Close(frame)) => {
                t.close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    t
}

fn pcm_bytes(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|s| ((s * 32767.0) as i16).to_le_bytes())
        .collect()
}

/// Streams PCM16 in 20 ms messages, `speed` times faster than real time
/// (0 = as fast as possible), then sends `stop` and collects the replies.
async fn stream(addr: SocketAddr, start: Value, pcm: &[u8], speed: f64) -> Transcript {
    let ws = connect(addr, "").await;
    let (mut tx, rx) = ws.split();
    let reader = tokio::spawn(read_all(rx));
    tx.send(Message::Text(start.to_string().into()))
        .await
        .expect("start");
    let chunk = 640; // 20 ms
    let t0 = Instant::now();
    for (i, c) in pcm.chunks(chunk).enumerate() {
        if speed > 0.0 {
            let due = Duration::from_secs_f64((i as f64) * 0.02 / speed);
            tokio::time::sleep_until((t0 + due).into()).await;
        }
        if tx.send(Message::Binary(c.to_vec().into())).await.is_err() {
            break; // the server closed the session
        }
    }
    let _ = tx
        .send(Message::Text(json!({"type": "stop"}).to_string().into()))
        .await;
    tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("session ends")
        .expect("reader")
}

/// The PCM16 payload of a 16 kHz mono WAV.
fn wav_pcm(wav: &[u8]) -> Vec<u8> {
    assert_eq!(&wav[..4], b"RIFF");
    let mut at = 12;
    while at + 8 <= wav.len() {
        let id = &wav[at..at + 4];
        let len = u32::from_le_bytes([wav[at + 4], wav[at + 5], wav[at + 6], wav[at + 7]]) as usize;
        if id == b"fmt " {
            let rate = u32::from_le_bytes([wav[at + 12], wav[at + 13], wav[at + 14], wav[at + 15]]);
            let channels = u16::from_le_bytes([wav[at + 10], wav[at + 11]]);
            assert_eq!((rate, channels), (16_000, 1), "beckett.wav is 16 kHz mono");
        }
        if id == b"data" {
            return wav[at + 8..(at + 8 + len).min(wav.len())].to_vec();
        }
        at += 8 + len + (len & 1);
    }
    panic!("no data chunk");
}

/// `sessions` clients streaming beckett.wav at once to one server; also
/// returns how many times the model was loaded.
async fn beckett_sessions(speed: f64, sessions: usize) -> (Vec<Transcript>, u64) {
    let dir = common::models_dir(&[MODEL, "testdata/beckett.wav"]);
    let pcm = wav_pcm(&std::fs::read(dir.join("testdata/beckett.wav")).expect("wav"));
    let state = common::default_state(dir, |_| {});
    // Load first so the stream measures transcription, not loading.
    state.registry.load(MODEL).await.expect("load whisper");
    let addr = serve(state.clone()).await;
    let runs = (0..sessions).map(|_| {
        let pcm = pcm.clone();
        tokio::spawn(async move {
            stream(
                addr,
                json!({"type": "start", "model": MODEL, "language": "en"}),
                &pcm,
                speed,
            )
            .await
        })
    });
    let mut out = Vec::new();
    for r in runs {
        out.push(r.await.expect("session"));
    }
    let loads = state.registry.model_status(MODEL).expect("status").loads;
    (out, loads)
}

async fn beckett(speed: f64) -> Transcript {
    beckett_sessions(speed, 1).await.0.remove(0)
}

fn check_beckett(t: &Transcript, label: &str) {
    assert_eq!(t.events[0]["type"], "started", "{label}: {:?}", t.events);
    assert_eq!(t.close.as_ref().map(|c| c.0), Some(1000), "{label}: {t:?}");
    assert_eq!(
        t.events.last().map(|e| e["type"].clone()),
        Some(json!("stopped"))
    );
    assert!(t.of("error").is_empty(), "{label}: {:?}", t.events);
    let finals = t.of("final");
    assert!(
        finals.len() >= 2,
        "{label}: VAD found the pauses: {finals:?}"
    );
    let text = t.final_text();
    let w = common::wer(BECKETT, &text);
    eprintln!(
        "{label}: {} finals, {} partials, WER {w:.2}: {text}",
        finals.len(),
        t.of("partial").len()
    );
    assert!(w <= 0.35, "{label}: WER {w:.2}: {text}");
    for word in ["tried", "failed", "matter", "again", "better"] {
        assert!(
            text.to_lowercase().contains(word),
            "{label}: no '{word}' in {text}"
        );
    }
    // Timestamps: inside the audio, in order, not overlapping.
    let mut last_end = 0.0;
    for f in &finals {
        let (s, e) = (
            f["start"].as_f64().expect("start"),
            f["end"].as_f64().expect("end"),
        );
        assert!(
            s >= last_end - 1e-9 && e > s && e <= 10.0,
            "{label}: {finals:?}"
        );
        last_end = e;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beckett_streamed_in_real_time() {
    let t = beckett(1.0).await;
    check_beckett(&t, "real time");
    // The default config finds silero-vad under the models dir: the stream
    // cuts utterances with it.
    assert_eq!(t.events[0]["vad"], "silero-vad", "{:?}", t.events);
    // Utterances of a few seconds at real time leave time for partials,
    // and each partial comes before its utterance's final.
    let partials = t.of("partial");
    assert!(!partials.is_empty(), "{:?}", t.events);
    for p in partials {
        let pos_p = t.events.iter().position(|e| e == p).expect("pos");
        let pos_f = t
            .events
            .iter()
            .position(|e| e["type"] == "final" && e["utterance"] == p["utterance"])
            .expect("its final");
        assert!(pos_p < pos_f, "{:?}", t.events);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beckett_streamed_at_ten_times_real_time() {
    let t = beckett(10.0).await;
    check_beckett(&t, "10x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_concurrent_sessions_share_one_loaded_model() {
    let (sessions, loads) = beckett_sessions(10.0, 3).await;
    for (i, t) in sessions.iter().enumerate() {
        check_beckett(t, &format!("session {i}"));
    }
    assert_eq!(loads, 1, "one whisper instance served every session");
}

fn sim_state(extra: &str) -> AppState {
    let toml = format!(
        r#"
[server]
discover = false
[models.stt]
backend = "sim"
source = "stt"
options = {{ task = "transcription", infer_ms = 20, text = "ever tried" }}
[models.slow-stt]
backend = "sim"
source = "slow-stt"
options = {{ task = "transcription", infer_ms = 400, text = "slow" }}
[models.emb]
backend = "sim"
source = "emb"
[stream]
{extra}
"#
    );
    let config = Config::from_toml(&toml).expect("config");
    build_state(config, Timeline::new(Instant::now())).expect("state")
}

/// `ms` of a tone, its amplitude wobbling like a voice.
fn speech(ms: usize) -> Vec<f32> {
    (0..16 * ms)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            (t * 220.0 * std::f32::consts::TAU).sin() * (0.25 + 0.1 * (t * 5.0).sin())
        })
        .collect()
}

fn silence(ms: usize) -> Vec<f32> {
    (0..16 * ms)
        .map(|i| ((i * 7919) % 13) as f32 * 1e-4)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_speech_is_cut_and_partials_precede_finals() {
    let addr = serve(sim_state(
        "max_utterance_s = 1.0\npartial_interval_ms = 300",
    ))
    .await;
    let mut audio = silence(500);
    audio.extend(speech(2600));
    audio.extend(silence(1000));
    audio.extend(speech(500));
    let t = stream(
        addr,
        json!({"type": "start", "model": "stt"}),
        &pcm_bytes(&audio),
        4.0,
    )
    .await;
    assert_eq!(t.close.as_ref().map(|c| c.0), Some(1000), "{t:?}");
    let finals = t.of("final");
    let cuts: Vec<_> = finals
        .iter()
        .map(|f| f["cut"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        cuts,
        ["max_length", "max_length", "max_length", "silence"],
        "{finals:?}"
    );
    for f in &finals {
        assert_eq!(f["text"], "ever tried");
        let d = f["end"].as_f64().expect("end") - f["start"].as_f64().expect("start");
        assert!(d <= 1.0 + 0.04, "{f}");
    }
    // The first utterance starts near 0.5 s (minus the pre-roll); the last
    // one is the short burst after the long pause.
    let s0 = finals[0]["start"].as_f64().expect("start");
    assert!((0.25..0.5).contains(&s0), "{s0}");
    let s3 = finals[3]["start"].as_f64().expect("start");
    assert!((3.8..4.2).contains(&s3), "{s3}");
    assert!(!t.of("partial").is_empty(), "{:?}", t.events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_faster_than_the_model_is_closed_with_1013() {
    let addr = serve(sim_state(
        "max_pending_utterances = 1\npartial_interval_ms = 0",
    ))
    .await;
    // Twenty short utterances sent at once: each needs 400 ms of model time.
    let mut audio = Vec::new();
    for _ in 0..20 {
        audio.extend(speech(300));
        audio.extend(silence(800));
    }
    let t = stream(
        addr,
        json!({"type": "start", "model": "slow-stt"}),
        &pcm_bytes(&audio),
        0.0,
    )
    .await;
    let (code, reason) = t.close.clone().expect("close frame");
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.contains("falling behind"), "{reason}");
    assert!(t.of("final").len() < 20, "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_dropped_not_buffered() {
    // Long transcripts, short utterances: events pile up fast.
    let toml_text = "x".repeat(16_000);
    let state = {
        let toml = format!(
            r#"
[server]
discover = false
[models.stt]
backend = "sim"
source = "stt"
options = {{ task = "transcription", text = "{toml_text}" }}
[stream]
hangover_ms = 90
partial_interval_ms = 0
max_pending_utterances = 100000
max_pending_events = 4
send_timeout_ms = 300
"#
        );
        build_state(
            Config::from_toml(&toml).expect("config"),
            Timeline::new(Instant::now()),
        )
        .expect("state")
    };
    let addr = serve(state).await;
    // A small receive window, so the server's writes back up quickly.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let tcp = socket.connect(addr).await.expect("connect");
    let url = format!("ws://{addr}/v1/audio/transcriptions/stream?model=stt");
    let (ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("handshake");
    let (mut tx, rx) = ws.split();
    let mut one = speech(100);
    one.extend(silence(200));
    let utterance = pcm_bytes(&one);
    let total = 2000;
    let t0 = Instant::now();
    let mut sent = 0;
    // Never reading: the server must give up on us rather than buffer.
    while sent < total {
        let ok = tokio::time::timeout(
            Duration::from_secs(10),
            tx.send(Message::Binary(utterance.clone().into())),
        )
        .await;
        if !matches!(ok, Ok(Ok(()))) {
            break;
        }
        sent += 1;
    }
    let elapsed = t0.elapsed();
    // Still not reading, well past the server's send timeout: it must
    // give up on the session instead of holding its transcripts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // (30 s: generous for a machine under load; the server's own limit is
    // send_timeout_ms = 300.)
    let t = tokio::time::timeout(Duration::from_secs(30), read_all(rx))
        .await
        .expect("reads end");
    // The session is over (reads ended above, with no `stop` sent), and the
    // transcripts the server could not deliver were dropped with it.
    let finals = t.of("final").len();
    assert!(
        finals < sent,
        "sent {sent} utterances in {elapsed:?}, got {finals} finals: the server kept buffering"
    );
    assert!(t.of("stopped").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors() {
    let state = sim_state("");
    let addr = serve(state).await;
    // Audio before start.
    let t = stream(
        addr,
        json!({"type": "noise"}),
        &pcm_bytes(&speech(100)),
        0.0,
    )
    .await;
    assert_eq!(t.of("error").len(), 1, "bad control message: {t:?}");
    assert_eq!(t.close.as_ref().map(|c| c.0), Some(1008), "{t:?}");
    assert!(
        t.close.as_ref().is_some_and(|c| c.1.contains("start")),
        "{t:?}"
    );
    // Unknown model, and a model of another task.
    for (model, says) in [("nope", "nope"), ("emb", "not transcription")] {
        let t = stream(addr, json!({"type": "start", "model": model}), &[], 0.0).await;
        let (code, reason) = t.close.clone().expect("close");
        assert_eq!(code, 1008, "{reason}");
        assert!(reason.contains(says), "{reason}");
    }
    // The model in the URL; stop with nothing said closes normally.
    let ws = connect(addr, "?model=stt").await;
    let (mut tx, rx) = ws.split();
    tx.send(Message::Text(json!({"type": "stop"}).to_string().into()))
        .await
        .expect("stop");
    let t = read_all(rx).await;
    assert_eq!(t.events[0]["type"], "started");
    assert!(t.of("final").is_empty());
    assert_eq!(t.close.map(|c| c.0), Some(1000));
}

/// `ms` of loud white noise (a deterministic LCG): energy, but no voice.
fn noise(ms: usize) -> Vec<f32> {
    let mut x: u32 = 2026;
    (0..16 * ms)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((x >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.6
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silero_finds_the_voice_where_energy_finds_only_loudness() {
    let vad = common::models_dir(&["silero-vad", "onnxruntime"]).join("silero-vad");
    // The sim models, with a silero model after the [stream] settings.
    let with = |stream: &str| {
        sim_state(&format!(
            "{stream}\n[models.silero-vad]\nbackend = \"onnx-silero-vad\"\nsource = \"{}\"",
            vad.display()
        ))
    };
    let mut audio = silence(500);
    audio.extend(noise(2000));
    audio.extend(silence(1500));
    let start = json!({"type": "start", "model": "stt"});

    // auto: the configured silero model; noise is not a voice.
    let addr = serve(with("")).await;
    let t = stream(addr, start.clone(), &pcm_bytes(&audio), 0.0).await;
    assert_eq!(t.events[0]["vad"], "silero-vad", "{:?}", t.events);
    assert!(
        t.of("final").is_empty(),
        "silero took noise for speech: {:?}",
        t.events
    );

    // The energy detector, asked for by name, takes the loud noise as speech.
    let addr = serve(with("vad = \"energy\"")).await;
    let t = stream(addr, start, &pcm_bytes(&audio), 0.0).await;
    assert_eq!(t.events[0]["vad"], "energy", "{:?}", t.events);
    assert!(!t.of("final").is_empty(), "{:?}", t.events);
}
