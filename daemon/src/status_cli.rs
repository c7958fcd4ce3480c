//! `sluice status`: fetches a running daemon's `/status` and prints it for people.

use anyhow::Context;
use serde_json::Value;

/// Prints the daemon's status at `base_url` as tables.
pub fn print(base_url: &str) -> anyhow::Result<()> {
    let url = format!("{}/status", base_url.trim_end_matches('/'));
    let body = ureq::get(&url)
        .call()
        .with_context(|| format!("GET {url} (is sluice running, with [http] listen set?)"))?
        .body_mut()
        .read_to_string()
        .context("reading the response")?;
    let status: Value = serde_json::from_str(&body).context("the response is not JSON")?;
    print!("{}", render(&status));
    Ok(())
}

/// The status as text: a header line, then sources and recent batches as tables.
pub fn render(s: &Value) -> String {
    let mut out = format!(
        "sluice {}  up {}s  {}\n",
        text(&s["version"]),
        text(&s["uptime_seconds"]),
        if s["ready"].as_bool() == Some(true) {
            "ready".to_string()
        } else {
            format!("NOT READY: {}", list(&s["unready_reasons"]))
        }
    );
    out.push_str("\nSOURCE               TYPE  TABLE                ROWS         DEAD   PENDING  LAST COMMIT                 STATE\n");
    for src in s["sources"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<20} {:<5} {:<20} {:>12} {:>6} {:>9}  {:<27} {}\n",
            text(&src["name"]),
            text(&src["type"]),
            text(&src["table"]),
            text(&src["rows"]),
            text(&src["dead_letters"]),
            // Files for a directory source, messages of lag for Kafka.
            text(if src["lag_messages"].is_null() {
                &src["files_pending"]
            } else {
                &src["lag_messages"]
            }),
            text(&src["last_commit"]),
            text(&src["state"]),
        ));
    }
    out.push_str("\nBATCH    TABLE                ROWS      DEAD  MS      COMMITTED AT\n");
    for b in s["recent_batches"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<8} {:<20} {:>8} {:>6} {:>6}  {}\n",
            text(&b["batch_id"]),
            text(&b["table"]),
            text(&b["rows"]),
            text(&b["dead_letters"]),
            text(&b["duration_ms"]),
            text(&b["committed_at"]),
        ));
    }
    let models = s["models"].as_object().filter(|m| !m.is_empty());
    if let Some(models) = models {
        out.push_str("\nMODEL                          KIND         STATE            WATERMARK   ROWS      MS  RUNS  FAILS  TESTS FAILING\n");
        for (name, m) in models {
            let failing: Vec<String> = m["tests"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["failures"].as_u64().unwrap_or(0) > 0 || !t["error"].is_null())
                .map(|t| text(&t["name"]))
                .collect();
            out.push_str(&format!(
                "{:<30} {:<12} {:<16} {:>9} {:>6} {:>7} {:>5} {:>6}  {}\n",
                name,
                text(&m["materialized"]),
                text(&m["state"]),
                text(&m["watermark"]),
                text(&m["rows"]),
                text(&m["duration_ms"]),
                text(&m["runs"]),
                text(&m["failures"]),
                if failing.is_empty() {
                    "-".to_string()
                } else {
                    failing.join(", ")
                },
            ));
            if let Some(e) = m["last_error"].as_str() {
                out.push_str(&format!("    error: {e}\n"));
            }
        }
    }
    render_lake(s, &mut out);
    out
}

/// The lake's tables (with `[lake]`): Delta version, files, batches behind DuckDB.
fn render_lake(s: &Value, out: &mut String) {
    let Some(tables) = s["lake"].as_object().filter(|t| !t.is_empty()) else {
        return;
    };
    out.push_str("\nLAKE TABLE           VERSION   FILES  BEHIND  THROUGH BATCH  LAST COMMIT\n");
    for (name, t) in tables {
        out.push_str(&format!(
            "{:<20} {:>7} {:>7} {:>7} {:>14}  {}\n",
            name,
            text(&t["version"]),
            text(&t["files"]),
            text(&t["behind_batches"]),
            text(&t["through_batch"]),
            text(&t["last_commit"]),
        ));
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(text).collect::<Vec<_>>().join("; "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sources_batches_and_readiness() {
        let s = serde_json::json!({
            "version": "0.1.0", "uptime_seconds": 5, "ready": false,
            "unready_reasons": ["source a: cannot list /in"],
            "sources": [{"name": "a", "type": "csv", "table": "t", "rows": 12, "dead_letters": 1,
                         "files_pending": 0, "last_commit": null, "state": "failing: cannot list /in"}],
            "recent_batches": [{"batch_id": 3, "table": "t", "rows": 12, "dead_letters": 1,
                                "duration_ms": 4, "committed_at": "2026-11-26T10:00:00Z"}],
            "models": {"fct": {"materialized": "incremental", "state": "failing", "watermark": 3,
                               "rows": 5, "duration_ms": 7, "runs": 2, "failures": 1,
                               "last_error": "boom", "tests": [
                                   {"name": "unique_fct_id", "failures": 2, "error": null},
                                   {"name": "not_null_fct_id", "failures": 0, "error": null}]}},
            "lake": {"t": {"version": 7, "files": 12, "behind_batches": 2, "through_batch": 40,
                           "last_commit": "2026-11-26T10:00:01Z"}},
        });
        let text = render(&s);
        assert!(
            text.contains("NOT READY: source a: cannot list /in"),
            "{text}"
        );
        assert!(text.contains("a                    csv   t"), "{text}");
        assert!(text.contains("2026-11-26T10:00:00Z"), "{text}");
        assert!(
            text.contains("fct                            incremental  failing"),
            "{text}"
        );
        assert!(
            text.contains("unique_fct_id") && !text.contains("not_null_fct_id"),
            "{text}"
        );
        assert!(text.contains("error: boom"), "{text}");
        assert!(
            text.contains(
                "t                          7      12       2             40  2026-11-26T10:00:01Z"
            ),
            "{text}"
        );
    }
}
