//! Reading an HTTP reply's body with a cap: scrapes, PromQL replies and alert sinks'
//! answers are read through here, so a hostile or broken peer costs at most the cap.

/// The largest scrape or query body read.
const MAX_BODY_BYTES: usize = 64 << 20;

/// Why a body was not read whole: more than `max` bytes, or the connection failed.
#[derive(Debug)]
pub enum BodyError {
    TooLarge { max: usize },
    Read(reqwest::Error),
}

impl BodyError {
    /// The reason counted for it, as a scrape or a query counts errors.
    fn counted(self) -> (&'static str, String) {
        match self {
            Self::TooLarge { max } => ("too_large", format!("body over {max} bytes")),
            Self::Read(error) => ("unreachable", error.to_string()),
        }
    }
}

/// Reads a response's body, or its first `max` bytes: whatever length it declares, or
/// none, reading stops once it passes `max` (the error then holds what was read).
pub async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, (BodyError, Vec<u8>)> {
    // Sized once for a body that says how long it is (up to the cap), not grown by doubling.
    let declared = response.content_length().unwrap_or(0).min(max as u64);
    let mut body = Vec::with_capacity(declared as usize);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    body.extend_from_slice(&chunk[..max - body.len()]);
                    return Err((BodyError::TooLarge { max }, body));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(error) => return Err((BodyError::Read(error), body)),
        }
    }
}

/// A scrape's or a query's body, whole: one that declares a length over
/// [`MAX_BODY_BYTES`] is refused unread.
pub async fn read_body(response: reqwest::Response) -> Result<Vec<u8>, (&'static str, String)> {
    let max = MAX_BODY_BYTES;
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge { max }.counted());
    }
    read_capped(response, max)
        .await
        .map_err(|(error, _)| error.counted())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves one connection on 127.0.0.1 with `head` then `chunks` chunks of 64 KiB, each
    /// framed for chunked transfer when `chunked`; returns its URL.
    fn serve_once(head: &'static str, chunks: usize, chunked: bool) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(head.as_bytes());
            let chunk = vec![b'#'; 64 << 10];
            for _ in 0..chunks {
                let written = if chunked {
                    write!(stream, "{:x}\r\n", chunk.len())
                        .and_then(|()| stream.write_all(&chunk))
                        .and_then(|()| stream.write_all(b"\r\n"))
                } else {
                    stream.write_all(&chunk)
                };
                // The reader hangs up once it has enough.
                if written.is_err() {
                    return;
                }
            }
            if chunked {
                let _ = stream.write_all(b"0\r\n\r\n");
            }
        });
        url
    }

    #[tokio::test]
    async fn a_body_streamed_without_a_length_is_read_up_to_the_cap_only() {
        // 100 chunks of 64 KiB (6.4 MiB) against a cap of 1 MiB.
        let url = serve_once(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            100,
            true,
        );
        let response = reqwest::get(&url).await.unwrap();
        let (error, read) = read_capped(response, 1 << 20).await.unwrap_err();
        assert!(
            matches!(error, BodyError::TooLarge { max } if max == 1 << 20),
            "{error:?}"
        );
        assert_eq!(read.len(), 1 << 20);
        // A body within the cap is read whole.
        let url = serve_once(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            3,
            true,
        );
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(read_capped(response, 1 << 20).await.unwrap().len(), 3 << 16);
    }

    #[tokio::test]
    async fn a_body_declared_over_the_cap_is_refused_unread() {
        let url = serve_once(
            "HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n",
            1,
            false,
        );
        let response = reqwest::get(&url).await.unwrap();
        let (reason, message) = read_body(response).await.unwrap_err();
        assert_eq!(reason, "too_large");
        assert_eq!(message, format!("body over {MAX_BODY_BYTES} bytes"));
    }
}
