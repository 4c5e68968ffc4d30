//! The body of an HTTP/1.1 response read with a blocking socket: de-chunked when needed,
//! with a pushback buffer, split into lines or up to a marker (used by the MJPEG source).

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;

/// Largest accepted part (a 4K JPEG is well below).
pub(super) const MAX_PART: usize = 16 * 1024 * 1024;
const MAX_HEADER_LINE: usize = 8 * 1024;

pub(super) fn read_line(reader: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(MAX_HEADER_LINE as u64)
        .read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

/// The response body: de-chunked when needed, with a pushback buffer.
pub(super) struct Body {
    pub(super) reader: BufReader<TcpStream>,
    pub(super) chunked: bool,
    pub(super) chunk_left: usize,
    pub(super) pending: Vec<u8>,
}

impl Body {
    /// Reads body bytes (after de-chunking) into `buf`; 0 at the end.
    fn raw(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.chunked {
            return self.reader.read(buf);
        }
        if self.chunk_left == 0 {
            let size_line = read_line(&mut self.reader)?;
            let size_line = if size_line.is_empty() {
                // The CRLF after the previous chunk.
                read_line(&mut self.reader)?
            } else {
                size_line
            };
            let hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if size == 0 {
                return Ok(0);
            }
            self.chunk_left = size;
        }
        let n = buf.len().min(self.chunk_left);
        let read = self.reader.read(&mut buf[..n])?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.chunk_left -= read;
        Ok(read)
    }

    /// Refills `pending` with at least one more byte.
    fn fill(&mut self) -> std::io::Result<()> {
        let mut buf = [0u8; 8192];
        let n = self.raw(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.pending.extend_from_slice(&buf[..n]);
        Ok(())
    }

    pub(super) fn line(&mut self) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return Ok(line);
            }
            if self.pending.len() > MAX_HEADER_LINE {
                return Err(std::io::Error::other("line too long"));
            }
            self.fill()?;
        }
    }

    pub(super) fn read_exact(&mut self, out: &mut [u8]) -> std::io::Result<()> {
        while self.pending.len() < out.len() {
            self.fill()?;
        }
        out.copy_from_slice(&self.pending[..out.len()]);
        self.pending.drain(..out.len());
        Ok(())
    }

    pub(super) fn until(&mut self, marker: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut searched = 0;
        loop {
            if let Some(i) = find(&self.pending[searched..], marker) {
                let end = searched + i;
                let data = self.pending[..end].to_vec();
                // Keep the boundary line (without the CRLF before it).
                self.pending.drain(..end + 2);
                return Ok(data);
            }
            searched = self.pending.len().saturating_sub(marker.len());
            if self.pending.len() > MAX_PART {
                return Err(std::io::Error::other("part too large"));
            }
            self.fill()?;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
