//! Just enough of the Prometheus text format and PromQL to list the
//! metrics, labels and label values a query uses.

use std::collections::{BTreeMap, BTreeSet};

/// Series names, and each one's labels and their values, on a metrics page.
pub type Catalog = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

pub fn catalog(page: &str) -> Catalog {
    let mut cat = Catalog::new();
    for line in page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = cat.entry(line[..end].to_string()).or_default();
        if line[end..].starts_with('{') {
            let body = &line[end + 1..line.rfind('}').expect("closing brace")];
            for (name, _, value) in matchers(body) {
                labels.entry(name).or_default().insert(value);
            }
        }
    }
    cat
}

/// A label matcher: (label, operator, value).
pub type Matcher = (String, String, String);

/// A metric name and its matchers.
pub type Selector = (String, Vec<Matcher>);

/// `name="value", other!~"re"` into (name, operator, value).
pub fn matchers(body: &str) -> Vec<Matcher> {
    let mut out = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let op_at = rest.find(['=', '!']).expect("matcher operator");
        let name = rest[..op_at].trim().to_string();
        let after = &rest[op_at..];
        let op_len = after.find('"').expect("quoted value");
        let op = after[..op_len].trim().to_string();
        let value_start = &after[op_len + 1..];
        let mut value = String::new();
        let mut chars = value_start.char_indices();
        let mut close = value_start.len();
        while let Some((i, ch)) = chars.next() {
            match ch {
                '\\' => {
                    if let Some((_, esc)) = chars.next() {
                        value.push(esc);
                    }
                }
                '"' => {
                    close = i;
                    break;
                }
                _ => value.push(ch),
            }
        }
        out.push((name, op, value));
        rest = value_start[close + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim();
    }
    out
}

/// Every `cascade_*` selector in a query: metric name and its matchers;
/// plus every label named in `by (…)` / `without (…)`.
pub fn selectors(expr: &str) -> (Vec<Selector>, Vec<String>) {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut sels = Vec::new();
    let mut grouping = Vec::new();
    let bytes: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident(bytes[i]) || (i > 0 && is_ident(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        let word: String = bytes[start..i].iter().collect();
        let mut j = i;
        while j < bytes.len() && bytes[j].is_whitespace() {
            j += 1;
        }
        if word == "by" || word == "without" {
            if bytes.get(j) == Some(&'(') {
                let close = (j..bytes.len()).find(|&k| bytes[k] == ')').expect(")");
                let list: String = bytes[j + 1..close].iter().collect();
                grouping.extend(list.split(',').map(|s| s.trim().to_string()));
                i = close + 1;
            }
            continue;
        }
        if !word.starts_with("cascade_") {
            continue;
        }
        let mut ms = Vec::new();
        if bytes.get(j) == Some(&'{') {
            let close = (j..bytes.len()).find(|&k| bytes[k] == '}').expect("}");
            let body: String = bytes[j + 1..close].iter().collect();
            ms = matchers(&body);
            i = close + 1;
        }
        sels.push((word, ms));
    }
    (sels, grouping)
}
