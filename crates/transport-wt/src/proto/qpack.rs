//! QPACK field sections (RFC 9204) with the static table only.
//!
//! This endpoint advertises a dynamic table capacity of 0, so a peer's field section must have
//! Required Insert Count 0 and may only use static references and literals (§2.1.2, §4.5);
//! anything else is QPACK_DECOMPRESSION_FAILED. Strings may be Huffman-coded by the peer;
//! [`encode_field_section`] writes them plain.

use bytes::BufMut;

use super::{ProtoError, huffman};

/// A decoded field line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Lower-case name (pseudo-headers start with `:`).
    pub name: Vec<u8>,
    /// Value.
    pub value: Vec<u8>,
}

impl Field {
    /// A field from a name and a value.
    pub fn new(name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }

    /// Its size as RFC 9114 §4.2.2 counts it: name + value + 32.
    pub fn size(&self) -> usize {
        self.name.len() + self.value.len() + 32
    }
}

/// The default limit on a decoded field section (SETTINGS_MAX_FIELD_SECTION_SIZE style): 64 KiB.
pub const DEFAULT_MAX_FIELD_SECTION_SIZE: usize = 64 * 1024;

/// The QPACK static table, RFC 9204 Appendix A: `(name, value)` by index.
pub(crate) const STATIC_TABLE: [(&str, &str); 99] = [
    (":authority", ""),                                    // 0
    (":path", "/"),                                        // 1
    ("age", "0"),                                          // 2
    ("content-disposition", ""),                           // 3
    ("content-length", "0"),                               // 4
    ("cookie", ""),                                        // 5
    ("date", ""),                                          // 6
    ("etag", ""),                                          // 7
    ("if-modified-since", ""),                             // 8
    ("if-none-match", ""),                                 // 9
    ("last-modified", ""),                                 // 10
    ("link", ""),                                          // 11
    ("location", ""),                                      // 12
    ("referer", ""),                                       // 13
    ("set-cookie", ""),                                    // 14
    (":method", "CONNECT"),                                // 15
    (":method", "DELETE"),                                 // 16
    (":method", "GET"),                                    // 17
    (":method", "HEAD"),                                   // 18
    (":method", "OPTIONS"),                                // 19
    (":method", "POST"),                                   // 20
    (":method", "PUT"),                                    // 21
    (":scheme", "http"),                                   // 22
    (":scheme", "https"),                                  // 23
    (":status", "103"),                                    // 24
    (":status", "200"),                                    // 25
    (":status", "304"),                                    // 26
    (":status", "404"),                                    // 27
    (":status", "503"),                                    // 28
    ("accept", "*/*"),                                     // 29
    ("accept", "application/dns-message"),                 // 30
    ("accept-encoding", "gzip, deflate, br"),              // 31
    ("accept-ranges", "bytes"),                            // 32
    ("access-control-allow-headers", "cache-control"),     // 33
    ("access-control-allow-headers", "content-type"),      // 34
    ("access-control-allow-origin", "*"),                  // 35
    ("cache-control", "max-age=0"),                        // 36
    ("cache-control", "max-age=2592000"),                  // 37
    ("cache-control", "max-age=604800"),                   // 38
    ("cache-control", "no-cache"),                         // 39
    ("cache-control", "no-store"),                         // 40
    ("cache-control", "public, max-age=31536000"),         // 41
    ("content-encoding", "br"),                            // 42
    ("content-encoding", "gzip"),                          // 43
    ("content-type", "application/dns-message"),           // 44
    ("content-type", "application/javascript"),            // 45
    ("content-type", "application/json"),                  // 46
    ("content-type", "application/x-www-form-urlencoded"), // 47
    ("content-type", "image/gif"),                         // 48
    ("content-type", "image/jpeg"),                        // 49
    ("content-type", "image/png"),                         // 50
    ("content-type", "text/css"),                          // 51
    ("content-type", "text/html; charset=utf-8"),          // 52
    ("content-type", "text/plain"),                        // 53
    ("content-type", "text/plain;charset=utf-8"),          // 54
    ("range", "bytes=0-"),                                 // 55
    ("strict-transport-security", "max-age=31536000"),     // 56
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains",
    ), // 57
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains; preload",
    ), // 58
    ("vary", "accept-encoding"),                           // 59
    ("vary", "origin"),                                    // 60
    ("x-content-type-options", "nosniff"),                 // 61
    ("x-xss-protection", "1; mode=block"),                 // 62
    (":status", "100"),                                    // 63
    (":status", "204"),                                    // 64
    (":status", "206"),                                    // 65
    (":status", "302"),                                    // 66
    (":status", "400"),                                    // 67
    (":status", "403"),                                    // 68
    (":status", "421"),                                    // 69
    (":status", "425"),                                    // 70
    (":status", "500"),                                    // 71
    ("accept-language", ""),                               // 72
    ("access-control-allow-credentials", "FALSE"),         // 73
    ("access-control-allow-credentials", "TRUE"),          // 74
    ("access-control-allow-headers", "*"),                 // 75
    ("access-control-allow-methods", "get"),               // 76
    ("access-control-allow-methods", "get, post, options"), // 77
    ("access-control-allow-methods", "options"),           // 78
    ("access-control-expose-headers", "content-length"),   // 79
    ("access-control-request-headers", "content-type"),    // 80
    ("access-control-request-method", "get"),              // 81
    ("access-control-request-method", "post"),             // 82
    ("alt-svc", "clear"),                                  // 83
    ("authorization", ""),                                 // 84
    (
        "content-security-policy",
        "script-src 'none'; object-src 'none'; base-uri 'none'",
    ), // 85
    ("early-data", "1"),                                   // 86
    ("expect-ct", ""),                                     // 87
    ("forwarded", ""),                                     // 88
    ("if-range", ""),                                      // 89
    ("origin", ""),                                        // 90
    ("purpose", "prefetch"),                               // 91
    ("server", ""),                                        // 92
    ("timing-allow-origin", "*"),                          // 93
    ("upgrade-insecure-requests", "1"),                    // 94
    ("user-agent", ""),                                    // 95
    ("x-forwarded-for", ""),                               // 96
    ("x-frame-options", "deny"),                           // 97
    ("x-frame-options", "sameorigin"),                     // 98
];

/// Reads a prefixed integer (RFC 7541 §5.1) whose first byte keeps its low `prefix` bits.
/// Returns the value and bytes read; `None` when `buf` ends first.
///
/// # Errors
/// [`ProtoError::QpackIntegerOverflow`] beyond 62 bits.
pub fn decode_int(buf: &[u8], prefix: u8) -> Result<Option<(u64, usize)>, ProtoError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let max_prefix = (1u64 << prefix) - 1;
    let mut value = u64::from(first) & max_prefix;
    if value < max_prefix {
        return Ok(Some((value, 1)));
    }
    let mut shift = 0u32;
    for (i, &b) in buf.iter().enumerate().skip(1) {
        let add = u64::from(b & 0x7f);
        if shift > 56 || (add << shift) >> shift != add {
            return Err(ProtoError::QpackIntegerOverflow);
        }
        value = value
            .checked_add(add << shift)
            .filter(|v| *v < 1 << 62)
            .ok_or(ProtoError::QpackIntegerOverflow)?;
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
        shift += 7;
    }
    Ok(None)
}

/// Writes a prefixed integer; `flags` holds the bits above the prefix in the first byte.
// The casts keep the low 7 or 8 bits on purpose (the values are checked or masked).
#[allow(clippy::cast_possible_truncation)]
pub fn encode_int(value: u64, prefix: u8, flags: u8, buf: &mut impl BufMut) {
    let max_prefix = (1u64 << prefix) - 1;
    if value < max_prefix {
        // value < 2^prefix <= 255.
        buf.put_u8(flags | value as u8);
        return;
    }
    buf.put_u8(flags | max_prefix as u8);
    let mut rest = value - max_prefix;
    while rest >= 0x80 {
        buf.put_u8((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    buf.put_u8(rest as u8);
}

/// A cursor over a complete field section: running out of bytes is an error here.
struct Cursor<'a> {
    buf: &'a [u8],
}

const TRUNCATED: ProtoError = ProtoError::Truncated("QPACK field section");

impl Cursor<'_> {
    fn peek(&self) -> Result<u8, ProtoError> {
        self.buf.first().copied().ok_or(TRUNCATED)
    }

    fn int(&mut self, prefix: u8) -> Result<u64, ProtoError> {
        let (v, n) = decode_int(self.buf, prefix)?.ok_or(TRUNCATED)?;
        self.buf = &self.buf[n..];
        Ok(v)
    }

    /// A string literal whose Huffman flag is `huffman_bit` of the first byte and whose length
    /// has a `prefix`-bit prefix.
    fn string(&mut self, huffman_bit: u8, prefix: u8) -> Result<Vec<u8>, ProtoError> {
        let huffman = self.peek()? & huffman_bit != 0;
        let len = self.int(prefix)?;
        // The length is checked against the bytes present before anything is allocated.
        let len = usize::try_from(len).map_err(|_| TRUNCATED)?;
        let raw = self.buf.get(..len).ok_or(TRUNCATED)?;
        self.buf = &self.buf[len..];
        if huffman {
            huffman::decode(raw)
        } else {
            Ok(raw.to_vec())
        }
    }
}

fn static_entry(index: u64) -> Result<(&'static str, &'static str), ProtoError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| STATIC_TABLE.get(i))
        .copied()
        .ok_or(ProtoError::QpackStaticIndex(index))
}

fn check_field(field: &Field) -> Result<(), ProtoError> {
    let name_ok = !field.name.is_empty()
        && field.name.iter().enumerate().all(|(i, &c)| {
            (c == b':' && i == 0)
                || c.is_ascii_digit()
                || c.is_ascii_lowercase()
                || b"!#$%&'*+-.^_`|~".contains(&c)
        });
    let value_ok = !field
        .value
        .iter()
        .any(|&c| c == 0 || c == b'\r' || c == b'\n');
    if name_ok && value_ok {
        Ok(())
    } else {
        Err(ProtoError::InvalidField(
            String::from_utf8_lossy(&field.name).into_owned(),
        ))
    }
}

/// Decodes a complete field section (a HEADERS frame payload) of at most `max_size` bytes as
/// RFC 9114 §4.2.2 counts them.
///
/// # Errors
/// [`ProtoError::QpackDynamicReference`] for any dynamic table use,
/// [`ProtoError::QpackStaticIndex`], [`ProtoError::Huffman`], [`ProtoError::Truncated`],
/// [`ProtoError::TooLarge`], [`ProtoError::InvalidField`].
pub fn decode_field_section(block: &[u8], max_size: usize) -> Result<Vec<Field>, ProtoError> {
    let mut c = Cursor { buf: block };
    // Encoded Field Section Prefix: Required Insert Count (8-bit prefix), then S + Delta Base
    // (7-bit prefix). With no dynamic table the insert count must be 0; the base is then unused.
    if c.int(8)? != 0 {
        return Err(ProtoError::QpackDynamicReference);
    }
    c.int(7)?;
    let mut fields = Vec::new();
    let mut size = 0usize;
    while !c.buf.is_empty() {
        let first = c.peek()?;
        let field = if first & 0x80 != 0 {
            // Indexed field line: 1 T index(6).
            if first & 0x40 == 0 {
                return Err(ProtoError::QpackDynamicReference);
            }
            let (name, value) = static_entry(c.int(6)?)?;
            Field::new(name, value)
        } else if first & 0x40 != 0 {
            // Literal with name reference: 0 1 N T index(4), then the value.
            if first & 0x10 == 0 {
                return Err(ProtoError::QpackDynamicReference);
            }
            let (name, _) = static_entry(c.int(4)?)?;
            Field::new(name, c.string(0x80, 7)?)
        } else if first & 0x20 != 0 {
            // Literal with literal name: 0 0 1 N H len(3), name, then the value.
            let name = c.string(0x08, 3)?;
            Field::new(name, c.string(0x80, 7)?)
        } else {
            // 0001: indexed post-base; 0000: literal with post-base name reference.
            return Err(ProtoError::QpackDynamicReference);
        };
        check_field(&field)?;
        size = size.saturating_add(field.size());
        if size > max_size {
            return Err(ProtoError::TooLarge {
                what: "field section",
                len: size as u64,
                limit: max_size as u64,
            });
        }
        fields.push(field);
    }
    Ok(fields)
}

fn encode_string(s: &[u8], prefix: u8, flags: u8, buf: &mut impl BufMut) {
    encode_int(s.len() as u64, prefix, flags, buf);
    buf.put_slice(s);
}

/// Encodes a field section with the static table and plain literals (no Huffman, no dynamic
/// table): an exact static match becomes an indexed line, a static name a literal with name
/// reference, anything else a literal with literal name. Names must already be lower-case.
pub fn encode_field_section<'a>(
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    buf: &mut impl BufMut,
) {
    // Required Insert Count 0, Delta Base 0.
    buf.put_u8(0);
    buf.put_u8(0);
    for (name, value) in fields {
        let exact = STATIC_TABLE
            .iter()
            .position(|(n, v)| n.as_bytes() == name && v.as_bytes() == value);
        if let Some(i) = exact {
            encode_int(i as u64, 6, 0xc0, buf);
            continue;
        }
        match STATIC_TABLE.iter().position(|(n, _)| n.as_bytes() == name) {
            Some(i) => encode_int(i as u64, 4, 0x50, buf),
            None => encode_string(name, 3, 0x20, buf),
        }
        encode_string(value, 7, 0x00, buf);
    }
}

/// The `:status` of a response field section.
///
/// # Errors
/// [`ProtoError::BadHeader`] when it is missing, repeated or not a three-digit code.
pub fn response_status(fields: &[Field]) -> Result<u16, ProtoError> {
    let mut statuses = fields.iter().filter(|f| f.name == b":status");
    let status = statuses.next().ok_or(ProtoError::BadHeader(":status"))?;
    if statuses.next().is_some() || status.value.len() != 3 {
        return Err(ProtoError::BadHeader(":status"));
    }
    std::str::from_utf8(&status.value)
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..=599).contains(s))
        .ok_or(ProtoError::BadHeader(":status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_field_section(
            fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            &mut out,
        );
        out
    }

    #[test]
    fn static_table_spot_checks() {
        assert_eq!(STATIC_TABLE[0], (":authority", ""));
        assert_eq!(STATIC_TABLE[15], (":method", "CONNECT"));
        assert_eq!(STATIC_TABLE[23], (":scheme", "https"));
        assert_eq!(STATIC_TABLE[25], (":status", "200"));
        assert_eq!(STATIC_TABLE[90], ("origin", ""));
        assert_eq!(STATIC_TABLE[98], ("x-frame-options", "sameorigin"));
    }

    #[test]
    fn rfc7541_c1_integer_examples() {
        // 10 with a 5-bit prefix, 1337 with a 5-bit prefix, 42 with an 8-bit prefix.
        let mut out = Vec::new();
        encode_int(10, 5, 0, &mut out);
        assert_eq!(out, [0x0a]);
        out.clear();
        encode_int(1337, 5, 0, &mut out);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
        assert_eq!(decode_int(&out, 5), Ok(Some((1337, 3))));
        assert_eq!(decode_int(&out[..2], 5), Ok(None));
        out.clear();
        encode_int(42, 8, 0, &mut out);
        assert_eq!(out, [0x2a]);
        let over = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(decode_int(&over, 8), Err(ProtoError::QpackIntegerOverflow));
    }

    #[test]
    fn connect_request_round_trips() {
        let fields = [
            (":method", "CONNECT"),
            (":protocol", "webtransport"),
            (":scheme", "https"),
            (":authority", "localhost:4433"),
            (":path", "/chat?room=1"),
            ("origin", "https://app.example"),
            ("authorization", "Bearer x"),
        ];
        let block = enc(&fields);
        // :method CONNECT is static index 15 (0xc0 | 15).
        assert_eq!(&block[..3], [0x00, 0x00, 0xcf]);
        let back = decode_field_section(&block, 4096).unwrap();
        let want: Vec<Field> = fields.iter().map(|(n, v)| Field::new(*n, *v)).collect();
        assert_eq!(back, want);
    }

    #[test]
    fn rfc9204_b1_literal_with_name_reference() {
        // RFC 9204 Appendix B.1: ":path: /index.html" as a literal with static name ref 1.
        let block = [
            0x00, 0x00, 0x51, 0x0b, b'/', b'i', b'n', b'd', b'e', b'x', b'.', b'h', b't', b'm',
            b'l',
        ];
        assert_eq!(
            decode_field_section(&block, 4096).unwrap(),
            [Field::new(":path", "/index.html")]
        );
    }

    #[test]
    fn huffman_coded_response() {
        // :status 200 indexed (0xd9), then "server: h3" with a Huffman value and a Huffman
        // literal name "x-custom".
        let mut block = vec![0x00, 0x00, 0xd9];
        let v = huffman::encode(b"h3");
        block.push(0x5f);
        block.push(92 - 15); // static 92 "server" with a 4-bit prefix: 15 + 77.
        encode_int(v.len() as u64, 7, 0x80, &mut block);
        block.extend(&v);
        let n = huffman::encode(b"x-custom");
        encode_int(n.len() as u64, 3, 0x28, &mut block);
        block.extend(&n);
        encode_int(v.len() as u64, 7, 0x80, &mut block);
        block.extend(&v);
        let fields = decode_field_section(&block, 4096).unwrap();
        assert_eq!(
            fields,
            [
                Field::new(":status", "200"),
                Field::new("server", "h3"),
                Field::new("x-custom", "h3")
            ]
        );
        assert_eq!(response_status(&fields), Ok(200));
    }

    #[test]
    fn errors() {
        // Required Insert Count != 0.
        assert_eq!(
            decode_field_section(&[0x01, 0x00], 100),
            Err(ProtoError::QpackDynamicReference)
        );
        // Dynamic indexed line (T = 0).
        assert_eq!(
            decode_field_section(&[0, 0, 0x80], 100),
            Err(ProtoError::QpackDynamicReference)
        );
        // Post-base forms.
        assert_eq!(
            decode_field_section(&[0, 0, 0x10], 100),
            Err(ProtoError::QpackDynamicReference)
        );
        assert_eq!(
            decode_field_section(&[0, 0, 0x00], 100),
            Err(ProtoError::QpackDynamicReference)
        );
        // Static index 99.
        assert_eq!(
            decode_field_section(&[0, 0, 0xff, 0x24], 100),
            Err(ProtoError::QpackStaticIndex(99))
        );
        // Truncated: empty block, missing value, a string length beyond the input.
        assert_eq!(decode_field_section(&[], 100), Err(TRUNCATED));
        assert_eq!(decode_field_section(&[0, 0, 0x51], 100), Err(TRUNCATED));
        assert_eq!(
            decode_field_section(&[0, 0, 0x51, 0x7f, 0xff, 0xff, 0xff, 0x0f], 100),
            Err(TRUNCATED)
        );
        // Too large.
        assert!(matches!(
            decode_field_section(&enc(&[("x-a", &"v".repeat(100))]), 64),
            Err(ProtoError::TooLarge { .. })
        ));
        // Upper-case name, CR in a value.
        assert!(matches!(
            decode_field_section(&enc(&[("X-A", "v")]), 100),
            Err(ProtoError::InvalidField(_))
        ));
        assert!(matches!(
            decode_field_section(&enc(&[("x-a", "v\r")]), 100),
            Err(ProtoError::InvalidField(_))
        ));
        // Status checks.
        assert_eq!(response_status(&[]), Err(ProtoError::BadHeader(":status")));
        assert_eq!(
            response_status(&[Field::new(":status", "20x")]),
            Err(ProtoError::BadHeader(":status"))
        );
        assert_eq!(response_status(&[Field::new(":status", "404")]), Ok(404));
    }
}
