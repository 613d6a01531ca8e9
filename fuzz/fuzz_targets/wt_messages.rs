//! Fuzzes the message framing that `transport-wt` runs on its message stream, its
//! unidirectional streams and its datagrams (`transport_wt::transport::codec`): no input may
//! panic, a message over the limit must fail before its payload is buffered, the frames must be
//! the same whatever the chunking, and every decoded frame must re-encode to bytes that decode
//! to the same frame.
//!
//! Input: byte 0 seeds the chunk size; the rest is the wire.
#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use transport_core::TransportError;
use transport_wt::transport::codec::{self, Frame};

const MAX: usize = 256;

/// Every frame of `chunks` fed in order, and the error that stopped decoding, if any.
fn frames(chunks: impl Iterator<Item = Vec<u8>>) -> (Vec<Frame>, Option<String>) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.put_slice(&chunk);
        loop {
            match codec::decode(&mut buf, MAX) {
                Ok(Some(frame)) => out.push(frame),
                Ok(None) => break,
                Err(err) => return (out, Some(kind(&err))),
            }
        }
        // Never more than one frame's header and payload waits, plus the new chunk.
        assert!(buf.len() <= 1 + 8 + MAX.max(3 + 8 + codec::MAX_CLOSE_REASON) + chunk.len());
    }
    (out, None)
}

fn kind(err: &TransportError) -> String {
    match err {
        TransportError::MessageTooLarge { .. } => "too large".into(),
        TransportError::InvalidUtf8 { .. } => "utf-8".into(),
        other => format!("{other}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let [seed, wire @ ..] = data else {
        return;
    };
    let whole = frames(std::iter::once(wire.to_vec()));
    let step = usize::from(seed % 32) + 1;
    let chunked = frames(wire.chunks(step).map(<[u8]>::to_vec));
    assert_eq!(whole, chunked, "chunking changed the result");

    for frame in &whole.0 {
        let bytes = match frame {
            Frame::Message(message) => {
                assert!(message.len() <= MAX);
                codec::encode_message(message)
            }
            Frame::Close(close) => codec::encode_close(close),
        };
        let mut buf = BytesMut::from(&bytes[..]);
        let again = codec::decode(&mut buf, MAX).expect("re-encoded frame decodes");
        assert_eq!(again.as_ref(), Some(frame));
        assert!(buf.is_empty());
        if let Frame::Message(message) = frame {
            assert_eq!(codec::decode_single(&bytes, MAX).as_ref(), Ok(message));
        }
    }
    // A single-message unit (a datagram, a uni stream) never panics either.
    let _ = codec::decode_single(wire, MAX);
});
