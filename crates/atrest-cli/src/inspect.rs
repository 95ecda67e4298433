//! `atrest inspect`: what a sealed file claims to be, from its header and length.

use crate::Output;
use crate::error::CliResult;
use atrest_format::{RecordHeader, StreamHeader, StreamLayout, TAG_LEN};
use std::io::Read;
use std::path::Path;

pub(crate) fn run(path: &Path, output: Output) -> CliResult {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let len = file.metadata().map_err(|e| format!("cannot stat {}: {e}", path.display()))?.len();
    let mut head = Vec::with_capacity(StreamHeader::LEN);
    file.by_ref()
        .take(StreamHeader::LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let fields = describe(&head, len).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(render(&fields, output))
}

/// Field/value pairs for a sealed object of total length `len` starting with `head`.
fn describe(head: &[u8], len: u64) -> CliResult<Vec<(&'static str, String)>> {
    let common = |kind: &str| {
        vec![
            ("format", kind.to_string()),
            ("version", "1".to_string()),
            ("aead", "AES-256-GCM".to_string()),
            ("kdf", "HKDF-SHA256".to_string()),
            ("sealed_bytes", len.to_string()),
        ]
    };
    match head.first() {
        Some(b'R') => {
            RecordHeader::parse(head).map_err(|e| e.to_string())?;
            let overhead = (RecordHeader::LEN + TAG_LEN) as u64;
            let pt = len.checked_sub(overhead).ok_or("record shorter than its header and tag: truncated")?;
            let mut f = common("record");
            f.push(("plaintext_bytes", pt.to_string()));
            Ok(f)
        }
        Some(b'S') => {
            let (h, _) = StreamHeader::parse(head).map_err(|e| e.to_string())?;
            let layout = StreamLayout::new(h.segment_size_log2).map_err(|e| e.to_string())?;
            let pt = layout.plaintext_len(len).map_err(|e| e.to_string())?;
            let mut f = common("stream");
            f.push(("segment_bytes", layout.segment_size().to_string()));
            f.push(("segments", layout.segment_count(pt).to_string()));
            f.push(("plaintext_bytes", pt.to_string()));
            Ok(f)
        }
        Some(b) => {
            Err(format!("not an atrest sealed object (first byte {b:#04x}; records start with 'R', streams with 'S')")
                .into())
        }
        None => Err("empty file".into()),
    }
}

fn render(fields: &[(&'static str, String)], output: Output) -> String {
    match output {
        Output::Table => fields.iter().map(|(k, v)| format!("{k:<16} {v}\n")).collect(),
        Output::Json => {
            // Every value is a decimal number or a fixed ASCII name: no escaping needed.
            let body: Vec<String> = fields
                .iter()
                .map(|(k, v)| {
                    if v.bytes().all(|b| b.is_ascii_digit()) {
                        format!("\"{k}\":{v}")
                    } else {
                        format!("\"{k}\":\"{v}\"")
                    }
                })
                .collect();
            format!("{{{}}}\n", body.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_a_useful_message() {
        let e = describe(b"hello", 5).unwrap_err().to_string();
        assert!(e.contains("not an atrest sealed object"), "{e}");
        assert!(describe(b"", 0).is_err());
    }

    #[test]
    fn json_quotes_names_not_numbers() {
        let out = render(&[("format", "record".into()), ("sealed_bytes", "84".into())], Output::Json);
        assert_eq!(out, "{\"format\":\"record\",\"sealed_bytes\":84}\n");
    }
}
