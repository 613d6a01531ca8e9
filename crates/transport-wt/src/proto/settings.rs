//! The SETTINGS frame payload (RFC 9114 §7.2.4): a list of (identifier, value) varint pairs,
//! and the identifiers WebTransport over HTTP/3 needs.

use bytes::BufMut;

use super::{ProtoError, varint};

/// SETTINGS_QPACK_MAX_TABLE_CAPACITY (RFC 9204 §5); default 0: no dynamic table.
pub const QPACK_MAX_TABLE_CAPACITY: u64 = 0x1;
/// SETTINGS_MAX_FIELD_SECTION_SIZE (RFC 9114 §7.2.4.1).
pub const MAX_FIELD_SECTION_SIZE: u64 = 0x6;
/// SETTINGS_QPACK_BLOCKED_STREAMS (RFC 9204 §5).
pub const QPACK_BLOCKED_STREAMS: u64 = 0x7;
/// SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 9220 §5): extended CONNECT.
pub const ENABLE_CONNECT_PROTOCOL: u64 = 0x8;
/// SETTINGS_H3_DATAGRAM (RFC 9297 §2.1.1).
pub const H3_DATAGRAM: u64 = 0x33;
/// SETTINGS_ENABLE_WEBTRANSPORT (draft-ietf-webtrans-http3 up to -06; what h3 and
/// current browsers check).
pub const ENABLE_WEBTRANSPORT: u64 = 0x2b60_3742;
/// SETTINGS_WEBTRANSPORT_MAX_SESSIONS in its draft -05..-07 number.
pub const WEBTRANSPORT_MAX_SESSIONS_DRAFT07: u64 = 0x2b60_3743;
/// SETTINGS_WT_MAX_SESSIONS (draft-ietf-webtrans-http3 -08 and later).
pub const WT_MAX_SESSIONS: u64 = 0xc671_706a;

/// Setting identifiers HTTP/2 used that HTTP/3 reserves: receiving one is H3_SETTINGS_ERROR.
pub const RESERVED_HTTP2_SETTINGS: [u64; 5] = [0x0, 0x2, 0x3, 0x4, 0x5];

/// The most settings a decoded frame may carry (peers send a handful; this bounds memory).
pub const MAX_SETTINGS: usize = 64;

/// The settings of one SETTINGS frame, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    entries: Vec<(u64, u64)>,
}

impl Settings {
    /// No settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// What a WebTransport client sends: HTTP datagrams, extended CONNECT, WebTransport (old and
    /// new identifiers) with `max_sessions`, no QPACK dynamic table.
    pub fn webtransport_client(max_sessions: u64) -> Self {
        let mut s = Self::new();
        for (id, value) in [
            (H3_DATAGRAM, 1),
            (ENABLE_CONNECT_PROTOCOL, 1),
            (ENABLE_WEBTRANSPORT, 1),
            (WEBTRANSPORT_MAX_SESSIONS_DRAFT07, max_sessions),
            (WT_MAX_SESSIONS, max_sessions),
        ] {
            // Distinct identifiers, well under MAX_SETTINGS.
            let _ = s.set(id, value);
        }
        s
    }

    /// Adds a setting.
    ///
    /// # Errors
    /// [`ProtoError::DuplicateSetting`], [`ProtoError::ReservedSetting`],
    /// [`ProtoError::TooManySettings`], [`ProtoError::VarintOverflow`].
    pub fn set(&mut self, id: u64, value: u64) -> Result<&mut Self, ProtoError> {
        if RESERVED_HTTP2_SETTINGS.contains(&id) {
            return Err(ProtoError::ReservedSetting(id));
        }
        if self.get(id).is_some() {
            return Err(ProtoError::DuplicateSetting(id));
        }
        if self.entries.len() >= MAX_SETTINGS {
            return Err(ProtoError::TooManySettings(MAX_SETTINGS));
        }
        for v in [id, value] {
            if v > varint::MAX {
                return Err(ProtoError::VarintOverflow(v));
            }
        }
        self.entries.push((id, value));
        Ok(self)
    }

    /// The value of a setting, if present.
    pub fn get(&self, id: u64) -> Option<u64> {
        self.entries.iter().find(|(i, _)| *i == id).map(|(_, v)| *v)
    }

    /// Whether a setting is present with a non-zero value.
    pub fn enabled(&self, id: u64) -> bool {
        self.get(id).is_some_and(|v| v != 0)
    }

    /// Every setting, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.entries.iter().copied()
    }

    /// Whether the peer supports WebTransport sessions: ENABLE_WEBTRANSPORT set, or (newer
    /// drafts) WT_MAX_SESSIONS above zero.
    pub fn supports_webtransport(&self) -> bool {
        self.enabled(ENABLE_WEBTRANSPORT) || self.enabled(WT_MAX_SESSIONS)
    }

    /// Appends the payload (not the frame header).
    pub fn encode(&self, buf: &mut impl BufMut) {
        for (id, value) in &self.entries {
            varint::put(*id, buf);
            varint::put(*value, buf);
        }
    }

    /// Decodes a whole payload.
    ///
    /// # Errors
    /// [`ProtoError::MalformedFrame`] when the payload ends inside a pair, and the errors of
    /// [`set`](Self::set).
    pub fn decode(payload: &[u8]) -> Result<Self, ProtoError> {
        let mut s = Self::new();
        let mut rest = payload;
        while !rest.is_empty() {
            let malformed = ProtoError::MalformedFrame("SETTINGS");
            let (id, n) = varint::decode(rest).ok_or(malformed.clone())?;
            rest = &rest[n..];
            let (value, n) = varint::decode(rest).ok_or(malformed)?;
            rest = &rest[n..];
            s.set(id, value)?;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_settings_round_trip() {
        let s = Settings::webtransport_client(1);
        let mut payload = Vec::new();
        s.encode(&mut payload);
        let back = Settings::decode(&payload).unwrap();
        assert_eq!(back, s);
        assert!(back.supports_webtransport());
        assert!(back.enabled(H3_DATAGRAM) && back.enabled(ENABLE_CONNECT_PROTOCOL));
        assert_eq!(back.get(QPACK_MAX_TABLE_CAPACITY), None);
    }

    #[test]
    fn errors() {
        assert_eq!(
            Settings::decode(&[0x02, 0x00]),
            Err(ProtoError::ReservedSetting(2))
        );
        assert_eq!(
            Settings::decode(&[0x33, 0x01, 0x33, 0x00]),
            Err(ProtoError::DuplicateSetting(0x33))
        );
        assert_eq!(
            Settings::decode(&[0x33]),
            Err(ProtoError::MalformedFrame("SETTINGS"))
        );
        assert_eq!(
            Settings::decode(&[0x40]),
            Err(ProtoError::MalformedFrame("SETTINGS"))
        );
        let mut many = Vec::new();
        for id in 0..=MAX_SETTINGS as u64 {
            varint::put(0x100 + id, &mut many);
            varint::put(0, &mut many);
        }
        assert_eq!(
            Settings::decode(&many),
            Err(ProtoError::TooManySettings(MAX_SETTINGS))
        );
        assert_eq!(
            Settings::new().set(1 << 62, 0).err(),
            Some(ProtoError::VarintOverflow(1 << 62))
        );
    }

    #[test]
    fn unknown_settings_are_kept_but_mean_nothing() {
        let s = Settings::decode(&[0x21, 0x05, 0x33, 0x01]).unwrap();
        assert_eq!(s.get(0x21), Some(5));
        assert!(!s.supports_webtransport());
        let mut s = Settings::new();
        s.set(WT_MAX_SESSIONS, 4).unwrap();
        assert!(s.supports_webtransport());
    }
}
