//! Depth and item accounting shared by the AMF0 and AMF3 decoders of one call.
//!
//! Besides counting, it measures every complex value it sees (its weight in
//! items and its nesting height) so a later reference to it can be charged
//! and depth-checked before it is copied: without that, a chain of
//! references could build values far deeper or larger than the input.

use super::{AmfError, AmfLimits};

/// Text bytes that count as one item when a copy is made by reference.
const TEXT_BYTES_PER_ITEM: usize = 64;

/// What one decoded complex value costs to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Items (plus copied text, in units of 64 bytes) it contains, itself included.
    pub weight: usize,
    /// Nesting levels it occupies; 0 for flat values kept in reference tables.
    pub height: usize,
}

impl Shape {
    /// A flat table entry (date, XML, byte array, numeric vector).
    pub fn flat(items: usize, bytes: usize) -> Shape {
        Shape {
            weight: 1 + items + bytes / TEXT_BYTES_PER_ITEM,
            height: 0,
        }
    }
}

/// State saved when entering a container, consumed when leaving it.
#[must_use]
pub(crate) struct Mark {
    items: usize,
    text: usize,
    outer_deepest: usize,
}

/// Where a referenceable value starts in its decoder's input, and its shape
/// once complete (`None` while it is still being decoded).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region {
    pub start: usize,
    pub shape: Option<Shape>,
}

pub(crate) struct Budget<'l> {
    limits: &'l AmfLimits,
    items: usize,
    text: usize,
    depth: usize,
    deepest: usize,
    /// Non-zero while re-decoding a referenced region: its cost was charged
    /// up front, so nothing inside it is counted again.
    replaying: usize,
}

impl<'l> Budget<'l> {
    pub fn new(limits: &'l AmfLimits) -> Self {
        Budget {
            limits,
            items: 0,
            text: 0,
            depth: 0,
            deepest: 0,
            replaying: 0,
        }
    }

    /// Counts one decoded value.
    pub fn value(&mut self) -> Result<(), AmfError> {
        self.charge(1)
    }

    /// Counts `n` items at once (numeric vector elements, reference copies).
    pub fn charge(&mut self, n: usize) -> Result<(), AmfError> {
        if self.replaying > 0 {
            return Ok(());
        }
        self.items = self.items.saturating_add(n);
        if self.items > self.limits.max_items {
            return Err(AmfError::TooManyItems);
        }
        Ok(())
    }

    /// Notes text read inline (it weighs on later copies of its container).
    pub fn text(&mut self, len: usize) {
        if self.replaying == 0 {
            self.text = self.text.saturating_add(len);
        }
    }

    /// Charges a copy of `len` bytes of text taken from a reference table.
    pub fn copied_text(&mut self, len: usize) -> Result<(), AmfError> {
        self.charge(len / TEXT_BYTES_PER_ITEM)
    }

    /// Enters a container one level deeper.
    pub fn enter(&mut self) -> Result<Mark, AmfError> {
        if self.depth >= self.limits.max_depth {
            return Err(AmfError::TooDeep);
        }
        self.depth += 1;
        let mark = Mark {
            items: self.items,
            text: self.text,
            outer_deepest: self.deepest,
        };
        self.deepest = self.depth;
        Ok(mark)
    }

    /// Leaves the container entered with `mark` and returns its shape.
    pub fn leave(&mut self, mark: Mark) -> Shape {
        let height = self.deepest.saturating_sub(self.depth) + 1;
        self.depth = self.depth.saturating_sub(1);
        self.deepest = self.deepest.max(mark.outer_deepest);
        let items = self.items.saturating_sub(mark.items);
        let text = self.text.saturating_sub(mark.text);
        Shape {
            weight: 1 + items + text / TEXT_BYTES_PER_ITEM,
            height,
        }
    }

    /// Charges and depth-checks a copy of a value of `shape` placed here.
    pub fn reuse(&mut self, shape: Shape) -> Result<(), AmfError> {
        let reach = self.depth.saturating_add(shape.height);
        if reach > self.limits.max_depth {
            return Err(AmfError::TooDeep);
        }
        self.deepest = self.deepest.max(reach);
        self.charge(shape.weight)
    }

    pub fn begin_replay(&mut self) {
        self.replaying += 1;
    }

    pub fn end_replay(&mut self) {
        self.replaying = self.replaying.saturating_sub(1);
    }
}
