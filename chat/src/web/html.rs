//! Server-rendered HTML: escaping and the page every web view shares
//! (small, readable on a phone, no script but what a page brings itself).

/// Text as HTML: safe in element content and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `title` (plain text) and `body` (HTML).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title}</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>\n",
        title = escape(title)
    )
}

const STYLE: &str = "body{font:16px/1.4 system-ui,sans-serif;margin:0;background:#f6f6f4;color:#222}\
main{max-width:1100px;margin:auto;padding:12px}\
h1{font-size:1.4em}nav a,nav button{margin-right:.8em}\
.results{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:14px}\
.result{background:#fff;border-radius:8px;padding:10px;box-shadow:0 1px 3px #0002}\
.tiles{display:grid;grid-template-columns:1fr 1fr;gap:4px}\
.tiles img,.full img{width:100%;height:auto;border-radius:4px;display:block}\
.meta{font-size:.85em;color:#555;word-wrap:break-word}\
.prompt{font-weight:600;margin:.4em 0}\
.buttons form{display:inline}.buttons button{margin:2px;min-width:2.6em;padding:.35em .5em}\
input[type=text],textarea{width:100%;box-sizing:border-box;font-size:1em;padding:.5em}\
.error{color:#a00}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_stays_text() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'q'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;"
        );
        let html = page("<b>", "<p>ok</p>");
        assert!(html.contains("<title>&lt;b&gt;</title>"));
        assert!(html.contains("<main><p>ok</p></main>"));
    }
}
