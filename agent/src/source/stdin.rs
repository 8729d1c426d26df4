//! Standard input: a reader thread hands chunks over a bounded channel, so a slow
//! pipeline applies back-pressure instead of buffering without limit. No checkpoint:
//! what was read from a pipe cannot be read again.

use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};

use super::framer::{Framer, Framing};
use super::position::SourceCheckpoint;
use super::traits::{RecordSink, Source, StreamId};

pub struct StdinSource {
    chunks: Receiver<Vec<u8>>,
    framer: Framer,
    stream: Option<StreamId>,
    closed: bool,
}

impl StdinSource {
    pub fn new(framing: Framing) -> Self {
        Self::from_reader(std::io::stdin(), framing)
    }

    pub fn from_reader(mut reader: impl Read + Send + 'static, framing: Framing) -> Self {
        let (sender, chunks) = sync_channel(16);
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => {
                        if sender.send(buffer[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        });
        Self {
            chunks,
            framer: Framer::new(framing, 0),
            stream: None,
            closed: false,
        }
    }
}

impl Source for StdinSource {
    fn name(&self) -> &str {
        "stdin"
    }

    fn poll(&mut self, sink: &mut dyn RecordSink) -> u64 {
        let stream = *self.stream.get_or_insert_with(|| sink.stream("stdin"));
        let mut total = 0;
        while total < (4 << 20) {
            match self.chunks.try_recv() {
                Ok(chunk) => {
                    total += chunk.len() as u64;
                    self.framer
                        .feed(&chunk, &mut |r, t| sink.record(stream, r, t));
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if !self.closed {
                        self.closed = true;
                        self.framer
                            .flush(true, &mut |r, t| sink.record(stream, r, t));
                    }
                    break;
                }
            }
        }
        sink.bytes_read(stream, total);
        total
    }

    fn flush(&mut self, sink: &mut dyn RecordSink, end_of_input: bool) {
        let stream = *self.stream.get_or_insert_with(|| sink.stream("stdin"));
        self.framer
            .flush(end_of_input, &mut |r, t| sink.record(stream, r, t));
    }

    fn finished(&self) -> bool {
        self.closed
    }

    fn is_stdin(&self) -> bool {
        true
    }

    fn checkpoint(&self) -> SourceCheckpoint {
        SourceCheckpoint::None
    }

    fn restore(&mut self, _checkpoint: SourceCheckpoint) {}

    fn set_framing(&mut self, framing: &Framing) {
        self.framer.set_framing(framing.clone());
    }
}
