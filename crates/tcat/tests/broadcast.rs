//! `tcat serve --mode broadcast`: a message from one client reaches every client.

mod common;

use common::{Proc, WAIT, serve, tcat};

#[test]
fn a_message_from_one_client_reaches_both() {
    let server = serve(&["--ws", "127.0.0.1:0", "--mode", "broadcast"], 1);
    let mut a = Proc::spawn(tcat().args(["connect", server.url()]));
    // A gets its own message back once it has joined: after that, it hears everything.
    a.write(b"from a\n");
    assert_eq!(a.wait_line(WAIT, |_| true), "from a");

    let mut b = Proc::spawn(tcat().args(["connect", server.url()]));
    // B has joined before its own message is published, so both hear it.
    b.write(b"from b\n");
    assert_eq!(b.wait_line(WAIT, |_| true), "from b");
    assert_eq!(a.wait_line(WAIT, |_| true), "from b");

    let a = a.finish(WAIT);
    let b = b.finish(WAIT);
    assert_eq!(a.code(), Some(0), "{a:?}");
    assert_eq!(b.code(), Some(0), "{b:?}");
}
