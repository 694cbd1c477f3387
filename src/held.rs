//! The heads a worker holds until their body's first callback. With `"header_mode":
//! "hold"` Envoy must be told to deliver the body of a paused head
//! (`allow_on_headers_stop_iteration: true`); without it no body callback ever comes and
//! the request would hang. The root context's tick takes the heads held too long from
//! here and answers them (`Guard::on_body_missing`).
//!
//! The same bounded list tracks, for the root, the requests whose ARM check waits for a
//! token another fetch brings, and the calls those requests make from the root's context
//! (whose answers Envoy delivers to the root).

/// Streams by context id, oldest first, with when they were held. Bounded: a worker
/// holds at most `cap` heads at once; beyond that a stream is not tracked (Envoy's own
/// stream timeouts still end it), so memory cannot grow with the request rate.
pub struct Held<T> {
    entries: Vec<(u32, u64, T)>,
    cap: usize,
}

/// Heads one worker tracks at once.
pub const MAX_HELD: usize = 4096;

impl<T> Held<T> {
    pub fn new(cap: usize) -> Self {
        Held { entries: Vec::new(), cap }
    }

    /// Starts tracking stream `id`, held at `now` (nanoseconds).
    pub fn hold(&mut self, id: u32, now: u64, stream: T) {
        if self.entries.len() < self.cap {
            self.entries.push((id, now, stream));
        }
    }

    /// Stops tracking stream `id`: its body arrived or it ended.
    pub fn release(&mut self, id: u32) {
        if let Some(at) = self.entries.iter().position(|(i, ..)| *i == id) {
            self.entries.remove(at);
        }
    }

    /// Stops tracking `id` and returns its stream.
    pub fn take(&mut self, id: u32) -> Option<T> {
        let at = self.entries.iter().position(|(i, ..)| *i == id)?;
        Some(self.entries.remove(at).2)
    }

    /// Removes and returns every stream, oldest first.
    pub fn take_all(&mut self) -> Vec<(u32, T)> {
        self.entries.drain(..).map(|(id, _, stream)| (id, stream)).collect()
    }

    /// Removes and returns the streams held for at least `max_age` nanoseconds.
    pub fn expired(&mut self, now: u64, max_age: u64) -> Vec<(u32, T)> {
        // Entries are in the order they were held, so the expired ones come first.
        let count = self.entries.iter().take_while(|(_, since, _)| now.saturating_sub(*since) >= max_age).count();
        self.entries.drain(..count).map(|(id, _, stream)| (id, stream)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_streams_never_expire_and_old_ones_do_in_order() {
        let mut held = Held::new(8);
        held.hold(1, 10, 'a');
        held.hold(2, 20, 'b');
        held.hold(3, 30, 'c');
        held.release(2);
        assert!(held.expired(14, 5).is_empty());
        assert_eq!(held.expired(35, 5), vec![(1, 'a'), (3, 'c')]);
        assert!(held.expired(100, 5).is_empty(), "each stream is answered once");
    }

    #[test]
    fn streams_are_taken_once() {
        let mut held = Held::new(8);
        held.hold(7, 0, 'a');
        held.hold(9, 0, 'b');
        assert_eq!(held.take(9), Some('b'));
        assert_eq!(held.take(9), None);
        assert_eq!(held.take_all(), vec![(7, 'a')]);
        assert!(held.take_all().is_empty());
    }

    #[test]
    fn capacity_bounds_memory() {
        let mut held = Held::new(2);
        for id in 0..5 {
            held.hold(id, 0, ());
        }
        assert_eq!(held.expired(1, 1).len(), 2);
    }
}
