//! HL7 v2 over MLLP/TCP: the framing (a tokio-util [`Decoder`]/[`Encoder`], [`MllpCodec`]) and
//! a listener ([`serve`]) that hands each message to a [`Receiver`] and writes back its ACK, in
//! order, on the same connection.
//!
//! Framing (HL7 MLLP release 2, without its optional commit acknowledgement): a message is sent
//! as `VT` (0x0B) … `FS CR` (0x1C 0x0D). What the codec does with what it reads:
//!
//! | bytes | what happens |
//! |---|---|
//! | outside a frame (before a `VT`, between `FS CR` and the next `VT`) | skipped, never kept |
//! | a `VT` inside a frame | the frame so far is dropped (the sender started over); a new one begins |
//! | `FS` not followed by `CR` | still the end of the frame (some senders omit the `CR`) |
//! | a frame longer than the limit | [`Frame::TooLarge`] with its first bytes as soon as the limit is passed; the rest is never read and the connection is closed after the answer |
//! | a partial frame when the connection ends | dropped: it had no ACK, so the sender sends it again |
//!
//! Memory per connection is therefore bounded by the limit plus one read. The listener also
//! bounds how many connections are served at once (further ones wait in the kernel's backlog),
//! closes a connection that sends no complete message for [`Limits::idle`], and on shutdown
//! stops accepting, lets each connection finish the message it is handling (its ACK is written),
//! then closes it. A connection that sends garbage only ever costs its own buffer.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::codec::{Decoder, Encoder, FramedRead};
use tracing::{debug, info, warn};

use crate::amqp::stopped;
use crate::function::BoxFuture;

/// Start of block (VT).
pub const START: u8 = 0x0B;
/// End of block (FS), followed by [`CR`].
pub const END: u8 = 0x1C;
/// Carriage return, after [`END`].
pub const CR: u8 = 0x0D;

/// How many of an oversized frame's first bytes are kept, to read its MSH for the answer.
const HEAD: usize = 4096;

/// What the decoder read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One message: the bytes between `VT` and `FS CR`.
    Message(Bytes),
    /// A message longer than the limit: only its first bytes (at most 4 KiB). Nothing more is
    /// read from the connection.
    TooLarge { head: Bytes },
}

/// The MLLP framing, with a maximum message size.
#[derive(Debug, Clone)]
pub struct MllpCodec {
    max: usize,
    /// Inside a frame (its `VT` read).
    in_frame: bool,
    /// How far the current frame has been searched for its end.
    scanned: usize,
    /// An oversized frame was reported: nothing more is decoded.
    spent: bool,
}

impl MllpCodec {
    /// Frames of at most `max` bytes (between the framing bytes).
    pub fn new(max: usize) -> Self {
        Self {
            max,
            in_frame: false,
            scanned: 0,
            spent: false,
        }
    }

    /// Whether a frame has begun and not ended.
    pub fn in_frame(&self) -> bool {
        self.in_frame
    }

    fn too_large(&mut self, buf: &mut BytesMut) -> Frame {
        let head = buf.split_to(HEAD.min(buf.len())).freeze();
        buf.clear();
        self.in_frame = false;
        self.spent = true;
        Frame::TooLarge { head }
    }
}

impl Decoder for MllpCodec {
    type Item = Frame;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Frame>> {
        loop {
            if self.spent {
                buf.clear();
                return Ok(None);
            }
            if !self.in_frame {
                match buf.iter().position(|&b| b == START) {
                    Some(i) => {
                        buf.advance(i + 1);
                        self.in_frame = true;
                        self.scanned = 0;
                    }
                    None => {
                        // Bytes outside a frame: skipped.
                        buf.clear();
                        return Ok(None);
                    }
                }
            }
            let from = self.scanned.min(buf.len());
            let Some(at) = buf[from..]
                .iter()
                .position(|&b| b == END || b == START)
                .map(|o| from + o)
            else {
                self.scanned = buf.len();
                if buf.len() > self.max {
                    return Ok(Some(self.too_large(buf)));
                }
                return Ok(None);
            };
            if buf[at] == START {
                // The sender started over: what came before is not a message.
                buf.advance(at + 1);
                self.scanned = 0;
                continue;
            }
            if at > self.max {
                return Ok(Some(self.too_large(buf)));
            }
            if at + 1 >= buf.len() {
                // FS is the last byte read: wait for the CR that should follow it.
                self.scanned = at;
                return Ok(None);
            }
            let message = buf.split_to(at).freeze();
            let end = if buf.get(1) == Some(&CR) { 2 } else { 1 };
            buf.advance(end);
            self.in_frame = false;
            self.scanned = 0;
            return Ok(Some(Frame::Message(message)));
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Frame>> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        // A frame ended by FS alone at the very end of the stream is still a message.
        let ended = self.in_frame && buf.last() == Some(&END);
        let message = ended.then(|| Frame::Message(buf.split_to(buf.len() - 1).freeze()));
        // Anything else is a partial frame: it had no ACK, so the sender sends it again.
        buf.clear();
        self.in_frame = false;
        self.scanned = 0;
        Ok(message)
    }
}

impl Encoder<&[u8]> for MllpCodec {
    type Error = io::Error;

    fn encode(&mut self, message: &[u8], dst: &mut BytesMut) -> io::Result<()> {
        dst.reserve(message.len() + 3);
        dst.put_u8(START);
        dst.put_slice(message);
        dst.put_slice(&[END, CR]);
        Ok(())
    }
}

/// `message` framed for MLLP.
pub fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    let _ = MllpCodec::new(usize::MAX).encode(message, &mut out);
    out.freeze()
}

/// What answers each message: the ACK (ER7, segments ended by CR, unframed).
pub trait Receiver: Send + Sync + 'static {
    /// The ACK for one message, once it is taken (or refused). `peer` is for logs.
    fn receive(&self, message: Bytes, peer: SocketAddr) -> BoxFuture<'_, Bytes>;
    /// The ACK refusing a message longer than `limit` bytes, of which `head` are the first.
    fn refuse_too_large(&self, head: &[u8], limit: usize, peer: SocketAddr) -> Bytes;
}

/// The listener's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message, in bytes between the framing bytes.
    pub max_message: usize,
    /// A connection that completes no message for this long is closed; also the longest an ACK
    /// may wait to be written.
    pub idle: Duration,
    /// Connections served at once; more wait to be accepted.
    pub connections: usize,
    /// How long in-flight messages may take to be answered after shutdown.
    pub drain: Duration,
}

impl Limits {
    /// `max_message` bytes per message, idle connections closed after 5 minutes, 128
    /// connections at once, 25 s to drain.
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            idle: Duration::from_secs(300),
            connections: 128,
            drain: Duration::from_secs(25),
        }
    }
}

/// Serve MLLP on `listener` until `shutdown`: each connection's messages go to `receiver` one
/// at a time and each gets its ACK, in order. Then stop accepting, let every connection finish
/// the message it is handling (at most `limits.drain`), and close them. The caller owns the
/// socket and the stop signal.
pub async fn serve<R: Receiver>(
    listener: TcpListener,
    receiver: Arc<R>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    info!(listen = %local, "MLLP listening");
    let slots = Arc::new(Semaphore::new(limits.connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "MLLP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let receiver = receiver.clone();
                let stop = stop_rx.clone();
                connections.spawn(async move {
                    connection(stream, peer, receiver.as_ref(), limits, stop).await;
                    drop(slot);
                });
            }
            () = &mut shutdown => break,
        }
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop_tx.send(true);
    info!(
        open = connections.len(),
        "MLLP no longer accepting; finishing the messages in hand"
    );
    if tokio::time::timeout(limits.drain, async { while connections.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        warn!("MLLP drain timed out; closing the remaining connections");
        connections.shutdown().await;
    }
    Ok(())
}

/// One connection: read a message, answer it, repeat; until the peer closes, stays idle too
/// long, sends a message too large, or the listener stops.
async fn connection<R: Receiver>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    receiver: &R,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    debug!(%peer, "MLLP connection opened");
    let (read, mut write) = stream.into_split();
    let mut frames = FramedRead::new(read, MllpCodec::new(limits.max_message));
    let mut codec = MllpCodec::new(limits.max_message);
    loop {
        let next = tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            next = tokio::time::timeout(limits.idle, frames.next()) => next,
        };
        let (ack, last) = match next {
            Err(_) => {
                info!(%peer, "MLLP connection idle too long: closed");
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                debug!(%peer, error = %e, "MLLP read failed");
                break;
            }
            Ok(Some(Ok(Frame::Message(message)))) => (receiver.receive(message, peer).await, false),
            Ok(Some(Ok(Frame::TooLarge { head }))) => {
                warn!(%peer, limit = limits.max_message, "MLLP message too large: refused, connection closed");
                (receiver.refuse_too_large(&head, limits.max_message, peer), true)
            }
        };
        let mut out = BytesMut::new();
        let _ = codec.encode(&ack, &mut out);
        match tokio::time::timeout(limits.idle, write.write_all(&out)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "MLLP ACK not written: the sender will resend");
                break;
            }
            Err(_) => {
                info!(%peer, "MLLP peer does not read its ACKs: closed");
                break;
            }
        }
        if last {
            break;
        }
    }
    let _ = write.shutdown().await;
    debug!(%peer, "MLLP connection closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut MllpCodec, buf: &mut BytesMut) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(f) = codec.decode(buf).expect("decode") {
            out.push(f);
        }
        out
    }

    fn message(text: &str) -> Frame {
        Frame::Message(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn a_frame_split_across_reads_is_one_message() {
        let mut codec = MllpCodec::new(1024);
        let mut buf = BytesMut::new();
        let whole = frame(b"MSH|^~\\&|A\rPID|1");
        for (i, chunk) in whole.chunks(3).enumerate() {
            buf.extend_from_slice(chunk);
            let got = decode_all(&mut codec, &mut buf);
            if (i + 1) * 3 < whole.len() {
                assert!(got.is_empty(), "nothing before the end: {got:?}");
            } else {
                assert_eq!(got, [message("MSH|^~\\&|A\rPID|1")]);
            }
        }
        // FS and CR in separate reads.
        buf.extend_from_slice(&[START, b'M', END]);
        assert!(decode_all(&mut codec, &mut buf).is_empty());
        buf.extend_from_slice(&[CR]);
        assert_eq!(decode_all(&mut codec, &mut buf), [message("M")]);
        assert!(buf.is_empty());
    }

    #[test]
    fn two_frames_in_one_read_are_two_messages_in_order() {
        let mut codec = MllpCodec::new(1024);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&frame(b"MSH|1"));
        buf.extend_from_slice(&frame(b"MSH|2"));
        assert_eq!(decode_all(&mut codec, &mut buf), [message("MSH|1"), message("MSH|2")]);
    }

    #[test]
    fn bytes_outside_frames_are_skipped_and_never_kept() {
        let mut codec = MllpCodec::new(16);
        let mut buf = BytesMut::from(&b"garbage\r\n"[..]);
        assert!(decode_all(&mut codec, &mut buf).is_empty());
        assert!(buf.is_empty(), "skipped bytes are not buffered");
        // Far more garbage than the limit, with no start byte: still nothing kept, no refusal.
        buf.extend_from_slice(&[b'x'; 100]);
        assert!(decode_all(&mut codec, &mut buf).is_empty());
        assert!(buf.is_empty());
        buf.extend_from_slice(b"\n\nnoise");
        buf.extend_from_slice(&frame(b"MSH|1"));
        buf.extend_from_slice(b"\r\n");
        buf.extend_from_slice(&frame(b"MSH|2"));
        assert_eq!(decode_all(&mut codec, &mut buf), [message("MSH|1"), message("MSH|2")]);
        // A start byte inside a frame: the sender started over.
        buf.extend_from_slice(&[START, b'h', b'a', b'l', b'f']);
        buf.extend_from_slice(&frame(b"MSH|3"));
        assert_eq!(decode_all(&mut codec, &mut buf), [message("MSH|3")]);
        // FS without CR still ends a frame.
        buf.extend_from_slice(&[START, b'M', END, START, b'N', END, CR]);
        assert_eq!(decode_all(&mut codec, &mut buf), [message("M"), message("N")]);
    }

    #[test]
    fn a_frame_over_the_limit_is_reported_by_its_head_and_nothing_more_is_read() {
        let mut codec = MllpCodec::new(10);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&frame(b"0123456789"));
        assert_eq!(
            decode_all(&mut codec, &mut buf),
            [message("0123456789")],
            "the limit itself is fine"
        );
        // Over the limit without an end yet: reported at once, not when the end comes.
        buf.extend_from_slice(&[START]);
        buf.extend_from_slice(b"MSH|0123456789");
        assert_eq!(
            decode_all(&mut codec, &mut buf),
            [Frame::TooLarge {
                head: Bytes::from_static(b"MSH|0123456789")
            }]
        );
        assert!(buf.is_empty());
        buf.extend_from_slice(&frame(b"MSH|1"));
        assert!(
            decode_all(&mut codec, &mut buf).is_empty(),
            "spent: nothing more is read"
        );
        assert!(buf.is_empty(), "and nothing is kept");
        // Over the limit with its end in the same read.
        let mut codec = MllpCodec::new(4);
        let mut buf = BytesMut::from(&frame(b"MSH|12")[..]);
        assert!(matches!(
            decode_all(&mut codec, &mut buf).as_slice(),
            [Frame::TooLarge { .. }]
        ));
        // The head is at most 4 KiB, however large the frame.
        let mut codec = MllpCodec::new(8192);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[START]);
        buf.extend_from_slice(&[b'x'; 10_000]);
        match decode_all(&mut codec, &mut buf).as_slice() {
            [Frame::TooLarge { head }] => assert_eq!(head.len(), HEAD),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn at_the_end_of_the_stream_a_partial_frame_is_dropped() {
        let mut codec = MllpCodec::new(1024);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[START, b'M', b'S', b'H']);
        assert_eq!(codec.decode_eof(&mut buf).expect("eof"), None);
        assert!(buf.is_empty());
        let mut buf = BytesMut::from(&[START, b'M', END][..]);
        assert_eq!(codec.decode_eof(&mut buf).expect("eof"), Some(message("M")));
    }

    #[test]
    fn encoding_wraps_the_message_in_the_framing_bytes() {
        assert_eq!(&frame(b"MSA|AA")[..], b"\x0bMSA|AA\x1c\x0d");
    }
}
