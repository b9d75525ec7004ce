//! The streamed answers of [`ApiClient`](super::ApiClient): NDJSON export bodies and the
//! `/v1/events` server-sent events.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::error::ClientError;
use crate::model::ApiEvent;

/// Longest SSE line the client buffers.
const MAX_SSE_LINE_BYTES: usize = 1024 * 1024;

/// A streamed answer body.
#[derive(Debug)]
pub struct ByteStream {
    body: Incoming,
    last: Option<u8>,
}

impl ByteStream {
    pub(super) fn new(body: Incoming) -> ByteStream {
        ByteStream { body, last: None }
    }

    /// The next chunk, `None` at the end. An error means the body was cut short.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(ClientError::Http(format!("the stream broke: {e}"))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if data.is_empty() {
                            continue;
                        }
                        self.last = data.last().copied();
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// Whether the bytes so far end with a newline (a complete NDJSON stream does).
    pub fn ends_with_newline(&self) -> bool {
        self.last.is_none_or(|b| b == b'\n')
    }
}

/// One item of an SSE stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// An event.
    Event(ApiEvent),
    /// A comment line (the server's heartbeat).
    Comment(String),
}

/// A subscription to `/v1/events`.
#[derive(Debug)]
pub struct EventStream {
    body: Incoming,
    buf: Vec<u8>,
    event: Option<String>,
    data: String,
}

impl EventStream {
    pub(super) fn new(body: Incoming) -> EventStream {
        EventStream { body, buf: Vec::new(), event: None, data: String::new() }
    }

    /// The next event or comment; `None` when the server ended the stream.
    pub async fn next_item(&mut self) -> Result<Option<SseItem>, ClientError> {
        loop {
            while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    let data = std::mem::take(&mut self.data);
                    self.event = None;
                    if data.is_empty() {
                        continue;
                    }
                    let e = serde_json::from_str(&data)
                        .map_err(|e| ClientError::Decode(format!("event {data:?}: {e}")))?;
                    return Ok(Some(SseItem::Event(e)));
                }
                if let Some(c) = line.strip_prefix(':') {
                    return Ok(Some(SseItem::Comment(c.trim().to_string())));
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => self.event = Some(value.to_string()),
                    "data" => {
                        if !self.data.is_empty() {
                            self.data.push('\n');
                        }
                        self.data.push_str(value);
                    }
                    _ => {}
                }
            }
            if self.buf.len() > MAX_SSE_LINE_BYTES {
                return Err(ClientError::Decode("an SSE line is longer than 1 MiB".into()));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(ClientError::Http(format!("the event stream broke: {e}"))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next event (heartbeats skipped); `None` when the stream ended.
    pub async fn next_event(&mut self) -> Result<Option<ApiEvent>, ClientError> {
        loop {
            match self.next_item().await? {
                Some(SseItem::Event(e)) => return Ok(Some(e)),
                Some(SseItem::Comment(_)) => continue,
                None => return Ok(None),
            }
        }
    }
}
