//! Reading stdin as lines, on a thread of its own.
//!
//! A plain thread rather than `tokio::io::stdin`: a blocking read cannot be cancelled, and a
//! thread stuck in `read` must not keep the runtime from shutting down when `tcat` is done
//! (with `--count`, stdin may stay open forever). The process exits without waiting for it.

use std::io::{self, BufRead, Read};

use tokio::sync::mpsc;

/// Lines handed over before the reader waits (backpressure from a slow connection).
const QUEUE: usize = 16;

/// Reads the next line of at most `limit` bytes, without its `\n` and a trailing `\r`.
/// `Ok(None)` at end of input; the last line may lack its newline.
///
/// # Errors
/// The reader's error, or `InvalidData` for a line longer than `limit`.
pub(crate) fn read_line<R: BufRead>(reader: &mut R, limit: usize) -> io::Result<Option<Vec<u8>>> {
    // Room for the limit plus "\r\n": one byte more means the line is too long.
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(2);
    let mut line = Vec::new();
    let n = loop {
        match reader.by_ref().take(cap).read_until(b'\n', &mut line) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => break other?,
        }
    };
    if n == 0 {
        return Ok(None);
    }
    let had_newline = line.last() == Some(&b'\n');
    if had_newline {
        line.pop();
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a stdin line is longer than the message size limit of {limit} bytes"),
        ));
    }
    Ok(Some(line))
}

/// Starts the reader thread; lines (or the error that ended reading) arrive on the receiver,
/// which closes at end of input.
///
/// # Errors
/// When the thread cannot be started.
pub(crate) fn spawn_stdin(limit: usize) -> io::Result<mpsc::Receiver<io::Result<Vec<u8>>>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    std::thread::Builder::new()
        .name("tcat-stdin".into())
        .spawn(move || {
            let stdin = io::stdin();
            let mut reader = stdin.lock();
            // Ends at EOF, on an error, or when nobody wants lines any more.
            loop {
                match read_line(&mut reader, limit) {
                    Ok(Some(line)) => {
                        if tx.blocking_send(Ok(line)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        })?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], limit: usize) -> io::Result<Vec<Vec<u8>>> {
        let mut reader = io::BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        while let Some(line) = read_line(&mut reader, limit)? {
            out.push(line);
        }
        Ok(out)
    }

    #[test]
    fn splits_and_strips() {
        let got = lines(b"a\r\nb\n\nlast", 100).unwrap();
        assert_eq!(
            got,
            vec![b"a".to_vec(), b"b".to_vec(), vec![], b"last".to_vec()]
        );
        assert!(lines(b"", 100).unwrap().is_empty());
        let got = lines("hé\u{1F600}\n".as_bytes(), 100).unwrap();
        assert_eq!(got, vec!["hé\u{1F600}".as_bytes().to_vec()]);
        // Only one trailing \r goes; bytes are kept as they are.
        assert_eq!(
            lines(b"x\r\r\n\xff\n", 100).unwrap(),
            vec![b"x\r".to_vec(), vec![0xff]]
        );
    }

    #[test]
    fn enforces_the_limit() {
        assert_eq!(lines(b"abcd\r\n", 4).unwrap(), vec![b"abcd".to_vec()]);
        assert_eq!(lines(b"abcd", 4).unwrap(), vec![b"abcd".to_vec()]);
        let err = lines(b"abcde\n", 4).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(lines(b"abcdefgh", 4).is_err());
    }
}
