//! S3's XML: answers written with a small builder over `quick-xml`'s escaping, request
//! bodies read with `quick-xml`'s serde support.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use quick_xml::escape::escape;

const NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// An XML document being written, root element open.
pub(crate) struct Xml {
    out: String,
    open: Vec<String>,
}

impl Xml {
    pub fn new(root: &str) -> Self {
        let mut x = Self { out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"), open: Vec::new() };
        if root == "Error" {
            x.out.push_str("<Error>");
        } else {
            x.out.push_str(&format!("<{root} xmlns=\"{NS}\">"));
        }
        x.open.push(root.to_string());
        x
    }

    pub fn start(&mut self, tag: &str) -> &mut Self {
        self.out.push_str(&format!("<{tag}>"));
        self.open.push(tag.to_string());
        self
    }

    pub fn end(&mut self) -> &mut Self {
        if let Some(tag) = self.open.pop() {
            self.out.push_str(&format!("</{tag}>"));
        }
        self
    }

    pub fn text(&mut self, tag: &str, value: &str) -> &mut Self {
        self.out.push_str(&format!("<{tag}>{}</{tag}>", escape(value)));
        self
    }

    pub fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.end();
        }
        self.out
    }

    pub fn into_response(self, status: StatusCode) -> Response {
        let mut r = Response::builder().status(status).body(Body::from(self.finish())).unwrap_or_default();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        r
    }
}

/// ISO 8601 with milliseconds, as S3 lists times.
pub(crate) fn iso8601(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// An HTTP date (`Last-Modified`).
pub(crate) fn http_date(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    httpdate::fmt_http_date(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text_and_closes_every_element() {
        let mut x = Xml::new("ListBucketResult");
        x.text("Name", "b").start("Contents").text("Key", "a<&>\"'b");
        let s = x.finish();
        assert!(s.ends_with("<Contents><Key>a&lt;&amp;&gt;&quot;&apos;b</Key></Contents></ListBucketResult>"), "{s}");
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(http_date(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
    }
}
