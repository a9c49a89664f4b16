//! `GET /containerLogs/{ns}/{pod}/{container}`: a container's log as kubelet serves it,
//! read from the CRI log file (`<RFC3339Nano time> <stdout|stderr> <P|F> <text>` lines;
//! `P` marks a line the runtime split), with kubectl's options: `follow`, `previous`,
//! `timestamps`, `tailLines`, `sinceSeconds`, `sinceTime`, `limitBytes`.

use std::time::Duration;

use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::{Response, StatusCode};
use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::{flag, query_pairs, text, Body, Pods};

/// How often a followed log file is looked at for more lines.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// kubectl's log options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<Timestamp>,
    pub limit_bytes: Option<usize>,
}

impl Options {
    pub fn parse(query: &str, now: Timestamp) -> Options {
        let pairs = query_pairs(query);
        let value = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let since_seconds = value("sinceSeconds").and_then(|s| s.parse::<i64>().ok());
        let since = since_seconds
            .and_then(|s| now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(s)).ok())
            .or_else(|| value("sinceTime").and_then(|t| t.parse().ok()));
        Options {
            follow: flag(&pairs, "follow"),
            previous: flag(&pairs, "previous"),
            timestamps: flag(&pairs, "timestamps"),
            tail_lines: value("tailLines").and_then(|t| t.parse().ok()),
            since,
            limit_bytes: value("limitBytes").and_then(|l| l.parse().ok()).filter(|l| *l > 0),
        }
    }
}

/// One line of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub content: &'a str,
}

pub fn parse_line(line: &str) -> Option<Line<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or("");
    Some(Line { time, stream, partial: tag.split(':').next() == Some("P"), content })
}

/// The text a client gets for `line`.
fn render(line: &Line<'_>, timestamps: bool) -> String {
    let mut out = String::with_capacity(line.content.len() + 40);
    if timestamps {
        out.push_str(line.time);
        out.push(' ');
    }
    out.push_str(line.content);
    if !line.partial {
        out.push('\n');
    }
    out
}

fn after_since(line: &Line<'_>, since: Option<Timestamp>) -> bool {
    match (since, line.time.parse::<Timestamp>()) {
        (Some(since), Ok(at)) => at >= since,
        _ => true,
    }
}

/// The complete lines of `data` rendered under `options` (tail, since, limit applied);
/// `limit` is what remains of limitBytes.
pub fn select(data: &str, options: &Options, limit: &mut Option<usize>) -> String {
    let lines: Vec<Line<'_>> = data.lines().filter_map(parse_line).filter(|l| after_since(l, options.since)).collect();
    let skip = options.tail_lines.map_or(0, |n| lines.len().saturating_sub(n));
    let mut out = String::new();
    for line in &lines[skip..] {
        let rendered = render(line, options.timestamps);
        match limit {
            Some(0) => break,
            Some(left) if rendered.len() > *left => {
                let cut = (0..=*left).rev().find(|i| rendered.is_char_boundary(*i)).unwrap_or(0);
                out.push_str(&rendered[..cut]);
                *limit = Some(0);
                break;
            }
            Some(left) => *left -= rendered.len(),
            None => {}
        }
        out.push_str(&rendered);
    }
    out
}

/// Serves the log of `container` in pod `namespace/pod`.
pub async fn serve(pods: &Pods, namespace: &str, pod: &str, container: &str, query: &str) -> Response<Body> {
    let options = Options::parse(query, Timestamp::now());
    let Some(entry) = pods.registry.get(namespace, pod) else {
        return text(StatusCode::NOT_FOUND, format!("pod {namespace}/{pod} not found on this node"));
    };
    let Some(current) = entry.containers.get(container).cloned() else {
        return text(StatusCode::NOT_FOUND, format!("container {container} is not valid for pod {pod}"));
    };
    let attempt = if options.previous {
        match current.attempt.checked_sub(1) {
            Some(previous) => previous,
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
                )
            }
        }
    } else {
        current.attempt
    };
    let path = format!("{}/{container}/{attempt}.log", entry.log_dir);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(error) => {
            return text(StatusCode::NOT_FOUND, format!("log of container {container} in pod {pod}: {error}"));
        }
    };
    let mut data = String::new();
    if let Err(error) = file.read_to_string(&mut data).await {
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("reading {path}: {error}"));
    }
    // Only whole lines; a line the runtime is still writing comes with the next read.
    let whole = data.rfind('\n').map_or(0, |i| i + 1);
    let mut limit = options.limit_bytes;
    let first = select(&data[..whole], &options, &mut limit);
    let follow = options.follow && !options.previous && current.running && limit != Some(0);
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(16);
    let _ = tx.send(Ok(Frame::data(Bytes::from(first)))).await;
    if follow {
        let follow_options = Options { tail_lines: None, since: None, ..options };
        let (registry, ns, pod, container) =
            (pods.registry.clone(), namespace.to_string(), pod.to_string(), container.to_string());
        let mut offset = whole as u64;
        tokio::spawn(async move {
            let mut limit = limit;
            loop {
                let still_running = registry
                    .get(&ns, &pod)
                    .and_then(|e| e.containers.get(&container).cloned())
                    .is_some_and(|c| c.running && c.id == current.id);
                let mut more = String::new();
                if file.seek(std::io::SeekFrom::Start(offset)).await.is_ok() {
                    let _ = file.read_to_string(&mut more).await;
                }
                let whole = more.rfind('\n').map_or(0, |i| i + 1);
                offset += whole as u64;
                let chunk = select(&more[..whole], &follow_options, &mut limit);
                if !chunk.is_empty() && tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_err() {
                    return; // the client went away
                }
                if !still_running || limit == Some(0) || tx.is_closed() {
                    return;
                }
                tokio::time::sleep(FOLLOW_POLL).await;
            }
        });
    }
    let body = StreamBody::new(tokio_stream_from(rx)).boxed();
    let mut response = Response::new(body);
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    response
}

/// An mpsc receiver as a stream of body frames.
fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + Sync + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const LOG: &str = "2026-12-01T10:00:00.000000001Z stdout F hi\n\
                       2026-12-01T10:00:01.000000000Z stderr P part \n\
                       2026-12-01T10:00:01.000000001Z stderr F one\n\
                       2026-12-01T10:00:05.000000000Z stdout F later\n";

    #[test]
    fn lines_render_joined_with_and_without_timestamps() {
        let mut limit = None;
        assert_eq!(select(LOG, &Options::default(), &mut limit), "hi\npart one\nlater\n");
        let stamped = Options { timestamps: true, tail_lines: Some(1), ..Options::default() };
        assert_eq!(select(LOG, &stamped, &mut limit), "2026-12-01T10:00:05.000000000Z later\n");
    }

    #[test]
    fn since_tail_and_limit_bytes() {
        let now: Timestamp = "2026-12-01T10:00:06Z".parse().unwrap();
        let since = Options::parse("sinceSeconds=2&limitBytes=3", now);
        assert_eq!(since.since, Some("2026-12-01T10:00:04Z".parse().unwrap()));
        let mut limit = since.limit_bytes;
        assert_eq!(select(LOG, &since, &mut limit), "lat");
        assert_eq!(limit, Some(0));
        let parsed = Options::parse("follow=true&previous=false&tailLines=2&timestamps=1", now);
        assert!(parsed.follow && parsed.timestamps && !parsed.previous);
        assert_eq!(parsed.tail_lines, Some(2));
    }
}
