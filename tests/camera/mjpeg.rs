//! The MJPEG source against a real multipart stream served on 127.0.0.1: frames are
//! decoded, and when the server drops the stream the source reconnects and goes on.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use facegate::camera::{Backoff, CaptureOptions, MjpegSource, Reconnecting};
use image::RgbImage;

use super::sequence::{scene, VISITORS};

fn jpeg(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(image)
        .unwrap();
    out
}

/// A multipart response of `version` ("1.0" or "1.1") whose parts carry a
/// Content-Length. Write errors are ignored: the client may go away mid-stream.
fn write_multipart<'f>(
    stream: &mut TcpStream,
    version: &str,
    frames: impl IntoIterator<Item = &'f Vec<u8>>,
) {
    let _ = stream.write_all(
        format!(
            "HTTP/{version} 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n"
        )
        .as_bytes(),
    );
    for f in frames {
        let head = format!(
            "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            f.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(f);
        let _ = stream.write_all(b"\r\n");
    }
}

fn read_request(stream: &TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 2 {
        line.clear();
    }
}

/// Connection 1: parts with Content-Length, then the server closes after `first` parts.
/// Connection 2 and later: HTTP/1.1 chunked, parts without Content-Length, until the
/// client goes away.
fn serve(listener: TcpListener, frames: Vec<Vec<u8>>, first: usize, connections: Arc<AtomicUsize>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        read_request(&stream);
        let n = connections.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            write_multipart(&mut stream, "1.0", frames.iter().take(first));
            // Dropped mid-stream, as when a camera reboots.
            continue;
        }
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=\"123456789000000000000987654321\"\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        for f in frames.iter().cycle() {
            let mut part =
                b"\r\n--123456789000000000000987654321\r\nContent-Type: image/jpeg\r\n\r\n"
                    .to_vec();
            part.extend_from_slice(f);
            // Split each part into two chunks, as chunked servers do.
            let (a, b) = part.split_at(part.len() / 2);
            let mut ok = true;
            for chunk in [a, b] {
                ok &= stream
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .and_then(|_| stream.write_all(chunk))
                    .and_then(|_| stream.write_all(b"\r\n"))
                    .is_ok();
            }
            if !ok {
                break;
            }
        }
    }
}

#[test]
fn the_mjpeg_source_reads_a_stream_and_reconnects_after_it_drops() {
    let frames = scene(&VISITORS);
    // Distinct frames: the background, then a visitor growing frame by frame.
    let sent: Vec<RgbImage> = frames.into_iter().skip(2).take(8).collect();
    let encoded: Vec<Vec<u8>> = sent.iter().map(jpeg).collect();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/stream", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let c = connections.clone();
    std::thread::spawn(move || serve(listener, encoded, 3, c));

    let options = capture_options();
    let source = MjpegSource::new(&url, options).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut driver = Reconnecting::new(
        Box::new(source),
        Backoff::new(Duration::from_millis(10), Duration::from_millis(100)),
        stop,
    );
    let stats = driver.stats();
    let mut received = Vec::new();
    for _ in 0..7 {
        received.push(driver.next_frame().expect("a frame").image);
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2, "one reconnect");
    assert_eq!(stats.failures.load(Ordering::SeqCst), 1);
    assert_eq!(stats.frames.load(Ordering::SeqCst), 7);
    // Frames 0..3 from the first connection, then 0.. again from the second.
    let expected = [0, 1, 2, 0, 1, 2, 3];
    for (got, want) in received.iter().zip(expected) {
        assert_eq!(got.dimensions(), (640, 480));
        let diff = mean_abs_diff(got, &sent[want]);
        assert!(diff < 3.0, "frame {want}: mean difference {diff}");
    }
    assert!(mean_abs_diff(&received[2], &sent[3]) > mean_abs_diff(&received[2], &sent[2]));
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}

#[test]
fn an_http_error_or_a_non_mjpeg_answer_is_a_source_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            read_request(&stream);
            let answer: &[u8] = if i == 0 {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nhi"
            };
            let _ = stream.write_all(answer);
        }
    });
    let options = capture_options();
    let mut source = MjpegSource::new(&format!("http://{addr}/stream"), options).unwrap();
    use facegate::camera::FrameSource;
    let e = source.open().unwrap_err().to_string();
    assert!(e.contains("404"), "{e}");
    let e = source.open().unwrap_err().to_string();
    assert!(e.contains("not an MJPEG stream"), "{e}");
}

/// Reads a request's header lines (lower-cased names).
fn request_headers(stream: &TcpStream) -> Vec<(String, String)> {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut headers = Vec::new();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 2 {
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        line.clear();
    }
    headers
}

#[test]
fn credentials_in_an_mjpeg_url_are_sent_as_basic_auth_and_a_camera_without_them_answers_401() {
    let frames: Vec<Vec<u8>> = scene(&VISITORS)
        .into_iter()
        .skip(3)
        .take(2)
        .map(|f| jpeg(&f))
        .collect();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    // A camera that wants user "admin", password "s3cret:@door" (as IP cameras do).
    let expected = "Basic YWRtaW46czNjcmV0OkBkb29y";
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let headers = request_headers(&stream);
            let auth = headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone());
            seen2.lock().unwrap().push(auth.clone());
            if auth.as_deref() != Some(expected) {
                let _ = stream.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"cam\"\r\nContent-Length: 0\r\n\r\n",
                );
                continue;
            }
            write_multipart(&mut stream, "1.1", &frames);
        }
    });
    let options = capture_options();
    use facegate::camera::FrameSource;
    let mut anonymous = MjpegSource::new(&format!("http://{addr}/stream"), options).unwrap();
    let e = anonymous.open().unwrap_err().to_string();
    assert!(e.contains("401"), "{e}");

    let wrong = format!("http://admin:guess@{addr}/stream");
    let e = MjpegSource::new(&wrong, options)
        .unwrap()
        .open()
        .unwrap_err()
        .to_string();
    assert!(e.contains("401"), "{e}");
    assert!(!e.contains("guess"), "the password is not in errors: {e}");

    // The password's ':' and '@' percent-escaped in the URL.
    let url = format!("http://admin:s3cret%3A%40door@{addr}/stream");
    let mut source = MjpegSource::new(&url, options).unwrap();
    assert!(
        !source.describe().contains("s3cret"),
        "{}",
        source.describe()
    );
    source.open().expect("authorized");
    let frame = source.next_frame().unwrap().expect("a frame");
    assert_eq!(frame.image.dimensions(), (640, 480));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            None,
            Some("Basic YWRtaW46Z3Vlc3M=".to_string()),
            Some(expected.to_string())
        ]
    );
}

/// What the MJPEG tests ask of a source: 640x480 at 10 frames/s, real time.
fn capture_options() -> CaptureOptions {
    CaptureOptions {
        fps: 10,
        width: 640,
        height: 480,
        realtime: true,
    }
}
