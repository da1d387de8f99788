//! The page: HTML escaping, the skeleton with its inline style and the sample browser's
//! inline script. Nothing is loaded from anywhere: the script is a constant (no record
//! text in it) and every piece of record text goes through `esc`.

/// Escape text for HTML content and (quoted) attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 16);
    for c in s.chars() {
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

/// `<section>` with its heading (the navigation links to `id`).
pub fn section(id: &str, title: &str, body: &str) -> String {
    format!(
        "<section id=\"{id}\"><h2>{}</h2>\n{body}\n</section>\n",
        esc(title)
    )
}

/// A table of already-escaped cells, the first row its header.
pub fn table(rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table>");
    for (i, r) in rows.iter().enumerate() {
        let tag = if i == 0 { "th" } else { "td" };
        s.push_str("<tr>");
        for c in r {
            s.push_str(&format!("<{tag}>{c}</{tag}>"));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// A short paragraph of (escaped) explanation.
pub fn note(text: &str) -> String {
    format!("<p class=\"note\">{}</p>", esc(text))
}

const STYLE: &str = r#"
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1400px;padding:0 1.5em 3em;color:#222}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
nav a{margin-right:1em}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;vertical-align:top;font-size:13px}
th{background:#f3f3f3}.note{color:#555;font-size:13px}.charts{display:flex;flex-wrap:wrap;gap:1.5em}
.charts figure{margin:0}figcaption{font-size:13px;font-weight:600}
.filters{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd;z-index:1}
.filters label{margin-right:1em;font-size:13px}
details.item{border:1px solid #ddd;margin:.4em 0;border-radius:4px}
details.item>summary{cursor:pointer;padding:4px 8px;font-size:13px;background:#fafafa}
details.item.rejected>summary{background:#fff3f0}
.cols{display:grid;grid-template-columns:1fr 1fr 1fr;gap:8px;padding:8px}
.cols h4{margin:0 0 4px;font-size:12px;color:#555}
.cols pre{white-space:pre-wrap;word-break:break-word;font-size:12px;margin:0;background:#fbfbfb;padding:6px;border:1px solid #eee;max-height:40em;overflow:auto}
mark{background:#ffe066}.tag{display:inline-block;padding:0 6px;border-radius:8px;background:#eee;margin-left:4px}
.tag.bad{background:#fdd}.tag.ok{background:#dfd}
"#;

/// The browser's filters: each `details.item` carries `data-task`, `data-doc`,
/// `data-reason` and `data-score`; a filter's value may also come from the URL's
/// fragment (`#task=summarization&reason=accepted`).
const SCRIPT: &str = r#"
(function(){
  var items = Array.prototype.slice.call(document.querySelectorAll('details.item'));
  var f = {task: document.getElementById('f-task'), doc: document.getElementById('f-doc'),
           reason: document.getElementById('f-reason'), score: document.getElementById('f-score')};
  var shown = document.getElementById('shown');
  function apply(){
    var min = parseFloat(f.score.value), n = 0;
    items.forEach(function(el){
      var d = el.dataset, s = parseFloat(d.score);
      var ok = (!f.task.value || d.task === f.task.value) &&
               (!f.doc.value || d.doc === f.doc.value) &&
               (!f.reason.value || d.reason === f.reason.value) &&
               (isNaN(min) || (!isNaN(s) && s >= min));
      el.hidden = !ok;
      if (ok) n++;
    });
    shown.textContent = n + ' of ' + items.length + ' sampled records match the filters';
  }
  location.hash.replace(/^#/, '').split('&').forEach(function(kv){
    var p = kv.split('='), el = f[p[0]];
    if (el && p.length === 2) el.value = decodeURIComponent(p[1]);
  });
  Object.keys(f).forEach(function(k){ f[k].addEventListener('input', apply); });
  apply();
  document.body.setAttribute('data-ready', '1');
})();
"#;

/// The whole page around the (already escaped) body.
pub fn page(title: &str, nav: &[(&str, &str)], body: &str) -> String {
    let links: String = nav
        .iter()
        .map(|(id, t)| format!("<a href=\"#{id}\">{}</a>", esc(t)))
        .collect();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>{STYLE}</style></head>\n<body>\n<h1>{t}</h1>\n<nav>{links}</nav>\n\
         {body}<script>{SCRIPT}</script>\n</body></html>\n",
        t = esc(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"</script><img src=x onerror="alert('1')">&"#),
            "&lt;/script&gt;&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt;&amp;"
        );
        let p = page("<t>", &[("a", "A&B")], "");
        assert!(p.contains("<title>&lt;t&gt;</title>") && p.contains("A&amp;B"));
    }
}
