//! A playlist rendered once and handed to every player: the text, with
//! the places where each player's own query (its token and session id)
//! goes into a URI.
//!
//! A live media playlist changes a few times a second (once per part) but
//! is asked for by every player after every part, each with its own query.
//! Rendering it from the window once per change and splicing the query in
//! per request turns the per-request work from formatting every tag into
//! one allocation and a few copies.

use std::fmt;

use crate::protocol::manifest::query_suffix;

/// Where a player's query goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The query as a URI suffix: empty, or `?` and the parameters.
    Query,
    /// What joins one more parameter to that suffix: `&` after a query,
    /// `?` after none.
    Joiner,
}

/// A rendered playlist with its query slots. Build it with [`fmt::Write`]
/// and [`Template::query`]; fill it per request with [`Template::fill`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    text: String,
    /// Byte offsets into `text`, ascending.
    slots: Vec<(usize, Slot)>,
}

impl Template {
    pub(crate) fn with_capacity(bytes: usize) -> Template {
        Template {
            text: String::with_capacity(bytes),
            slots: Vec::new(),
        }
    }

    /// Marks the end of a URI's path: the player's query goes here.
    pub(crate) fn query(&mut self) {
        self.slots.push((self.text.len(), Slot::Query));
    }

    /// Marks where a parameter of cascade's own follows the player's query.
    pub(crate) fn joiner(&mut self) {
        self.slots.push((self.text.len(), Slot::Joiner));
    }

    /// The playlist for a player whose URIs carry `query` (empty, or the
    /// parameters with or without a leading `?`).
    pub fn fill(&self, query: &str) -> String {
        let q = query_suffix(query);
        let joiner = if q.is_empty() { "?" } else { "&" };
        let mut out = String::with_capacity(self.text.len() + self.slots.len() * q.len());
        let mut from = 0;
        for &(at, slot) in &self.slots {
            out.push_str(&self.text[from..at]);
            out.push_str(match slot {
                Slot::Query => &q,
                Slot::Joiner => joiner,
            });
            from = at;
        }
        out.push_str(&self.text[from..]);
        out
    }
}

impl fmt::Write for Template {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.text.push_str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    #[test]
    fn queries_go_where_the_slots_are() {
        let mut t = Template::with_capacity(64);
        t.write_str("a.m4s").unwrap();
        t.query();
        t.write_str("\ninit.mp4").unwrap();
        t.query();
        t.joiner();
        t.write_str("g=2\n").unwrap();
        assert_eq!(t.fill("?sid=1"), "a.m4s?sid=1\ninit.mp4?sid=1&g=2\n");
        assert_eq!(t.fill("sid=1"), "a.m4s?sid=1\ninit.mp4?sid=1&g=2\n");
        assert_eq!(t.fill(""), "a.m4s\ninit.mp4?g=2\n");
    }
}
