//! A minimal HTTP/1.1 keep-alive client for the benchmark: writes a pre-serialised request,
//! reads the status line, headers and body (Content-Length or chunked).

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    pub async fn open(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(8192),
        })
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed",
            ));
        }
        Ok(())
    }

    /// Sends `request` and returns the response status once the whole response was read.
    pub async fn round_trip(&mut self, request: &[u8]) -> std::io::Result<u16> {
        self.stream.write_all(request).await?;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("bad status line"))?;
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let chunked = head.contains("transfer-encoding: chunked");
        let close = head.contains("connection: close");
        self.buf.advance(head_end);
        if let Some(n) = length {
            while self.buf.len() < n {
                self.fill().await?;
            }
            self.buf.advance(n);
        } else if chunked {
            loop {
                if let Some(i) = find(&self.buf, b"0\r\n\r\n") {
                    self.buf.advance(i + 5);
                    break;
                }
                self.fill().await?;
            }
        }
        if close {
            return Err(std::io::Error::other("server closed the connection"));
        }
        Ok(status)
    }
}
