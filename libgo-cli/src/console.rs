//! `libgo console`: the terminal joined to an instance's console (a container's TTY, a VM's
//! serial port) in raw mode, so keys such as Ctrl-C reach the instance; Ctrl-] detaches,
//! as in `virsh console` and telnet.

use std::io::{IsTerminal, Write};

use futures::{SinkExt, StreamExt, stream::BoxStream};
use libgo::{Error, ProgressSink, Result};
use libgo_bindings_common::Reply;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::target::{RemoteClient, Target};

/// The byte Ctrl-] sends.
pub const DETACH: u8 = 0x1d;

/// An open console as two halves: what the instance prints, and where typing goes.
pub struct Session {
    output: BoxStream<'static, Result<Vec<u8>>>,
    input: mpsc::Sender<Vec<u8>>,
}

impl Target {
    /// Opens the console of instance `id`.
    pub async fn console(&self, id: &str) -> Result<Session> {
        match self {
            Target::Local(libgo) => {
                let reply = libgo_bindings_common::call(
                    libgo,
                    "console",
                    json!({ "id": id }),
                    Vec::new(),
                    ProgressSink::none(),
                )
                .await?;
                let Reply::Console(console) = reply else {
                    return Err(Error::internal("console did not answer a console"));
                };
                let (input, mut typed) = mpsc::channel::<Vec<u8>>(64);
                let writer = console.clone();
                tokio::spawn(async move {
                    while let Some(data) = typed.recv().await {
                        if let Err(e) = writer.write(&data).await {
                            tracing::debug!(error = %e, "console input closed");
                            break;
                        }
                    }
                    writer.close().await;
                });
                let output = futures::stream::unfold(Some(console), |state| async move {
                    let console = state?;
                    match console.read(None).await {
                        Ok(Some(bytes)) => Some((Ok(bytes), Some(console))),
                        Ok(None) => None,
                        Err(e) => Some((Err(e), None)),
                    }
                })
                .boxed();
                Ok(Session { output, input })
            }
            Target::Remote(remote) => remote_console(remote, id).await,
        }
    }
}

async fn remote_console(remote: &RemoteClient, id: &str) -> Result<Session> {
    let path = format!("/api/v1/instances/{}/console", crate::rest::escape(id));
    let socket = remote.websocket(&path).await?;
    let (mut sink, stream) = socket.split();
    let (input, mut typed) = mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(async move {
        while let Some(data) = typed.recv().await {
            if sink.send(Message::Binary(data.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    });
    // Binary frames are output; a text frame is the server's error body; a close ends it.
    let output = stream
        .take_while(|m| futures::future::ready(!matches!(m, Ok(Message::Close(_)))))
        .filter_map(|m| async move {
            match m {
                Ok(Message::Binary(b)) => Some(Ok(b.to_vec())),
                Ok(Message::Text(t)) => Some(Err(crate::target::error_frame(&t))),
                Ok(_) => None,
                Err(e) => Some(Err(Error::unavailable(format!("console connection: {e}")))),
            }
        })
        .boxed();
    Ok(Session { output, input })
}

/// Raw mode while it lives (when standard input is a terminal): keys such as Ctrl-C go to
/// the instance instead of signalling libgo.
pub struct RawMode(bool);

impl RawMode {
    /// Raw mode when `wanted` and standard input is a terminal.
    pub fn enable(wanted: bool) -> Result<RawMode> {
        if !wanted || !std::io::stdin().is_terminal() {
            return Ok(RawMode(false));
        }
        crossterm::terminal::enable_raw_mode()
            .map_err(|e| Error::internal(format!("raw mode: {e}")))?;
        Ok(RawMode(true))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if self.0 {
            let _ = crossterm::terminal::disable_raw_mode();
        }
    }
}

/// Joins the terminal to `session` until Ctrl-] or the console's end.
pub async fn attach(mut session: Session, name: &str, quiet: bool) -> Result<u8> {
    if !quiet {
        eprintln!("Connected to the console of {name}; Ctrl-] detaches.");
    }
    let raw = RawMode::enable(true)?;
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 4096];
    let mut stdout = std::io::stdout();
    let mut stdin_open = true;
    let outcome: Result<&str> = loop {
        tokio::select! {
            chunk = session.output.next() => match chunk {
                Some(Ok(bytes)) => {
                    stdout.write_all(&bytes)?;
                    stdout.flush()?;
                }
                Some(Err(e)) => break Err(e),
                None => break Ok("ended"),
            },
            read = stdin.read(&mut buf), if stdin_open => match read {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let typed = &buf[..n];
                    let (before, detach) = match typed.iter().position(|b| *b == DETACH) {
                        Some(i) => (&typed[..i], true),
                        None => (typed, false),
                    };
                    if !before.is_empty() && session.input.send(before.to_vec()).await.is_err() {
                        break Ok("ended");
                    }
                    if detach {
                        break Ok("detached");
                    }
                }
            },
        }
    };
    drop(raw);
    let how = outcome?;
    if !quiet {
        eprintln!("\r\nConsole of {name} {how}.");
    }
    Ok(0)
}
