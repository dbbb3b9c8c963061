//! `libgo exec -i/-t`: a command attached to the terminal, as `docker exec -it`: raw mode
//! with a TTY (Ctrl-C reaches the command), the window size passed on and kept in step,
//! standard input forwarded with `-i` (its end closes the command's), and the command's exit
//! code as libgo's.

use std::io::Write;

use futures::{SinkExt, StreamExt, stream::BoxStream};
use libgo::{Error, ExecSpec, LogStream, Result};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::target::Target;

/// What the command sent.
pub enum Chunk {
    /// Bytes of its stdout or stderr.
    Out(LogStream, Vec<u8>),
    /// It ended, with this code when the engine knows it.
    Exit(Option<i64>),
}

/// What goes to the command.
pub enum Input {
    /// Typed bytes.
    Data(Vec<u8>),
    /// No more input.
    Eof,
    /// The terminal's size (rows, columns).
    Resize(u16, u16),
}

/// A command running attached.
pub struct Attached {
    output: BoxStream<'static, Result<Chunk>>,
    input: mpsc::Sender<Input>,
}

impl Target {
    /// Starts `spec` attached in instance `id`.
    pub async fn exec_interactive(&self, id: &str, spec: &ExecSpec) -> Result<Attached> {
        let (input, mut typed) = mpsc::channel::<Input>(64);
        match self {
            Target::Local(libgo) => {
                let session = libgo.exec_interactive(id, spec).await?;
                let mut writer = session.input;
                let control = session.control.clone();
                tokio::spawn(async move {
                    while let Some(i) = typed.recv().await {
                        match i {
                            Input::Data(d) => {
                                if writer.write_all(&d).await.is_err()
                                    || writer.flush().await.is_err()
                                {
                                    break;
                                }
                            }
                            Input::Eof => {
                                let _ = writer.shutdown().await;
                            }
                            Input::Resize(rows, columns) => {
                                if let Err(e) = control.resize(rows, columns).await {
                                    tracing::debug!(error = %e, "resize refused");
                                }
                            }
                        }
                    }
                });
                let control = session.control;
                let exit = futures::stream::once(async move {
                    Ok(Chunk::Exit(control.exit_code_after_output().await?))
                });
                let output = session
                    .output
                    .map(|c| c.map(|(stream, bytes)| Chunk::Out(stream, bytes.to_vec())))
                    .chain(exit)
                    .boxed();
                Ok(Attached { output, input })
            }
            Target::Remote(remote) => {
                let path = format!("/api/v1/instances/{}/exec/attach", crate::rest::escape(id));
                let socket = remote.websocket(&path).await?;
                let (mut sink, stream) = socket.split();
                let first = serde_json::to_string(spec)?;
                sink.send(Message::Text(first.into()))
                    .await
                    .map_err(|e| Error::unavailable(format!("exec connection: {e}")))?;
                tokio::spawn(async move {
                    while let Some(i) = typed.recv().await {
                        let m = match i {
                            Input::Data(d) => Message::Binary(d.into()),
                            Input::Eof => Message::Text(json!({"type": "eof"}).to_string().into()),
                            Input::Resize(rows, columns) => Message::Text(
                                json!({"type": "resize", "rows": rows, "columns": columns})
                                    .to_string()
                                    .into(),
                            ),
                        };
                        if sink.send(m).await.is_err() {
                            break;
                        }
                    }
                });
                let output = stream
                    .take_while(|m| futures::future::ready(!matches!(m, Ok(Message::Close(_)))))
                    .filter_map(|m| async move {
                        match m {
                            Ok(Message::Binary(b)) => {
                                let (channel, data) = b.split_first()?;
                                let stream = if *channel == 2 {
                                    LogStream::Stderr
                                } else {
                                    LogStream::Stdout
                                };
                                Some(Ok(Chunk::Out(stream, data.to_vec())))
                            }
                            Ok(Message::Text(t)) => {
                                let v: serde_json::Value =
                                    serde_json::from_str(&t).unwrap_or_default();
                                if v["type"] == "exit" {
                                    return Some(Ok(Chunk::Exit(v["exitCode"].as_i64())));
                                }
                                Some(Err(crate::target::error_frame(&t)))
                            }
                            Ok(_) => None,
                            Err(e) => {
                                Some(Err(Error::unavailable(format!("exec connection: {e}"))))
                            }
                        }
                    })
                    .boxed();
                Ok(Attached { output, input })
            }
        }
    }
}

/// Joins the terminal to `attached` until the command ends; answers its exit code.
pub async fn run(mut attached: Attached, tty: bool, forward_stdin: bool) -> Result<u8> {
    let _raw = crate::console::RawMode::enable(tty && forward_stdin)?;
    let size = || {
        crossterm::terminal::size()
            .ok()
            .map(|(c, r)| Input::Resize(r, c))
    };
    if tty && let Some(s) = size() {
        let _ = attached.input.send(s).await;
    }
    let mut winch =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 8192];
    let mut stdin_open = forward_stdin;
    if !forward_stdin {
        let _ = attached.input.send(Input::Eof).await;
    }
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    loop {
        tokio::select! {
            chunk = attached.output.next() => match chunk {
                Some(Ok(Chunk::Out(LogStream::Stderr, bytes))) => {
                    stderr.write_all(&bytes)?;
                    stderr.flush()?;
                }
                Some(Ok(Chunk::Out(_, bytes))) => {
                    stdout.write_all(&bytes)?;
                    stdout.flush()?;
                }
                Some(Ok(Chunk::Exit(code))) => {
                    let code = code.ok_or_else(|| Error::internal("the engine did not say how the command ended"))?;
                    return Ok(u8::try_from(code).unwrap_or(255));
                }
                Some(Err(e)) => return Err(e),
                None => return Err(Error::unavailable("the connection ended before the command")),
            },
            read = stdin.read(&mut buf), if stdin_open => match read {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    let _ = attached.input.send(Input::Eof).await;
                }
                Ok(n) => {
                    let _ = attached.input.send(Input::Data(buf[..n].to_vec())).await;
                }
            },
            Some(()) = async { match winch.as_mut() { Some(w) => w.recv().await, None => None } }, if tty => {
                if let Some(s) = size() {
                    let _ = attached.input.send(s).await;
                }
            }
        }
    }
}
