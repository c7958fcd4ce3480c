//! A partition's polled messages as the source buffers them until they are decoded: the
//! offsets and timestamps in one list, every key and payload in one byte buffer. Copying
//! each key and payload into a `Vec` of its own cost two allocations per message and
//! their frees after decoding: ~15% of a busy Kafka source thread's time (`perf`).

/// One buffered message, borrowed from [`Messages`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    /// Milliseconds since the epoch (producer or log-append time).
    pub timestamp_ms: Option<i64>,
    pub payload: Option<&'a [u8]>,
}

impl Message<'_> {
    /// Key and payload bytes (what `max_message_bytes` limits).
    pub fn size(&self) -> usize {
        self.payload.map_or(0, <[u8]>::len) + self.key.map_or(0, <[u8]>::len)
    }
}

/// Messages of one partition in the order polled.
#[derive(Debug, Default, Clone)]
pub struct Messages {
    heads: Vec<Head>,
    bytes: Vec<u8>,
}

/// Where a message's key and payload lie in [`Messages::bytes`].
#[derive(Debug, Clone, Copy)]
struct Head {
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<(usize, usize)>,
    payload: Option<(usize, usize)>,
}

impl Messages {
    /// Copies a message in (the consumer's buffer is released at once).
    pub fn push(&mut self, m: Message<'_>) {
        let key = m.key.map(|k| self.keep(k));
        let payload = m.payload.map(|p| self.keep(p));
        self.heads.push(Head {
            offset: m.offset,
            timestamp_ms: m.timestamp_ms,
            key,
            payload,
        });
    }

    fn keep(&mut self, bytes: &[u8]) -> (usize, usize) {
        let from = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        (from, self.bytes.len())
    }

    pub fn len(&self) -> usize {
        self.heads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    /// The `i`th message; panics past the end, as indexing does.
    pub fn get(&self, i: usize) -> Message<'_> {
        let h = &self.heads[i];
        let span = |s: Option<(usize, usize)>| s.map(|(from, to)| &self.bytes[from..to]);
        Message {
            offset: h.offset,
            key: span(h.key),
            timestamp_ms: h.timestamp_ms,
            payload: span(h.payload),
        }
    }

    pub fn first(&self) -> Option<Message<'_>> {
        (!self.is_empty()).then(|| self.get(0))
    }

    pub fn last(&self) -> Option<Message<'_>> {
        self.len().checked_sub(1).map(|i| self.get(i))
    }

    pub fn iter(&self) -> impl Iterator<Item = Message<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl<'a> FromIterator<Message<'a>> for Messages {
    fn from_iter<I: IntoIterator<Item = Message<'a>>>(iter: I) -> Self {
        let mut out = Messages::default();
        for m in iter {
            out.push(m);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_back_as_pushed_keys_and_payloads_apart() {
        let pushed = [
            Message {
                offset: 7,
                key: Some(b"k"),
                timestamp_ms: Some(1),
                payload: Some(b"{\"a\":1}"),
            },
            Message {
                offset: 8,
                key: None,
                timestamp_ms: None,
                payload: None,
            },
            Message {
                offset: 9,
                key: Some(b""),
                timestamp_ms: Some(3),
                payload: Some(b"xyz"),
            },
        ];
        let buffered: Messages = pushed.iter().copied().collect();
        assert_eq!(buffered.len(), 3);
        assert_eq!(buffered.iter().collect::<Vec<_>>(), pushed);
        assert_eq!(buffered.first().map(|m| m.offset), Some(7));
        assert_eq!(buffered.last().map(|m| m.offset), Some(9));
        assert_eq!(buffered.get(0).size(), 8);
        assert!(Messages::default().last().is_none());
    }
}
