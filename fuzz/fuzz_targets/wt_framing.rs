//! Fuzzes the sans-IO WebTransport/HTTP/3 framing of `transport-wt`: no decoder may panic or
//! allocate beyond its limits, the frame reader must give the same frames whatever the chunking,
//! and whatever decodes must re-encode to something that decodes to the same value.
//!
//! Input: byte 0 picks the decoder, byte 1 seeds the chunking; the rest is the input.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use transport_wt::proto::{
    ProtoError, capsule, datagram, frame, huffman, qpack, settings::Settings, stream, varint,
};

const MAX_PAYLOAD: usize = 1024;

fn frames(chunks: impl Iterator<Item = Vec<u8>>) -> (Vec<frame::Frame>, Option<ProtoError>) {
    let mut reader = frame::FrameReader::new(MAX_PAYLOAD);
    let mut out = Vec::new();
    for chunk in chunks {
        reader.push(&chunk);
        // Whatever is buffered is at most a frame header plus a payload plus the new chunk.
        assert!(reader.buffered() <= 16 + MAX_PAYLOAD + chunk.len());
        loop {
            match reader.next_frame() {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let [which, seed, input @ ..] = data else {
        return;
    };
    match which % 8 {
        0 => {
            if let Some((v, n)) = varint::decode(input) {
                assert!(v <= varint::MAX && n <= 8);
                let mut re = Vec::new();
                varint::encode(v, &mut re).unwrap();
                assert_eq!(varint::decode(&re), Some((v, re.len())));
            }
        }
        1 => {
            // Whole input vs chunks of 1..=16 bytes.
            let step = usize::from(seed % 16) + 1;
            let whole = frames(std::iter::once(input.to_vec()));
            let chunked = frames(input.chunks(step).map(<[u8]>::to_vec));
            assert_eq!(whole, chunked);
            if let Ok(Some((Some(f), _))) = frame::decode(input, MAX_PAYLOAD) {
                let re = f.to_bytes();
                assert_eq!(
                    frame::decode(&re, MAX_PAYLOAD),
                    Ok(Some((Some(f), re.len())))
                );
            }
        }
        2 => {
            if let Ok(s) = Settings::decode(input) {
                let mut re = Vec::new();
                s.encode(&mut re);
                assert_eq!(Settings::decode(&re), Ok(s));
            }
        }
        3 => {
            if let Ok(fields) = qpack::decode_field_section(input, 4096) {
                let mut re = Vec::new();
                qpack::encode_field_section(
                    fields.iter().map(|f| (&f.name[..], &f.value[..])),
                    &mut re,
                );
                assert_eq!(qpack::decode_field_section(&re, 4096), Ok(fields.clone()));
                let _ = qpack::response_status(&fields);
            }
        }
        4 => {
            if let Ok(plain) = huffman::decode(input) {
                assert!(plain.len() <= huffman::max_decoded_len(input.len()));
                assert_eq!(huffman::decode(&huffman::encode(&plain)), Ok(plain));
            }
        }
        5 => {
            if let Ok(Some((c, n))) = capsule::decode(input, MAX_PAYLOAD) {
                assert!(n <= input.len());
                if !matches!(c, capsule::Capsule::Unknown { .. }) {
                    let re = c.to_bytes();
                    assert_eq!(capsule::decode(&re, MAX_PAYLOAD), Ok(Some((c, re.len()))));
                }
            }
        }
        6 => {
            let _ = stream::decode_uni(input);
            let _ = stream::decode_bidi(input);
            let h = u64::from_le_bytes(std::array::from_fn(|i| input.get(i).copied().unwrap_or(0)));
            if let Some(code) = stream::error_from_http3(h) {
                assert_eq!(stream::error_to_http3(code), h);
            }
        }
        _ => {
            let d = Bytes::copy_from_slice(input);
            if let Ok((id, payload)) = datagram::decode(&d) {
                assert!(payload.len() < input.len() || input.is_empty());
                if let Ok(re) = datagram::encode(id, &payload) {
                    assert_eq!(datagram::decode(&re), Ok((id, payload)));
                }
            }
        }
    }
});
